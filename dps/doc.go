// Package dps is the vocabulary of the Azure IoT Device Provisioning Service
// (DPS) as spoken over MQTT 3.1.1: the CONNECT username, SAS tokens (build,
// parse, verify, group-derived device keys), the request and response topics,
// the JSON bodies, registration-id rules and operation ids.
//
// The package does no I/O and depends only on the standard library. Every
// parser returns a *Error whose Unwrap gives one of the category sentinels
// (ErrInvalidUsername, ErrInvalidSASToken, ErrInvalidTopic, …), so callers
// branch with errors.Is and read the field and byte offset with errors.As.
// Errors never carry key material or signatures.
//
// Where the sources disagree, the package follows the decisions of
// DPS-PROTOCOL.md Part A; comments cite the Part B evidence (SDK repository
// and path, or Microsoft document) behind each rule.
//
// Functions take their clock and randomness from the caller (Verifier.Now,
// NewOperationID's io.Reader); the package holds no mutable global state.
package dps
