package tracer

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// feedRandom feeds n seeded random bytes, cut into segments of 1460, to a
// client-to-server MQTT stream captured mid-stream, and ends it.
func feedRandom(n int) *mqttStream {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	m := &mqttStream{dir: ClientToServer, conv: &Conversation{}, d: newDecoder(Options{}), max: 4 << 20, syncing: true}
	frame := 1
	for i := 0; i < len(data); i += 1460 {
		m.feed(data[i:min(i+1460, len(data))], frame, time.Time{})
		frame++
	}
	m.end(frame, true)
	return m
}

// TestResyncRandomBytesBounded: resynchronising over non-MQTT data does
// work linear in its length. Each offset is examined at most three times
// (forward, as the start of a chain past a waiting candidate, and again
// in a later resynchronisation that starts before it), plus once per
// segment for a candidate still waiting for bytes; the strict decodes are
// bounded by a fraction of the bytes. (Before: every segment rescanned the
// whole buffer, up to 64 KiB past a waiting candidate, with a strict
// decode per plausible header.)
func TestResyncRandomBytesBounded(t *testing.T) {
	const n = 1 << 20
	m := feedRandom(n)
	segs := int64(n/1460 + 1)
	t.Logf("%d bytes in %d segments: %d offsets examined, %d strict decodes", n, segs, m.scanned, m.tried)
	if m.scanned > 3*n+segs {
		t.Errorf("examined %d offsets for %d bytes in %d segments, want at most %d", m.scanned, n, segs, 3*n+segs)
	}
	if m.tried > n/4 {
		t.Errorf("%d strict decodes for %d bytes, want at most %d", m.tried, n, n/4)
	}
	var last int64
	for _, p := range m.conv.Problems {
		if p.Clause == "tracer-resync" {
			last = p.Offset
		}
	}
	if last == 0 {
		t.Errorf("no resync problem past offset 0: %+v", m.conv.Problems)
	}
	for _, p := range m.conv.Packets {
		if typ := p.Packet.Type(); typ == 0 || typ == 15 {
			t.Errorf("reserved packet type %v at offset %d decoded from random bytes", typ, p.Offset)
		}
	}
}

// TestResyncEndReported: bytes still held unconfirmed when the stream ends
// are reported as skipped, not dropped silently.
func TestResyncEndReported(t *testing.T) {
	m := &mqttStream{dir: ClientToServer, conv: &Conversation{}, d: newDecoder(Options{}), max: 4 << 20, syncing: true}
	// A plausible PUBLISH header claiming 1000 bytes that never arrive.
	m.feed([]byte{0x01, 0x02, 0x30, 0xe8, 0x07, 0x00, 0x01, 'a'}, 1, time.Time{})
	m.end(2, true)
	if got, want := summary(m.conv), "problem c2s @0 [tracer-resync] skipped 8 bytes to the next plausible fixed header\n"; got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestResyncTentative: right after a guessed resynchronisation, a header
// no MQTT 3.1.1 client sends resynchronises again instead of becoming a
// RESERVED15 packet; the same header in a stream that started with its
// CONNECT is reported as a malformed packet with its clause.
func TestResyncTentative(t *testing.T) {
	ping := []byte{0xc0, 0x00}
	pub := []byte{0x30, 0x05, 0x00, 0x03, 'a', '/', '+'} // PUBLISH with a wildcard in its topic: a violation
	junk := []byte{0xf8, 0x00}
	cat := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	t.Run("after-resync", func(t *testing.T) {
		m := &mqttStream{dir: ClientToServer, conv: &Conversation{}, d: newDecoder(Options{}), max: 4 << 20, syncing: true}
		m.feed(cat([]byte{0x01, 0x02, 0x03}, ping, pub, junk, ping, ping), 1, time.Time{})
		m.end(2, true)
		got := summary(m.conv)
		if strings.Contains(got, "RESERVED15") || !strings.Contains(got, "PUBLISH @5 #1 len=7 v=1") || !strings.Contains(got, "problem c2s @12 [tracer-resync] skipped 2 bytes") {
			t.Errorf("got\n%s", got)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		m := &mqttStream{dir: ClientToServer, conv: &Conversation{}, d: newDecoder(Options{}), max: 4 << 20}
		m.feed(cat(ping, ping, junk, ping), 1, time.Time{})
		m.end(2, true)
		if got := summary(m.conv); !strings.Contains(got, "RESERVED15 @4 #1 len=2 v=1") {
			t.Errorf("got\n%s", got)
		}
	})
}

func BenchmarkResyncRandom(b *testing.B) {
	const n = 1 << 20
	b.SetBytes(n)
	for b.Loop() {
		feedRandom(n)
	}
}
