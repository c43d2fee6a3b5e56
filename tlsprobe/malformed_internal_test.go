package tlsprobe

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/transport"
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
		{"stream ends in a message's header", record(11, 0), "Certificate message at byte 5: the server's stream ended after 2 of the 4 bytes of its header"},
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
			m := diagnose(tt.stream, true, errTLS)
			switch {
			case tt.want == "" && m != nil:
				t.Errorf("diagnose: %v, want none", m)
			case tt.want != "" && (m == nil || !strings.Contains(m.Error(), tt.want) || !errors.Is(m, errTLS)):
				t.Errorf("diagnose: %v, want one saying %q", m, tt.want)
			}
		})
	}
}

// TestDiagnoseStoppedReading: where crypto/tls stopped reading before the
// server's stream ended, a record or message cut by the end of what it
// read is no finding; a null chain it read whole still is.
func TestDiagnoseStoppedReading(t *testing.T) {
	nullChain := []byte{11, 0, 0, 3, 0, 0, 0}
	for _, b := range [][]byte{{22, 3, 3}, record(nullChain...)[:8], record(nullChain...)[:10]} {
		if m := diagnose(b, false, errors.New("tls: x")); m != nil {
			t.Errorf("diagnose(% x) read on: %v, want none", b, m)
		}
	}
	if m := diagnose(append(record(nullChain...), 22, 3), false, errors.New("tls: x")); m == nil || !strings.Contains(m.Msg, "certificate_list is empty") {
		t.Errorf("null chain read on: %v, want the null chain", m)
	}
}

// FuzzDiagnose: no stream makes diagnose panic.
func FuzzDiagnose(f *testing.F) {
	f.Add(record(11, 0, 0, 3, 0, 0, 0))
	f.Add(append(record(11, 0, 0), record(3, 0, 0, 0)...))
	f.Add(record(2, 0, 0, 5, 0, 0, 2, 3, 3))
	f.Add([]byte{22, 3, 3, 0, 8, 0, 6, 2, 0, 0, 2, 3, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := diagnose(b, len(b)%2 == 0, errors.New("x"))
		if m == nil {
			return
		}
		// A finding points into the stream and says what and why.
		if m.Offset < 0 || m.Offset > len(b) || m.What == "" || m.Msg == "" {
			t.Fatalf("diagnose(% x) = %+v: offset outside the %d-byte stream or no what/why", b, m, len(b))
		}
	})
}

// TestHandshakeStoppedReading: when crypto/tls gives up on a well-formed
// ServerHello (here a TLS 1.2 one, to a client that allows TLS 1.3 only)
// it stops reading, so what it read may end inside the next record of a
// flight that is still arriving. That cut is the client's, not the
// server's: the error is crypto/tls's, not a MalformedError saying the
// server's stream ended.
func TestHandshakeStoppedReading(t *testing.T) {
	flight := tls12Flight(t)
	sh := 5 + int(binary.BigEndian.Uint16(flight[3:]))
	if len(flight) < sh+40 {
		t.Fatalf("a %d-byte flight", len(flight))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 4096)) // the ClientHello
		// The ServerHello and the start of the next record, then the
		// rest a little later, as TCP may deliver a long flight.
		c.Write(flight[:sh+20])
		time.Sleep(300 * time.Millisecond)
		c.Write(flight[sh+20:])
		io.Copy(io.Discard, c)
	}()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13, InsecureSkipVerify: true, ServerName: "localhost"}
	_, err = handshake(context.Background(), l.Addr().String(), cfg, 3*time.Second)
	<-done
	var m *MalformedError
	if err == nil || errors.As(err, &m) {
		t.Fatalf("handshake: %v, want crypto/tls's refusal of the TLS 1.2 ServerHello", err)
	}
	if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("handshake: %v, want crypto/tls's refusal of the TLS 1.2 ServerHello", err)
	}
}

// tls12Flight returns the plaintext first flight (the handshake records
// up to ServerHelloDone) of a crypto/tls TLS 1.2 server.
func tls12Flight(t *testing.T) []byte {
	t.Helper()
	ca, err := transport.NewCA("flight CA", transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueServer([]string{"localhost"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvEnd, cliEnd := net.Pipe()
	defer srvEnd.Close()
	defer cliEnd.Close()
	srv := tls.Server(srvEnd, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12})
	go srv.Handshake()
	rec := &recordingConn{Conn: cliEnd}
	cli := tls.Client(rec, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	cli.SetDeadline(time.Now().Add(5 * time.Second))
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	// The handshake records before the server's ChangeCipherSpec.
	b := rec.got
	off := 0
	for off+5 <= len(b) && b[off] == recordHandshake {
		off += 5 + int(binary.BigEndian.Uint16(b[off+3:]))
	}
	return b[:off]
}
