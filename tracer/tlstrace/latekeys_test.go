package tlstrace

import (
	"bytes"
	"crypto/tls"
	"testing"
)

// TestKeyLogAfterServerHello replays real sessions into a Stream whose
// key log is empty when the ServerHello is decoded and is filled later, as
// when a capture's Decryption Secrets Blocks follow the ServerHello (a
// client logs its secrets after reading it): the lookup is retried when a
// protected record needs the keys, and TLS 1.3 traffic secrets logged
// after the handshake secrets are used at the Finished.
func TestKeyLogAfterServerHello(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(VersionName(v), func(t *testing.T) {
			s := record(t, sessionOpts{version: v, size: 3000})
			var early, late []byte // TLS 1.3: handshake secrets first
			for _, line := range bytes.SplitAfter(s.keyLog, []byte("\n")) {
				if bytes.HasPrefix(line, []byte("CLIENT_TRAFFIC_SECRET_0")) || bytes.HasPrefix(line, []byte("SERVER_TRAFFIC_SECRET_0")) {
					late = append(late, line...)
				} else {
					early = append(early, line...)
				}
			}
			kl := &KeyLog{}
			st := NewStream(kl)
			var pt [2][]byte
			var errs []error
			feed := func(d Dir, b []byte) {
				out, err := st.Feed(d, b)
				pt[d] = append(pt[d], out...)
				if err != nil {
					errs = append(errs, err)
				}
			}
			sawServer := false
			for _, c := range s.chunks {
				if c.dir == ServerToClient && !sawServer {
					sawServer = true
					// The ServerHello record alone, then the secrets.
					n := recordHeaderLen + int(c.data[3])<<8 | int(c.data[4])
					feed(c.dir, c.data[:n])
					if !st.Facts().ServerHello || st.Facts().KeyLogFound {
						t.Fatalf("after the ServerHello record: %+v", st.Facts())
					}
					kl.Merge(mustKeyLog(t, early))
					feed(c.dir, c.data[n:])
					kl.Merge(mustKeyLog(t, late))
					continue
				}
				feed(c.dir, c.data)
			}
			f := st.Facts()
			if !f.KeyLogFound || !f.Decrypted || len(errs) != 0 || len(f.Problems) != 0 {
				t.Fatalf("facts %+v, errors %v", f, errs)
			}
			if !bytes.Equal(pt[ClientToServer], s.c2s) || !bytes.Equal(pt[ServerToClient], s.s2c) {
				t.Errorf("plaintext %d/%d bytes, want %d/%d", len(pt[0]), len(pt[1]), len(s.c2s), len(s.s2c))
			}
		})
	}
}
