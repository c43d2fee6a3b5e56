package tlstrace

import "testing"

// TestCoalescedAlerts: TLS 1.2 may put several alerts in one record (RFC
// 5246 §6.2.1): each is kept, with no problem; a record that holds no
// whole number of alerts is a problem.
func TestCoalescedAlerts(t *testing.T) {
	st := NewStream(nil)
	if _, err := st.Feed(ServerToClient, plainRecord(typeAlert, []byte{1, 0, 2, 40})); err != nil {
		t.Fatalf("two alerts in one record: %v", err)
	}
	if a := st.Facts().Alerts; len(a) != 2 || a[0].String() != "warning close_notify" || a[1].String() != "fatal handshake_failure" {
		t.Errorf("alerts %v", a)
	}
	if _, err := st.Feed(ServerToClient, plainRecord(typeAlert, []byte{2, 40, 0})); err == nil || len(st.Facts().Problems) != 1 {
		t.Errorf("a 3-byte alert record: %v, problems %v", err, st.Facts().Problems)
	}
}

// TestRecordOverflow: a plaintext record over 2^14 bytes is a problem
// (RFC 5246 §6.2.1); one of exactly 2^14 is none.
func TestRecordOverflow(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want int
	}{{1 << 14, 0}, {1<<14 + 1, 1}} {
		st := NewStream(nil)
		_, _ = st.Feed(ClientToServer, plainRecord(typeChangeCipherSpec, make([]byte, tc.n)))
		ps := st.Facts().Problems
		if len(ps) != tc.want || tc.want == 1 && ps[0].Msg != "plaintext record of 16385 bytes exceeds 2^14 (RFC 5246 §6.2.1, RFC 8446 §5.1)" {
			t.Errorf("record of %d bytes: problems %v", tc.n, ps)
		}
	}
}
