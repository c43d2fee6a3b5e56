package emulator

import (
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// TestRetryAfterZeroAssignsBefore202 checks that with retry-after 0 an
// assignment that completes quickly (here 20 ms, under syncAssignWait) is
// done before the 202 goes out, so the first poll is answered 200; a
// retry-after of 1 s still answers that poll 202 (Part A §6).
func TestRetryAfterZeroAssignsBefore202(t *testing.T) {
	for _, tc := range []struct {
		retryAfter time.Duration
		wantPoll   int
	}{
		{0, 200},
		{time.Second, 202},
	} {
		b := newFakeBackend("dev-1")
		b.gate = make(chan struct{})
		opened := time.AfterFunc(20*time.Millisecond, func() { close(b.gate) })
		_, addr := startPlain(t, Config{backend: b, RetryAfter: tc.retryAfter})
		c := dialPlain(t, addr)
		c.ready("dev-1")
		a := c.call(dps.RegisterTopic("1"), "")
		if a.resp.Status != 202 {
			t.Fatalf("retry-after %v: register answered %s", tc.retryAfter, a.topic)
		}
		p := c.call(dps.PollTopic("2", a.status.OperationID), "")
		if p.resp.Status != tc.wantPoll {
			t.Errorf("retry-after %v: first poll answered %s, want %d", tc.retryAfter, p.topic, tc.wantPoll)
		}
		opened.Stop()
	}
}
