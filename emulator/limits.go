package emulator

import "time"

// Limits bound what one server accepts (ARCHITECTURE.md §7). In a Config a
// zero field means its DefaultLimits value; a negative value switches the
// limit off.
type Limits struct {
	// ConnectTimeout bounds the TLS handshake plus the arrival of CONNECT.
	ConnectTimeout time.Duration
	// MaxPacketSize bounds a whole MQTT packet, fixed header included; a
	// larger one closes the connection (D-LIMITS "max message size 96 KB").
	MaxPacketSize int
	// MaxConnections bounds the MQTT connections served at once (TLS, WSS
	// and plaintext together); a connection over it is closed at once.
	MaxConnections int
	// PollsPerWindow polls per PollWindow per device are answered; more get
	// 429 (D-LIMITS "Device polling operation 5/10 sec/device").
	PollsPerWindow int
	PollWindow     time.Duration
	// RegistrationsPerMinute is the register budget of the whole service;
	// requests over it get 429 (D-LIMITS "Device registrations
	// 1,000/min/service").
	RegistrationsPerMinute int
	// IdleTimeout closes a connection that sends nothing for this long when
	// its CONNECT asked for keep-alive 0 (with keep-alive k the limit is
	// 1.5 k, MQTT-3.1.2-24).
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a device.
	WriteTimeout time.Duration
	// OperationTTL is how long a finished operation can still be polled.
	OperationTTL time.Duration
	// MaxOperations bounds the operation table; registrations over it are
	// answered 503.
	MaxOperations int
}

// DefaultLimits returns the documented DPS limits and the emulator's own
// defaults for the rest.
func DefaultLimits() Limits {
	return Limits{
		ConnectTimeout:         10 * time.Second,
		MaxPacketSize:          96 * 1024,
		MaxConnections:         10000,
		PollsPerWindow:         5,
		PollWindow:             10 * time.Second,
		RegistrationsPerMinute: 1000,
		IdleTimeout:            30 * time.Minute,
		WriteTimeout:           10 * time.Second,
		OperationTTL:           time.Hour,
		MaxOperations:          100000,
	}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.ConnectTimeout == 0 {
		l.ConnectTimeout = d.ConnectTimeout
	}
	if l.MaxPacketSize == 0 {
		l.MaxPacketSize = d.MaxPacketSize
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.PollsPerWindow == 0 {
		l.PollsPerWindow = d.PollsPerWindow
	}
	if l.PollWindow == 0 {
		l.PollWindow = d.PollWindow
	}
	if l.RegistrationsPerMinute == 0 {
		l.RegistrationsPerMinute = d.RegistrationsPerMinute
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.OperationTTL == 0 {
		l.OperationTTL = d.OperationTTL
	}
	if l.MaxOperations == 0 {
		l.MaxOperations = d.MaxOperations
	}
	return l
}
