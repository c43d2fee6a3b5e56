package tlstrace

import (
	"crypto/tls"
	"fmt"
)

// Dir is the direction of bytes in a TCP connection.
type Dir uint8

// Directions of a connection.
const (
	ClientToServer Dir = 0
	ServerToClient Dir = 1
)

// String returns "c2s" or "s2c".
func (d Dir) String() string {
	switch d {
	case ClientToServer:
		return "c2s"
	case ServerToClient:
		return "s2c"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// Facts is what a Stream learned about a TLS connection so far.
type Facts struct {
	// ClientHello and ServerHello report that the message was decoded.
	ClientHello, ServerHello bool
	// OfferedVersions lists the supported_versions extension of the
	// ClientHello, or its legacy_version when the extension is absent.
	OfferedVersions []uint16
	// OfferedSuites, SNI and ALPN come from the ClientHello.
	OfferedSuites []uint16
	SNI           string
	ALPN          []string
	// ALPNSelected is the protocol the server chose, if visible.
	ALPNSelected string
	// Version and Suite are the negotiated ones (TLS 1.3 via the
	// supported_versions extension of the ServerHello).
	Version uint16
	Suite   uint16
	// ClientCertificate reports that the client sent a non-empty
	// Certificate message. In TLS 1.3 this is only known after decryption;
	// ClientCertificateKnown tells whether the value is meaningful.
	ClientCertificate      bool
	ClientCertificateKnown bool
	// ClientCertificates is the DER chain sent by the client, leaf first,
	// if visible (TLS 1.2, or TLS 1.3 decrypted).
	ClientCertificates [][]byte
	// ServerCertificates is the DER chain sent by the server, if visible.
	ServerCertificates [][]byte
	// Alerts lists alerts of both directions (at most 64).
	Alerts []Alert
	// KeyLogFound reports that the key log had secrets for this
	// connection's client random; Decrypted that at least one encrypted
	// record was successfully decrypted.
	KeyLogFound, Decrypted bool
	// Protected reports that a protected (encrypted) record was seen in
	// either direction; false when the handshake ended before one.
	Protected bool
	// Stopped reports, per Dir, that decryption of that direction
	// stopped although the key log had keys for it: a record failed
	// authentication (a corrupted record, or a wrong key) or a gap lost
	// the record sequence numbers. What the rest of the direction carried
	// is not seen. (Missing keys are an Undecrypted problem instead.)
	Stopped [2]bool
	// Problems lists non-fatal problems (at most 64).
	Problems []Problem
}

// Alert is a TLS alert seen in either direction.
type Alert struct {
	Dir         Dir
	Level       uint8
	Description uint8
	// Encrypted reports that the alert was protected (and decrypted).
	Encrypted bool
}

// String names the alert, for example "fatal protocol_version".
func (a Alert) String() string {
	lvl := fmt.Sprintf("level(%d)", a.Level)
	switch a.Level {
	case 1:
		lvl = "warning"
	case 2:
		lvl = "fatal"
	}
	return lvl + " " + AlertName(a.Description)
}

// Problem is a non-fatal decoding problem at a stream offset of Dir.
type Problem struct {
	Dir    Dir
	Offset int64
	Msg    string
	// Undecrypted marks a problem that is no error of the peers: the
	// records cannot be decrypted here (no key log entry, missing
	// secrets, a suite this package does not decrypt).
	Undecrypted bool
}

// String formats the problem as "c2s offset N: msg".
func (p Problem) String() string {
	return fmt.Sprintf("%s offset %d: %s", p.Dir, p.Offset, p.Msg)
}

// Error is the error type returned by Stream.Feed for a non-fatal problem.
type Error struct{ Problem }

// Error implements error.
func (e *Error) Error() string { return "tlstrace: " + e.Problem.String() }

var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
	21: "decryption_failed", 22: "record_overflow", 30: "decompression_failure",
	40: "handshake_failure", 41: "no_certificate", 42: "bad_certificate",
	43: "unsupported_certificate", 44: "certificate_revoked", 45: "certificate_expired",
	46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
	49: "access_denied", 50: "decode_error", 51: "decrypt_error",
	60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
	80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
	100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
	111: "certificate_unobtainable", 112: "unrecognized_name",
	113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
	115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
}

// AlertName returns the RFC 8446 name of an alert description.
func AlertName(d uint8) string {
	if n, ok := alertNames[d]; ok {
		return n
	}
	return fmt.Sprintf("alert(%d)", d)
}

// VersionName names a TLS protocol version ("TLS 1.3"), or formats it in hex.
func VersionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSL 3.0"
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	if v&0x0f0f == 0x0a0a {
		return fmt.Sprintf("GREASE(0x%04x)", v)
	}
	return fmt.Sprintf("0x%04x", v)
}

// SuiteName names a cipher suite using tls.CipherSuiteName.
func SuiteName(id uint16) string { return tls.CipherSuiteName(id) }
