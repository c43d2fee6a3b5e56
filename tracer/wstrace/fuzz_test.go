package wstrace

import (
	"bytes"
	"testing"
)

// FuzzStream feeds arbitrary bytes in both directions, in fuzz-sized
// pieces, with gaps: problems and buffers stay bounded, and every problem
// names an offset inside its direction's stream.
func FuzzStream(f *testing.F) {
	m := []byte{9, 8, 7, 6}
	f.Add([]byte(upgradeReq+string(frame(0x82, []byte("hello"), m))), []byte(upgradeResp+string(frame(0x81, []byte("hi"), nil))), uint8(3))
	f.Add([]byte(upgradeReq), []byte(upgradeResp[:len(upgradeResp)-2]+"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n\xc2\x07\xf2\x48\xcd\xc9\xc9\x07\x00"), uint8(1))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff"), []byte("HTTP/1.1 101 OK\r\n\r\n\x08\x80"), uint8(200))
	f.Fuzz(func(t *testing.T, c2s, s2c []byte, step uint8) {
		st := NewStream()
		n := int(step%32) + 1
		total := [2]int{}
		// end is each direction's stream length: the bytes fed and the
		// gaps' (every offset of a problem lies within it).
		end := [2]int64{int64(len(c2s)), int64(len(s2c))}
		for len(c2s) > 0 || len(s2c) > 0 {
			k := min(n, len(c2s))
			p, _ := st.Feed(ClientToServer, c2s[:k])
			total[0] += len(p)
			c2s = c2s[k:]
			k = min(n, len(s2c))
			p, _ = st.Feed(ServerToClient, s2c[:k])
			total[1] += len(p)
			s2c = s2c[k:]
			if step&0x80 != 0 && len(s2c)%5 == 0 {
				st.Gap(ServerToClient, 2)
				end[ServerToClient] += 2
			}
		}
		if len(st.Facts().Problems) > maxProblems {
			t.Fatal("unbounded problems")
		}
		for _, p := range st.Facts().Problems {
			if p.Dir > ServerToClient || p.Offset < 0 || p.Offset > end[p.Dir] {
				t.Fatalf("problem %v outside the %d-byte stream", p, end[min(p.Dir, ServerToClient)])
			}
		}
		for d := range st.dir {
			if len(st.dir[d].comp) > maxCompressed+16 || len(st.dir[d].dict) > deflateWindow || len(st.dir[d].control) > maxControl {
				t.Fatal("buffer over bound")
			}
		}
	})
}

// FuzzChunking replays a recorded gorilla session split at fuzz-chosen
// points: payloads must not depend on the split.
func FuzzChunking(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	f.Add([]byte{0, 255, 9})
	ws := recordWS(f, wsOpts{compress: true, messages: 2, size: 3000, fragments: 3})
	f.Fuzz(func(t *testing.T, cuts []byte) {
		i := 0
		_, out, errs := replay(ws, func(b []byte) [][]byte {
			var r [][]byte
			for len(b) > 0 {
				n := len(b)
				if i < len(cuts) {
					n = min(n, int(cuts[i])+1)
					i++
				}
				r = append(r, b[:n])
				b = b[n:]
			}
			return r
		})
		if len(errs) > 0 || !bytes.Equal(out[0], ws.c2s) || !bytes.Equal(out[1], ws.s2c) {
			t.Fatalf("%v", errs)
		}
	})
}

func benchFrames(b *testing.B, compress bool) {
	ws := recordWS(b, wsOpts{compress: compress, messages: 16, size: 64 << 10})
	b.SetBytes(int64(len(ws.c2s) + len(ws.s2c)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		st := NewStream()
		n := 0
		for _, c := range ws.chunks {
			p, err := st.Feed(c.dir, c.data)
			if err != nil {
				b.Fatal(err)
			}
			n += len(p)
		}
		if n != len(ws.c2s)+len(ws.s2c) {
			b.Fatalf("%d payload bytes", n)
		}
	}
}

func BenchmarkStream(b *testing.B)        { benchFrames(b, false) }
func BenchmarkStreamDeflate(b *testing.B) { benchFrames(b, true) }
