package device

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// Result is the outcome of Provision.
type Result struct {
	// OperationID is the last operation id the service gave.
	OperationID string
	// Status is the final registration status ("assigned", "failed",
	// "disabled"), or the last one seen when Provision stopped early.
	Status dps.Status
	// RegistrationState is the final registrationState (assignedHub,
	// deviceId, …); nil if the service sent none.
	RegistrationState *dps.DeviceRegistrationResult
	// Operation is the last RegistrationOperationStatus body received.
	Operation *dps.RegistrationOperationStatus
	// Polls counts operation status requests sent, Attempts register
	// requests sent (1 unless 429/5xx made the client retry).
	Polls, Attempts int
	// Elapsed is the time from start to end by Config.Now.
	Elapsed time.Duration
}

// Provision runs the DPS flow: CONNECT, SUBSCRIBE $dps/registrations/res/#,
// register, poll after each retry-after until the registration leaves
// "assigning", then DISCONNECT.
//
// It returns (result, nil) when the device is assigned. A registration that
// ends "failed" or "disabled" returns the result together with an
// *AssignmentError (errors.Is(err, ErrNotAssigned)). Other failures return
// a nil or partial result and an error: *ConnectRefusedError,
// *SubscribeRefusedError, *StatusError (4xx final; 429 and 5xx after
// MaxAttempts/MaxPolls, then also wrapping ErrLimit), *MalformedResponseError,
// ErrConnectionClosed, ErrTimeout, ErrConfig, or a dial error carrying
// *transport.DialError.
//
// Waits: 429 and 202 answers are waited out exactly for their retry-after
// (Config.DefaultRetryAfter when absent), 5xx answers for their retry-after
// or else Config.Backoff; a retry-after above MaxRetryAfter ends with an
// ErrLimit error instead of polling early. Every wait goes through
// Config.Sleep and is bounded by ctx.
func Provision(ctx context.Context, c Config) (*Result, error) {
	st, err := c.settings()
	if err != nil {
		return nil, err
	}
	start := st.Now()
	sess, err := connectRetrying(ctx, st)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	err = sess.provision(ctx, res)
	if !sess.deadConn && !errors.Is(err, ErrConnectionClosed) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultDisconnectTimeout)
		derr := sess.Disconnect(dctx)
		cancel()
		if err == nil && derr != nil {
			st.log.Debug("device: DISCONNECT failed", "err", derr)
		}
	}
	sess.Close()
	res.Elapsed = st.Now().Sub(start)
	if err != nil {
		st.log.Info("device: provisioning failed", "registrationId", st.RegistrationID, "err", err)
	} else {
		st.log.Info("device: assigned", "registrationId", st.RegistrationID, "hub", res.RegistrationState.AssignedHub, "polls", res.Polls)
	}
	return res, err
}

// connectRetrying connects, and connects again after Backoff while the
// CONNECT goes unanswered or is refused with 0x03, ConnectAttempts
// connections in all.
func connectRetrying(ctx context.Context, st *settings) (*Session, error) {
	for n := 1; ; n++ {
		sess, err := connect(ctx, st)
		if err == nil || !unansweredConnect(err) {
			return sess, err
		}
		if n >= st.ConnectAttempts {
			if n > 1 {
				err = limitErrorf("%d connection attempts: %w", n, err)
			}
			return nil, err
		}
		d := st.Backoff.Delay(n, st.Rand())
		// As retryWait: a wait that would outlast ctx is not begun.
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); d > left {
				return nil, fmt.Errorf("%w: %w", ErrBeyondDeadline, limitErrorf("reconnecting after %v, beyond the time left (%v), after connection attempt %d: %w",
					d, left.Round(time.Millisecond), n, err))
			}
		}
		st.log.Info("device: reconnecting", "attempt", n+1, "wait", d, "err", err)
		if st.Trace != nil {
			st.Trace(Event{Time: st.Now(), Dir: Waited, Wait: d})
		}
		if err := st.Sleep(ctx, d); err != nil {
			return nil, fmt.Errorf("device: waiting %v to reconnect: %w", d, err)
		}
	}
}

// unansweredConnect reports whether err, from connect, is a CONNECT that
// got no CONNACK or CONNACK 0x03: the failures a device retries
// (DPS-DEV-022).
func unansweredConnect(err error) bool {
	var refused *ConnectRefusedError
	if errors.As(err, &refused) {
		return refused.ReturnCode == packets.ConnackRefusedServerUnavailable
	}
	return errors.Is(err, ErrTimeout) || errors.Is(err, ErrConnectionClosed)
}

// provision runs the flow on a connected session.
func (s *Session) provision(ctx context.Context, res *Result) error {
	st := s.s
	// The PUBACK of each answer goes out with the request or DISCONNECT
	// that follows (one write instead of two); waits flush it first.
	s.holdAcks = true
	if !st.Misbehave.SkipSubscribe {
		if err := s.Subscribe(ctx); err != nil {
			return err
		}
	}
	retries := 0 // consecutive 5xx, for the back-off exponent
	var resp *Response
	// Register, retrying 429/5xx up to MaxAttempts sends.
	for {
		res.Attempts++
		var err error
		resp, err = s.Register(ctx)
		if err != nil {
			return err
		}
		if !retriable(resp.Status) {
			break
		}
		if res.Attempts >= st.MaxAttempts {
			return limitErrorf("%d register attempts: %w", res.Attempts, statusError("register", resp))
		}
		if err := s.retryWait(ctx, "register", resp, &retries); err != nil {
			return err
		}
	}
	if resp.Status >= 300 {
		return statusError("register", resp)
	}
	retries = 0
	op := resp.Operation
	if st.Misbehave.RegisterAgain && resp.Status == 202 {
		// The answer (409 from a conforming service) is not used.
		again, err := s.Register(ctx)
		if err != nil {
			return err
		}
		st.log.Debug("device: registered again while in progress", "status", again.Status)
	}
	for {
		if op.OperationID != "" {
			res.OperationID = op.OperationID
		}
		res.Operation = op
		res.Status = op.Status
		res.RegistrationState = op.RegistrationState
		switch op.Status {
		case dps.StatusAssigned:
			// The device goes on to assignedHub as deviceId; an assignment
			// without them cannot be used (DPS-PROTOCOL.md: the C SDK requires both for "assigned").
			if rs := op.RegistrationState; rs == nil || rs.AssignedHub == "" || rs.DeviceID == "" {
				return &MalformedResponseError{Topic: resp.Topic, Msg: "status assigned without registrationState.assignedHub and deviceId"}
			}
			if st.Misbehave.PollAfterAssigned && res.OperationID != "" {
				res.Polls++
				if _, err := s.Poll(ctx, res.OperationID); err != nil {
					return err
				}
			}
			return nil
		case dps.StatusFailed, dps.StatusDisabled:
			if st.Misbehave.RegisterAfterFailure {
				if _, err := s.Register(ctx); err != nil {
					return err
				}
			}
			e := &AssignmentError{Status: op.Status}
			if rs := op.RegistrationState; rs != nil {
				e.ErrorCode, e.ErrorMessage = rs.ErrorCode, rs.ErrorMessage
			}
			return e
		case dps.StatusAssigning, dps.StatusUnassigned:
			// Keep polling (EC, FR, CS v1 also poll on "unassigned").
		default:
			return &MalformedResponseError{Topic: resp.Topic, Msg: fmt.Sprintf("unknown status %q", op.Status)}
		}
		if res.OperationID == "" {
			return &MalformedResponseError{Topic: resp.Topic, Msg: "status " + string(op.Status) + " without an operationId to poll"}
		}
		if res.Polls >= st.MaxPolls {
			return limitErrorf("%d polls without a final status (last %q)", res.Polls, res.Status)
		}
		d := st.DefaultRetryAfter
		if resp.HasRetryAfter {
			d = resp.RetryAfter
		}
		req := "poll"
		if res.Polls == 0 {
			req = "register"
		}
		if err := s.retryAfterWait(ctx, req, resp, d); err != nil {
			return err
		}
		// Poll, retrying 429/5xx; every send counts against MaxPolls.
		for {
			res.Polls++
			var err error
			resp, err = s.Poll(ctx, res.OperationID)
			if err != nil {
				return err
			}
			if !retriable(resp.Status) {
				break
			}
			if res.Polls >= st.MaxPolls {
				return limitErrorf("%d polls: %w", res.Polls, statusError("poll", resp))
			}
			if err := s.retryWait(ctx, "poll", resp, &retries); err != nil {
				return err
			}
		}
		retries = 0
		if resp.Status >= 300 {
			return statusError("poll", resp)
		}
		op = resp.Operation
	}
}

// retryWait waits before re-sending after a 429 or 5xx answer.
//
// A wait that would outlast ctx's deadline is not started: the answer is
// returned at once as a *StatusError (wrapping ErrLimit and
// ErrBeyondDeadline too), so the caller learns it was throttled for d, not
// merely that its time ran out, and can tell its own time limit from a
// service that kept refusing.
func (s *Session) retryWait(ctx context.Context, req string, resp *Response, retries *int) error {
	st := s.s
	var d time.Duration
	switch {
	case resp.HasRetryAfter:
		d = resp.RetryAfter
	case resp.Status == 429:
		d = st.DefaultRetryAfter
	default:
		*retries++
		d = st.Backoff.Delay(*retries, st.Rand())
	}
	if dl, ok := ctx.Deadline(); ok && !st.Misbehave.IgnoreRetryAfter {
		if left := time.Until(dl); d > left {
			return fmt.Errorf("%w: %w", ErrBeyondDeadline, limitErrorf("the %s answer asks to retry after %v, beyond the time left (%v): %w",
				req, d, left.Round(time.Millisecond), statusError(req, resp)))
		}
	}
	st.log.Debug("device: retrying", "status", resp.Status, "wait", d)
	return s.retryAfterWait(ctx, req, resp, d)
}

// retryAfterWait waits d, the wait resp (the answer to req) asks for,
// refusing waits above MaxRetryAfter.
func (s *Session) retryAfterWait(ctx context.Context, req string, resp *Response, d time.Duration) error {
	if d > s.s.MaxRetryAfter {
		return limitErrorf("the %s answer (status %d) asks to retry after %v, above MaxRetryAfter %v", req, resp.Status, d, s.s.MaxRetryAfter)
	}
	if s.s.Misbehave.IgnoreRetryAfter {
		return nil
	}
	return s.wait(ctx, d)
}

func statusError(req string, r *Response) error {
	e := &StatusError{Request: req, Status: r.Status, Raw: r.Raw, RetryAfter: r.RetryAfter, HasRetryAfter: r.HasRetryAfter}
	if r.Error != nil {
		e.Body = *r.Error
	}
	return e
}
