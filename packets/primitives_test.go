package packets

import (
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
