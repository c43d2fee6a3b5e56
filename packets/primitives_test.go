package packets

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
)

// walkTopicFilter is the level-by-level walk that topicFilter's wildcard
// jumps must agree with: the reference definition, kept here.
func walkTopicFilter(c *checker, s []byte, off int) {
	c.utf8String(s, off, "topic filter")
	if len(s) == 0 {
		c.violation("MQTT-4.7.3-1", off, "topic filter is empty")
		return
	}
	levelStart := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '/' {
			continue
		}
		level := s[levelStart:i]
		for j, ch := range level {
			switch {
			case ch == '#' && (len(level) != 1 || i != len(s)):
				c.violation("MQTT-4.7.1-2", off+2+levelStart+j, "'#' at byte %d is not alone in the last level", levelStart+j)
				return
			case ch == '+' && len(level) != 1:
				c.violation("MQTT-4.7.1-3", off+2+levelStart+j, "'+' at byte %d does not occupy a whole level", levelStart+j)
				return
			}
		}
		levelStart = i + 1
	}
}

func sameFilterVerdict(t *testing.T, s []byte) {
	t.Helper()
	for _, lenient := range []bool{false, true} {
		fast, slow := checker{lenient: lenient}, checker{lenient: lenient}
		fast.topicFilter(s, 3)
		walkTopicFilter(&slow, s, 3)
		if !reflect.DeepEqual(fast.err, slow.err) || !reflect.DeepEqual(fast.viol, slow.viol) {
			t.Fatalf("topicFilter(%q) = %v %v, the level walk gives %v %v", s, fast.err, fast.viol, slow.err, slow.viol)
		}
	}
}

func TestTopicFilterMatchesLevelWalk(t *testing.T) {
	for _, s := range []string{
		"", "#", "+", "/", "a", "$dps/registrations/res/#", "a/+", "+/+", "+/b/#", "/+/", "//#",
		"#/a", "a#", "a/#/b", "a/##", "a+", "+a", "a/+b/c", "+#", "#+", "a+/#", "a/#+", "++", "a/b+/#/c+",
	} {
		sameFilterVerdict(t, []byte(s))
	}
}

func FuzzTopicFilter(f *testing.F) {
	for _, s := range []string{"$dps/registrations/res/#", "a/+/b", "a#", "+#/+", "a+/#/"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { sameFilterVerdict(t, s) })
}

// plainTextBytewise and plainTopicBytewise are the byte-at-a-time
// definitions that the eight-lane scans must agree with.
func plainTextBytewise(s []byte) bool {
	for _, b := range s {
		if b == 0 || b >= 0x80 {
			return false
		}
	}
	return true
}

func plainTopicBytewise(s []byte) bool {
	for _, b := range s {
		if b == 0 || b >= 0x80 || b == '#' || b == '+' {
			return false
		}
	}
	return true
}

func samePlainVerdict(t *testing.T, s []byte) {
	t.Helper()
	if got, want := plainText(s), plainTextBytewise(s); got != want {
		t.Fatalf("plainText(% x) = %v, want %v", s, got, want)
	}
	if got, want := plainTopic(s), plainTopicBytewise(s); got != want {
		t.Fatalf("plainTopic(% x) = %v, want %v", s, got, want)
	}
}

// TestPlainScans checks the lane scans exhaustively for one odd byte (every
// value, at every position of strings up to 40 bytes, so every lane, the
// 16-byte loop, the 8-byte step and the overlapping last word), and for
// strings of bytes chosen to provoke borrows between lanes: 0x00 next to
// 0x01, '#' (0x23) and '+' (0x2b) next to 0x22/0x24/0x2a/0x2c, 0x80.
func TestPlainScans(t *testing.T) {
	for n := 0; n <= 40; n++ {
		s := bytes.Repeat([]byte{'a'}, n)
		samePlainVerdict(t, s)
		for i := range s {
			for v := 0; v < 256; v++ {
				s[i] = byte(v)
				samePlainVerdict(t, s)
			}
			s[i] = 'a'
		}
	}
	tricky := []byte{0x00, 0x01, 0x02, 0x08, 0x22, '#', 0x24, 0x2a, '+', 0x2c, 0x7f, 0x80, 0x81, 0xa3, 0xab, 0xff, 'a', '/'}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50_000 {
		s := make([]byte, rng.IntN(41))
		for i := range s {
			if rng.IntN(4) == 0 {
				s[i] = tricky[rng.IntN(len(tricky))]
			} else {
				s[i] = byte(0x30 + rng.IntN(0x40)) // plain
			}
		}
		samePlainVerdict(t, s)
	}
}

func FuzzPlainScans(f *testing.F) {
	for _, s := range []string{"$dps/registrations/res/#", "0ne00055500/registrations/dev\x00ice", "a+b\x80c#d0123456789abcdef"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, s []byte) { samePlainVerdict(t, s) })
}

// TestReaderRelease: a packet larger than the bufio buffer is read into a
// buffer the Reader keeps for the next one; Release drops it (an idle
// connection need not hold its largest packet), and reading goes on.
func TestReaderRelease(t *testing.T) {
	big := &Publish{Topic: []byte("t"), Payload: bytes.Repeat([]byte("x"), 8<<10)}
	var in []byte
	for range 2 {
		var err error
		if in, err = big.Append(in); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 4<<10), DecodeOptions{})
	if _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if cap(r.buf) < 8<<10 {
		t.Fatalf("the large packet's buffer is not kept (cap %d)", cap(r.buf))
	}
	r.Release()
	if r.buf != nil {
		t.Fatalf("Release kept %d bytes", cap(r.buf))
	}
	p, err := r.ReadPacket()
	if err != nil || len(p.(*Publish).Payload) != 8<<10 {
		t.Fatalf("after Release: %v, %v", p, err)
	}
}
