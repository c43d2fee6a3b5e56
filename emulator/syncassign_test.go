package emulator

import (
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// TestRetryAfterZeroAssignsBefore202 checks that with retry-after 0 an
// assignment that completes quickly (here 20 ms, under syncAssignWait) is
// done before the 202 goes out, so the first poll is answered 200; a
// retry-after of 1 s still answers that poll 202 (Part A §6). An assignment
// that may wait on I/O (webhook, durable commit) gets syncAssignWait at
// most: one that takes longer is answered 202 and the poll finds it still
// assigning. One that is CPU work only (AssignMayWait false) runs inline,
// so even a slow one is done before its 202.
func TestRetryAfterZeroAssignsBefore202(t *testing.T) {
	for _, tc := range []struct {
		retryAfter time.Duration
		assignTime time.Duration
		inline     bool
		wantPoll   int
	}{
		{0, 20 * time.Millisecond, false, 200},
		{time.Second, 20 * time.Millisecond, false, 202},
		{0, syncAssignWait + 400*time.Millisecond, false, 202},
		{0, syncAssignWait + 400*time.Millisecond, true, 200},
	} {
		b := newFakeBackend("dev-1")
		b.delay = tc.assignTime // from the register on, not the test's start
		b.inline = tc.inline
		_, addr := startPlain(t, Config{backend: b, RetryAfter: tc.retryAfter})
		c := dialPlain(t, addr)
		c.ready("dev-1")
		a := c.call(dps.RegisterTopic("1"), "")
		if a.resp.Status != 202 {
			t.Fatalf("retry-after %v, assignment %v, inline %v: register answered %s", tc.retryAfter, tc.assignTime, tc.inline, a.topic)
		}
		p := c.call(dps.PollTopic("2", a.status.OperationID), "")
		if p.resp.Status != tc.wantPoll {
			t.Errorf("retry-after %v, assignment %v, inline %v: first poll answered %s, want %d", tc.retryAfter, tc.assignTime, tc.inline, p.topic, tc.wantPoll)
		}
	}
}
