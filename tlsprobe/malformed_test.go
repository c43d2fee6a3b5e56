package tlsprobe_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/tlsprobe"
)

// rewrite changes a TLS 1.2 server's plaintext flight before the probe
// sees it: msg rewrites each handshake message (header included), frame
// cuts the messages of a flight into record fragments, and raw rewrites
// the bytes of each record so framed (header included). After the
// server's ChangeCipherSpec the stream passes unchanged.
type rewrite struct {
	msg   func(m []byte) []byte
	frame func(flight []byte) [][]byte
	raw   func(i int, rec []byte) []byte
	// cut ends the stream after this many bytes of the rewritten flight
	// (0: never).
	cut int
}

// serveRewritten serves TLS 1.2 (and nothing else) with a fresh localhost
// certificate on a loopback port, through rw. Each connection lasts at
// most 5 s.
func serveRewritten(t *testing.T, rw rewrite) string {
	t.Helper()
	conf := &tls.Config{Certificates: []tls.Certificate{localhostCert(t)}, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, l, func(c net.Conn) {
		front, back := net.Pipe()
		defer front.Close()
		srv := tls.Server(back, conf)
		go func() { srv.Handshake(); back.Close() }()
		go func() { io.Copy(front, c); front.Close() }()
		relay(c, front, rw)
	})
	return l.Addr().String()
}

// relay copies the server's records from front to c, rewriting its
// plaintext handshake messages as rw says.
func relay(c net.Conn, front net.Conn, rw rewrite) {
	var hs []byte
	sent, recs := 0, 0
	write := func(b []byte) bool {
		if rw.cut > 0 && sent+len(b) > rw.cut {
			c.Write(b[:rw.cut-sent])
			return false
		}
		sent += len(b)
		_, err := c.Write(b)
		return err == nil
	}
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(front, hdr); err != nil {
			return
		}
		frag := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(front, frag); err != nil {
			return
		}
		if hdr[0] != 22 {
			if !write(append(hdr, frag...)) {
				return
			}
			if hdr[0] == 20 { // ChangeCipherSpec: encrypted from here
				io.Copy(c, front)
				return
			}
			continue
		}
		hs = append(hs, frag...)
		var flight []byte
		for len(hs) >= 4 {
			n := 4 + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
			if len(hs) < n {
				break
			}
			m := hs[:n:n]
			hs = hs[n:]
			if rw.msg != nil {
				m = rw.msg(m)
			}
			flight = append(flight, m...)
		}
		if len(flight) == 0 {
			continue
		}
		frags := [][]byte{flight}
		if rw.frame != nil {
			frags = rw.frame(flight)
		}
		for _, f := range frags {
			rec := append([]byte{22, hdr[1], hdr[2], byte(len(f) >> 8), byte(len(f))}, f...)
			if rw.raw != nil {
				rec = rw.raw(recs, rec)
			}
			recs++
			if !write(rec) {
				return
			}
		}
	}
}

// certificate rewrites the body of the Certificate message (type 11).
func certificate(f func(body []byte) []byte) func([]byte) []byte {
	return func(m []byte) []byte {
		if m[0] != 11 {
			return m
		}
		return handshakeMsg(11, f(m[4:]))
	}
}

func handshakeMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func u24(n int) []byte { return []byte{byte(n >> 16), byte(n >> 8), byte(n)} }

// TestProbeMalformedHandshake: a server whose plaintext handshake breaks
// TLS gets TLS 1.2 reported as malformed, with what is wrong and at which
// byte of the server's stream, not "refused" with crypto/tls's vague or
// wrong error; a handshake message split across records, which TLS
// allows, is accepted. Never a panic nor a hang: each probe has a
// deadline.
func TestProbeMalformedHandshake(t *testing.T) {
	tests := []struct {
		name string
		rw   rewrite
		// want are what the TLS 1.2 error must say; "" accepted.
		want []string
	}{
		{"null chain", rewrite{msg: certificate(func([]byte) []byte { return u24(0) })},
			[]string{"Certificate message at byte ", "certificate_list is empty", "no certificate"}},
		{"doubled certificate_list length prefix", rewrite{msg: certificate(func(b []byte) []byte {
			// Two certificates, then the list's length twice.
			two := append(append([]byte{}, b[3:]...), b[3:]...)
			return append(u24(len(two)+3), append(u24(len(two)), two...)...)
		})},
			[]string{"Certificate message at byte ", "certificate 0 at byte ", "a certificate_list again", "doubled length prefix"}},
		{"doubled certificate length prefix", rewrite{msg: certificate(func(b []byte) []byte {
			// certificate_list: [len][len'][len][DER]
			der := b[6:]
			entry := append(u24(len(der)), der...)
			entry = append(u24(len(entry)), entry...)
			return append(u24(len(entry)), entry...)
		})}, []string{"certificate 0 at byte ", "doubled length prefix"}},
		{"doubled handshake length prefix", rewrite{msg: func(m []byte) []byte {
			if m[0] != 2 { // ServerHello
				return m
			}
			return handshakeMsg(2, append(u24(len(m)-4), m[4:]...))
		}}, []string{"ServerHello message at byte 5", "doubled length prefix"}},
		{"doubled record length prefix", rewrite{raw: func(i int, rec []byte) []byte {
			if i != 0 {
				return rec
			}
			n := len(rec) - 5
			return append([]byte{rec[0], rec[1], rec[2], byte((n + 2) >> 8), byte(n + 2), byte(n >> 8), byte(n)}, rec[5:]...)
		}}, []string{"record at byte 0", "doubled length prefix"}},
		{"Certificate message cut short", rewrite{msg: certificate(func(b []byte) []byte { return b }), cut: 300},
			[]string{"message at byte ", "announces", "the server's stream ended after"}},
		{"handshake messages split across records", rewrite{frame: func(f []byte) [][]byte {
			var out [][]byte
			for len(f) > 7 {
				out, f = append(out, f[:7]), f[7:]
			}
			return append(out, f)
		}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serveRewritten(t, tt.rw)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := tlsprobe.Probe(ctx, addr, tlsprobe.Options{ServerName: "localhost", PlaintextPorts: []int{}, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(r.Versions, func(v tlsprobe.VersionResult) bool { return v.Version == "TLS 1.2" })
			if i < 0 {
				t.Fatalf("no TLS 1.2 in %+v", r.Versions)
			}
			v := r.Versions[i]
			if tt.want == nil {
				if !v.Accepted || v.Malformed || len(r.Chain) != 1 {
					t.Errorf("TLS 1.2 %+v, chain of %d: want accepted with its certificate", v, len(r.Chain))
				}
				return
			}
			if v.Accepted || !v.Malformed || v.TimedOut {
				t.Errorf("TLS 1.2 %+v: want malformed", v)
			}
			for _, w := range tt.want {
				if !strings.Contains(v.Error, w) {
					t.Errorf("TLS 1.2 error %q does not say %q", v.Error, w)
				}
			}
			vs := tlsprobe.PolicyDPS(r, "dps-2019")
			if j := slices.IndexFunc(vs, func(v tlsprobe.Violation) bool { return v.ID == "TLS-001" }); j < 0 || strings.Contains(vs[j].Msg, "refused") {
				t.Errorf("violations %+v: want TLS-001 saying the handshake was malformed, not refused", vs)
			}
		})
	}
}

// TestMalformedErrorIs: a MalformedError wraps crypto/tls's error.
func TestMalformedErrorIs(t *testing.T) {
	inner := errors.New("tls: x")
	e := &tlsprobe.MalformedError{Offset: 9, What: "Certificate message", Msg: "certificate_list is empty", Err: inner}
	if !errors.Is(e, inner) || !strings.Contains(e.Error(), "at byte 9") {
		t.Errorf("%v", e)
	}
}
