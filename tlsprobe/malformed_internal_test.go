package tlsprobe

import (
	"errors"
	"strings"
	"testing"
)

func record(frag ...byte) []byte {
	return append([]byte{22, 3, 3, byte(len(frag) >> 8), byte(len(frag))}, frag...)
}

// TestDiagnoseOffsets: offsets are of the server's stream, record headers
// included, also for a message split across records; a stream that is
// well formed (an alert refusing the hello) or cut at maxRecorded is no
// finding.
func TestDiagnoseOffsets(t *testing.T) {
	errTLS := errors.New("tls: x")
	nullChain := []byte{11, 0, 0, 3, 0, 0, 0}
	tests := []struct {
		name   string
		stream []byte
		want   string // "" no finding
	}{
		{"null chain in one record", record(nullChain...), "Certificate message at byte 5: certificate_list is empty (its length, 0, at byte 9)"},
		{"null chain split across records", append(record(nullChain[:5]...), record(nullChain[5:]...)...),
			"Certificate message at byte 5: certificate_list is empty (its length, 0, at byte 9)"},
		{"null chain, the list's length split", append(record(nullChain[:2]...), record(nullChain[2:]...)...),
			"Certificate message at byte 5: certificate_list is empty (its length, 0, at byte 14)"},
		{"record header cut", []byte{22, 3, 3}, "record at byte 0: the server's stream ended after 3 of the 5 bytes of its header"},
		{"record cut in the message's body", record(nullChain...)[:10], "Certificate message at byte 5: its header announces a 3-byte body; the server's stream ended after 1 of them"},
		{"record cut in the message's header", record(nullChain...)[:8], "record at byte 0: its header announces a 7-byte fragment; the server's stream ended after 3 of them"},
		{"unknown message type", record(99, 0, 0, 0), "handshake message type 99 message at byte 5: a server sends no handshake message of type 99"},
		{"empty certificate", record(11, 0, 0, 6, 0, 0, 3, 0, 0, 0), "certificate 0 at byte 12 is empty"},
		{"certificate overruns", record(11, 0, 0, 6, 0, 0, 3, 0, 0, 9), "certificate 0 at byte 12: its length, 9, overruns certificate_list by 9 bytes"},
		{"list length wrong", record(11, 0, 0, 4, 0, 0, 9, 0x30), "the length of certificate_list, 9 at byte 9, is not the 1 bytes after it"},
		{"not DER", record(11, 0, 0, 7, 0, 0, 4, 0, 0, 1, 5), "certificate 0 at byte 12 does not start with a DER SEQUENCE (0x30) but 0x05 at byte 15"},
		{"alert", []byte{21, 3, 3, 0, 2, 2, 70}, ""},
		{"well formed", record(14, 0, 0, 0), ""},
		{"empty", nil, ""},
		{"cut at maxRecorded", append(record(11, 0, 0, 3), make([]byte, maxRecorded)...)[:maxRecorded], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := diagnose(tt.stream, errTLS)
			switch {
			case tt.want == "" && m != nil:
				t.Errorf("diagnose: %v, want none", m)
			case tt.want != "" && (m == nil || !strings.Contains(m.Error(), tt.want) || !errors.Is(m, errTLS)):
				t.Errorf("diagnose: %v, want one saying %q", m, tt.want)
			}
		})
	}
}

// FuzzDiagnose: no stream makes diagnose panic.
func FuzzDiagnose(f *testing.F) {
	f.Add(record(11, 0, 0, 3, 0, 0, 0))
	f.Add(append(record(11, 0, 0), record(3, 0, 0, 0)...))
	f.Add(record(2, 0, 0, 5, 0, 0, 2, 3, 3))
	f.Add([]byte{22, 3, 3, 0, 8, 0, 6, 2, 0, 0, 2, 3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := diagnose(b, errors.New("x"))
		if m == nil {
			return
		}
		// A finding points into the stream and says what and why.
		if m.Offset < 0 || m.Offset > len(b) || m.What == "" || m.Msg == "" {
			t.Fatalf("diagnose(% x) = %+v: offset outside the %d-byte stream or no what/why", b, m, len(b))
		}
	})
}
