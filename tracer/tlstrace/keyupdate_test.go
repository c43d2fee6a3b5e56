package tlstrace

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// seal13 builds a TLS 1.3 record protecting content of inner type typ.
func seal13(c *cipher, typ byte, content []byte) []byte {
	inner := append(append(bytes.Clone(content), typ), 0, 0) // two bytes of padding
	n := len(inner) + c.aead.Overhead()
	hdr := []byte{typeApplicationData, 3, 3, byte(n >> 8), byte(n)}
	copy(c.nonce[:], c.iv)
	xorSeq(c.nonce[:], c.seq)
	c.seq++
	return c.aead.Seal(hdr, c.nonce[:], inner, hdr)
}

func hsMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func plainRecord(typ byte, body []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(body) >> 8), byte(len(body))}, body...)
}

// TestTLS13KeyUpdateSynthetic covers what crypto/tls cannot be made to
// send: TLS_AES_256_GCM_SHA384 and a KeyUpdate. The records are sealed
// with the package's own key schedule, so this checks record sequencing,
// secret switching and KeyUpdate handling, not the HKDF labels (those are
// checked against crypto/tls by the real sessions).
func TestTLS13KeyUpdateSynthetic(t *testing.T) {
	for _, suite := range []uint16{0x1301, 0x1302, 0x1303} {
		t.Run(SuiteName(suite), func(t *testing.T) {
			cr := bytes.Repeat([]byte{0xaa}, 32)
			st := &Stream{facts: Facts{Suite: suite}}
			st13 := st.suite13()
			secLen := 32
			if st13.sha384 {
				secLen = 48
			}
			sec := func(b byte) []byte { return bytes.Repeat([]byte{b}, secLen) }
			var kl strings.Builder
			for i, l := range []string{"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"} {
				fmt.Fprintf(&kl, "%s %x %s\n", l, cr, hex.EncodeToString(sec(byte(i+1))))
			}
			keys, err := ParseKeyLog(strings.NewReader(kl.String()))
			if err != nil {
				t.Fatal(err)
			}
			mk := func(b byte) *cipher {
				c, err := st13.cipher(sec(b))
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			ch := hsMsg(hsClientHello, append(append([]byte{3, 3}, cr...), 0, 0, 2, byte(suite>>8), byte(suite), 1, 0))
			shBody := append(append([]byte{3, 3}, bytes.Repeat([]byte{0x55}, 32)...), 0, byte(suite>>8), byte(suite), 0, 0, 6, 0, 43, 0, 2, 3, 4)
			sh := hsMsg(hsServerHello, shBody)
			shs, cts := mk(2), mk(3)
			sts := mk(4)
			var s2c []byte
			s2c = append(s2c, plainRecord(typeHandshake, sh)...)
			s2c = append(s2c, plainRecord(typeChangeCipherSpec, []byte{1})...)
			// EncryptedExtensions, an empty server Certificate, Finished.
			flight := append(hsMsg(hsEncryptedExtension, []byte{0, 0}), hsMsg(hsCertificate, []byte{0, 0, 0, 0})...)
			flight = append(flight, hsMsg(hsFinished, make([]byte, secLen))...)
			s2c = append(s2c, seal13(shs, typeHandshake, flight)...)
			s2c = append(s2c, seal13(sts, typeApplicationData, []byte("before "))...)
			s2c = append(s2c, seal13(sts, typeHandshake, hsMsg(hsKeyUpdate, []byte{0}))...)
			next, err := st13.nextSecret(sec(4))
			if err != nil {
				t.Fatal(err)
			}
			upd, err := st13.cipher(next)
			if err != nil {
				t.Fatal(err)
			}
			s2c = append(s2c, seal13(upd, typeApplicationData, []byte("after"))...)
			s2c = append(s2c, seal13(upd, typeAlert, []byte{1, 0})...)
			chs := mk(1)
			c2s := append(plainRecord(typeHandshake, ch), seal13(chs, typeHandshake, hsMsg(hsFinished, make([]byte, secLen)))...)
			c2s = append(c2s, seal13(cts, typeApplicationData, []byte("hello"))...)

			for _, split := range []func([]byte) [][]byte{whole, byteAtATime} {
				s := NewStream(keys)
				var out [2][]byte
				feed := func(d Dir, b []byte) {
					for _, p := range split(b) {
						pt, err := s.Feed(d, p)
						if err != nil {
							t.Fatalf("%s: %v", d, err)
						}
						out[d] = append(out[d], pt...)
					}
				}
				feed(ClientToServer, c2s[:len(plainRecord(typeHandshake, ch))])
				feed(ServerToClient, s2c)
				feed(ClientToServer, c2s[len(plainRecord(typeHandshake, ch)):])
				if string(out[1]) != "before after" || string(out[0]) != "hello" {
					t.Fatalf("plaintext %q / %q", out[0], out[1])
				}
				f := s.Facts()
				if f.Version != 0x0304 || !f.Decrypted || !f.ClientCertificateKnown || f.ClientCertificate || len(f.Alerts) != 1 || !f.Alerts[0].Encrypted {
					t.Fatalf("facts %+v", f)
				}
			}
		})
	}
}
