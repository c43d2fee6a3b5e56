// Package device is dps-conform's reference DPS device client: the
// provisioning state machine of DPS-PROTOCOL.md over MQTT 3.1.1, on any
// transport (mqtts, wss via package transport, or any net.Conn handed in
// through Config.DialFunc).
//
// Provision runs the whole documented flow — CONNECT (ClientId = registration
// id, DPS username, SAS password or none for X.509), SUBSCRIBE
// $dps/registrations/res/#, register, poll after each retry-after until the
// registration leaves "assigning", DISCONNECT — and returns the assignment.
// Connect returns a Session whose methods are the single steps, plus Send and
// Next for anything else, so the conformance suite can drive a target packet
// by packet.
//
// The client is precise (it waits exactly the retry-after it is given and
// matches answers by $rid), observable (Config.Trace sees every packet and
// every wait; Config.Now and Config.Sleep inject the clock) and configurable
// (every choice the official SDKs disagree on is a Config field, and
// Config.Misbehave breaks documented behaviours on purpose).
//
// Errors are typed and unwrap to one category sentinel (ErrRefused,
// ErrStatus, ErrNotAssigned, ErrProtocol, ErrConnectionClosed, ErrTimeout,
// ErrLimit, ErrConfig; ErrBeyondDeadline comes with ErrLimit); dial and TLS
// failures keep *transport.DialError in the chain. Secrets (keys, the SAS signature) never appear in errors, logs
// or Event strings.
package device
