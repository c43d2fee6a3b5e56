package tlstrace

import (
	"bytes"
	"crypto/tls"
	"sync"
	"testing"
)

var (
	fuzzOnce    sync.Once
	fuzzSession *session
)

// recordedSession is one real TLS 1.3 session shared by fuzz targets.
func recordedSession(t testing.TB) *session {
	fuzzOnce.Do(func() { fuzzSession = record(t, sessionOpts{version: tls.VersionTLS13, size: 3000, clientCert: true}) })
	if fuzzSession == nil {
		t.Fatal("no session recorded")
	}
	return fuzzSession
}

// FuzzStream feeds arbitrary bytes in both directions, in fuzz-sized
// pieces, after a gap: the facts and buffers stay bounded, and every
// problem names an offset inside its direction's stream.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0}, []byte{0x15, 3, 3, 0, 2, 2, 70}, uint8(3))
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00garbage\x17\x03\x03\x00\x00"), []byte{0x14, 3, 3, 0, 1, 1, 0x16, 3, 3, 0xff}, uint8(1))
	s := recordedSession(f)
	c2s, s2c := joinDir(s.chunks)
	f.Add(c2s, s2c, uint8(7))
	kl := mustKeyLog(f, s.keyLog)
	f.Fuzz(func(t *testing.T, c2s, s2c []byte, step uint8) {
		// With the session's keys, inputs close to the recorded session
		// reach the decryption paths.
		st := NewStream(kl)
		if step&0x80 != 0 {
			st = NewStream(nil)
		}
		// end is each direction's stream length: the bytes fed and the
		// gaps' (every offset of a problem lies within it).
		end := [2]int64{int64(len(c2s)), int64(len(s2c))}
		if len(c2s) > 0 {
			st.Gap(ClientToServer, int(step))
			end[ClientToServer] += int64(step)
		}
		n := int(step%16) + 1
		for len(c2s) > 0 || len(s2c) > 0 {
			k := min(n, len(c2s))
			_, _ = st.Feed(ClientToServer, c2s[:k])
			c2s = c2s[k:]
			k = min(n, len(s2c))
			_, _ = st.Feed(ServerToClient, s2c[:k])
			s2c = s2c[k:]
		}
		f := st.Facts()
		if len(f.Problems) > maxProblems || len(f.Alerts) > maxAlerts {
			t.Fatalf("unbounded facts: %d problems %d alerts", len(f.Problems), len(f.Alerts))
		}
		for _, p := range f.Problems {
			if p.Dir > ServerToClient || p.Offset < 0 || p.Offset > end[p.Dir] {
				t.Fatalf("problem %v outside the %d-byte stream", p, end[min(p.Dir, ServerToClient)])
			}
		}
		for d := range st.dir {
			if len(st.dir[d].buf) > recordHeaderLen+maxCiphertext || len(st.dir[d].hs) > 4+maxHandshake {
				t.Fatal("buffer over bound")
			}
		}
	})
}

// FuzzChunking replays a real recorded session split at fuzz-chosen
// points: the plaintext must not depend on the split.
func FuzzChunking(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{200, 0, 17, 255, 5})
	f.Add([]byte{})
	s := recordedSession(f)
	kl := mustKeyLog(f, s.keyLog)
	f.Fuzz(func(t *testing.T, cuts []byte) {
		i := 0
		split := func(b []byte) [][]byte {
			var out [][]byte
			for len(b) > 0 {
				n := len(b)
				if i < len(cuts) {
					n = min(n, int(cuts[i])*7+1)
					i++
				}
				out = append(out, b[:n])
				b = b[n:]
			}
			return out
		}
		_, pt, errs := replay(t, s, kl, split)
		if len(errs) > 0 || !bytes.Equal(pt[0], s.c2s) || !bytes.Equal(pt[1], s.s2c) {
			t.Fatalf("errs %v, %d/%d bytes", errs, len(pt[0]), len(pt[1]))
		}
	})
}

func joinDir(chunks []chunk) (c2s, s2c []byte) {
	for _, c := range chunks {
		if c.dir == ClientToServer {
			c2s = append(c2s, c.data...)
		} else {
			s2c = append(s2c, c.data...)
		}
	}
	return c2s, s2c
}

func benchDecrypt(b *testing.B, o sessionOpts) {
	s := record(b, o)
	kl := mustKeyLog(b, s.keyLog)
	chunks := merged(s.chunks)
	b.SetBytes(int64(2 * o.size))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st := NewStream(kl)
		n := 0
		for _, c := range chunks {
			pt, _ := st.Feed(c.dir, c.data)
			n += len(pt)
		}
		if n != 2*o.size {
			b.Fatalf("decrypted %d bytes", n)
		}
	}
}

func BenchmarkDecryptTLS12GCM(b *testing.B) {
	benchDecrypt(b, sessionOpts{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, size: 1 << 20})
}

func BenchmarkDecryptTLS12ChaCha(b *testing.B) {
	benchDecrypt(b, sessionOpts{version: tls.VersionTLS12, suite: tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, size: 1 << 20})
}

func BenchmarkDecryptTLS13(b *testing.B) {
	benchDecrypt(b, sessionOpts{version: tls.VersionTLS13, size: 1 << 20})
}
