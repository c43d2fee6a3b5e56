package device

import (
	"errors"
	"fmt"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// Category sentinels. The typed errors below unwrap to one of them, so callers
// can branch with errors.Is and read details with errors.As.
var (
	// ErrRefused: the service refused us at the MQTT level (CONNACK return
	// code, SUBACK failure). *ConnectRefusedError and *SubscribeRefusedError
	// unwrap to it.
	ErrRefused = errors.New("device: refused by the service")
	// ErrStatus: the service answered a request with a final error status
	// (4xx), or with 429/5xx until the retry budget ran out. *StatusError
	// unwraps to it.
	ErrStatus = errors.New("device: error status from the service")
	// ErrNotAssigned: the registration ended in status "failed" or "disabled".
	// *AssignmentError unwraps to it.
	ErrNotAssigned = errors.New("device: registration not assigned")
	// ErrConnectionClosed: the service closed the connection (or the
	// transport failed) while an answer was awaited.
	ErrConnectionClosed = errors.New("device: connection closed")
	// ErrProtocol: the service sent something the protocol does not allow
	// at that point: a packet of the wrong type, a response that does not
	// parse, a packet that cannot be decoded. *UnexpectedPacketError and
	// *MalformedResponseError unwrap to it.
	ErrProtocol = errors.New("device: protocol error by the service")
	// ErrLimit: a configured bound was reached (MaxPolls, MaxAttempts,
	// MaxIgnored, MaxRetryAfter).
	ErrLimit = errors.New("device: limit reached")
	// ErrBeyondDeadline: the service asked for a wait (a 429's or 5xx's
	// retry-after) that would outlast the caller's deadline, so the
	// client gave up at once. It comes with ErrLimit and the answer's
	// *StatusError; it is the caller's time limit, not a service that
	// kept refusing.
	ErrBeyondDeadline = errors.New("device: the wait asked for is beyond the deadline")
	// ErrConfig: the Config is unusable (missing or contradictory fields,
	// a key that is not base64, a payload that is not JSON).
	ErrConfig = errors.New("device: invalid config")
)

// ConnectRefusedError is a CONNACK with a non-zero return code.
type ConnectRefusedError struct {
	ReturnCode     packets.ConnackCode
	SessionPresent bool
}

func (e *ConnectRefusedError) Error() string {
	return fmt.Sprintf("device: CONNECT refused: CONNACK return code 0x%02x (%s)", byte(e.ReturnCode), e.ReturnCode)
}

// Unwrap returns ErrRefused.
func (e *ConnectRefusedError) Unwrap() error { return ErrRefused }

// SubscribeRefusedError is a SUBACK whose return code is a failure (0x80) or
// a reserved value.
type SubscribeRefusedError struct {
	Filter string
	Code   packets.SubackCode
}

func (e *SubscribeRefusedError) Error() string {
	return fmt.Sprintf("device: SUBSCRIBE %q refused: SUBACK return code 0x%02x (%s)", e.Filter, byte(e.Code), e.Code)
}

// Unwrap returns ErrRefused.
func (e *SubscribeRefusedError) Unwrap() error { return ErrRefused }

// StatusError is an error answer of the service: a status of 400 or more on
// the response topic. 400, 401, 404, 409 and other 4xx (except 429) are final;
// 429 and 5xx are retried and come back as a StatusError only when the retry
// budget (MaxAttempts, MaxPolls) is spent.
type StatusError struct {
	// Request is "register" or "poll".
	Request string
	// Status is the status in the response topic.
	Status int
	// Body is the parsed error body; zero when the body was empty or not an
	// error JSON (see Raw).
	Body dps.ErrorBody
	// Raw is the body as received.
	Raw []byte
	// RetryAfter is the retry-after of the answer, when HasRetryAfter.
	RetryAfter    time.Duration
	HasRetryAfter bool
}

// maxBodyQuoted bounds the bytes of a body StatusError.Error quotes.
const maxBodyQuoted = 200

func (e *StatusError) Error() string {
	s := fmt.Sprintf("device: %s answered with status %d", e.Request, e.Status)
	switch {
	case e.Body.ErrorCode != 0 || e.Body.Message != "":
		s += fmt.Sprintf(" (errorCode %d: %q", e.Body.ErrorCode, e.Body.Message)
		if e.Body.TrackingID != "" {
			// The id the service's support asks for.
			s += fmt.Sprintf(", trackingId %q", e.Body.TrackingID)
		}
		s += ")"
	case len(e.Raw) > maxBodyQuoted:
		s += fmt.Sprintf(" (body %q…)", e.Raw[:maxBodyQuoted])
	case len(e.Raw) > 0:
		s += fmt.Sprintf(" (body %q)", e.Raw)
	}
	return s
}

// Unwrap returns ErrStatus.
func (e *StatusError) Unwrap() error { return ErrStatus }

// Retriable reports whether the status is one the client retries (429, 5xx).
func (e *StatusError) Retriable() bool { return retriable(e.Status) }

func retriable(status int) bool { return status == 429 || status >= 500 }

// AssignmentError is a registration that ended in status "failed" or
// "disabled". Provision returns it together with a non-nil *Result.
type AssignmentError struct {
	Status dps.Status
	// ErrorCode and ErrorMessage come from registrationState, when given
	// (e.g. 400207 "Custom allocation failed with status code: 400").
	ErrorCode    int
	ErrorMessage string
}

func (e *AssignmentError) Error() string {
	s := fmt.Sprintf("device: registration ended with status %q", e.Status)
	if e.ErrorCode != 0 || e.ErrorMessage != "" {
		s += fmt.Sprintf(" (errorCode %d: %q)", e.ErrorCode, e.ErrorMessage)
	}
	return s
}

// Unwrap returns ErrNotAssigned.
func (e *AssignmentError) Unwrap() error { return ErrNotAssigned }

// UnexpectedPacketError is a packet of a type the client did not expect at
// that point, e.g. a SUBACK in place of the CONNACK.
type UnexpectedPacketError struct {
	// Waiting says what the client was waiting for ("CONNACK", "SUBACK", …).
	Waiting string
	Got     packets.Type
}

func (e *UnexpectedPacketError) Error() string {
	return fmt.Sprintf("device: waiting for %s, got %s", e.Waiting, e.Got)
}

// Unwrap returns ErrProtocol.
func (e *UnexpectedPacketError) Unwrap() error { return ErrProtocol }

// MalformedResponseError is an answer on the response topic whose body cannot
// be read: a 200/202 body that is not a RegistrationOperationStatus.
type MalformedResponseError struct {
	Topic string
	Msg   string
	Err   error
}

func (e *MalformedResponseError) Error() string {
	s := fmt.Sprintf("device: response on %q: %s", e.Topic, e.Msg)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrProtocol and the cause.
func (e *MalformedResponseError) Unwrap() []error { return []error{ErrProtocol, e.Err} }

// closedError wraps the read error that ended the connection.
type closedError struct{ err error }

func (e *closedError) Error() string {
	return "device: connection closed: " + e.err.Error()
}
func (e *closedError) Unwrap() []error { return []error{ErrConnectionClosed, e.err} }

var (
	_ error = (*ConnectRefusedError)(nil)
	_ error = (*SubscribeRefusedError)(nil)
	_ error = (*StatusError)(nil)
	_ error = (*AssignmentError)(nil)
	_ error = (*UnexpectedPacketError)(nil)
	_ error = (*MalformedResponseError)(nil)
)

func limitErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrLimit}, args...)...)
}

func configErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}
