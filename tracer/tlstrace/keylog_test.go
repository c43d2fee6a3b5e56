package tlstrace

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseKeyLog(t *testing.T) {
	cr := strings.Repeat("ab", 32)
	cr2 := strings.Repeat("cd", 32)
	ms := strings.Repeat("01", 48)
	ts := strings.Repeat("02", 32)
	good := "# comment\n\nCLIENT_RANDOM " + cr + " " + ms + "\n" +
		"CLIENT_HANDSHAKE_TRAFFIC_SECRET " + cr2 + " " + ts + "\r\n" +
		"SERVER_TRAFFIC_SECRET_0 " + cr2 + " " + strings.Repeat("03", 48) + "\n" +
		"EXPORTER_SECRET " + cr2 + " zz\n"
	kl, err := ParseKeyLog(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if kl.Len() != 2 {
		t.Fatalf("Len %d", kl.Len())
	}
	if n, first := kl.Unused(); n != 1 || first != "EXPORTER_SECRET "+cr2[:16] {
		t.Errorf("Unused() = %d, %q; want the EXPORTER_SECRET line, cut to 32 bytes", n, first)
	}
	for _, c := range []struct{ in, want string }{
		{"CLIENT_RANDOM " + cr + "\n", "tlstrace: key log line 1: CLIENT_RANDOM: want 3 fields (label, client random, secret), got 2"},
		{"\nCLIENT_RANDOM " + cr[:62] + " " + ms, "tlstrace: key log line 2: CLIENT_RANDOM: client random has 62 hex digits, want 64"},
		{"CLIENT_RANDOM " + cr + " " + ms[:94], "tlstrace: key log line 1: CLIENT_RANDOM: master secret has 94 hex digits, want 96"},
		{"CLIENT_RANDOM x" + cr[1:] + " " + ms, "tlstrace: key log line 1: CLIENT_RANDOM: client random is not hex: encoding/hex: invalid byte: U+0078 'x'"},
		{"CLIENT_TRAFFIC_SECRET_0 " + cr + " " + ts[:60] + "zz", "tlstrace: key log line 1: CLIENT_TRAFFIC_SECRET_0: secret is not hex (62 characters)"},
		{"# x\nSERVER_HANDSHAKE_TRAFFIC_SECRET " + cr + " " + ts[:40], "tlstrace: key log line 2: SERVER_HANDSHAKE_TRAFFIC_SECRET: traffic secret has 40 hex digits, want 64 or 96"},
	} {
		_, err := ParseKeyLog(strings.NewReader(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("ParseKeyLog(%q) = %v, want %s", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), ms) {
			t.Errorf("secret leaked in %v", err)
		}
	}
	o, _ := ParseKeyLog(strings.NewReader("SERVER_HANDSHAKE_TRAFFIC_SECRET " + cr + " " + ts + "\nCLIENT_RANDOM " + strings.Repeat("ef", 32) + " " + ms))
	kl.Merge(o)
	if kl.Len() != 3 {
		t.Errorf("after Merge Len %d", kl.Len())
	}
	e := kl.lookup([]byte(strings.Repeat("\xab", 32)))
	if e == nil || e.master == nil || e.shts == nil {
		t.Errorf("merged entry %+v", e)
	}
	var nilKL *KeyLog
	if nilKL.Len() != 0 {
		t.Error("nil Len")
	}
}

// FuzzParseKeyLog: a key log has at most one entry per line, and an error
// names a line of the input.
func FuzzParseKeyLog(f *testing.F) {
	f.Add("CLIENT_RANDOM " + strings.Repeat("ab", 32) + " " + strings.Repeat("01", 48) + "\n")
	f.Add("# c\n\nSERVER_TRAFFIC_SECRET_0 " + strings.Repeat("ab", 32) + " " + strings.Repeat("01", 32))
	f.Add("CLIENT_RANDOM a b c d")
	f.Fuzz(func(t *testing.T, s string) {
		kl, err := ParseKeyLog(strings.NewReader(s))
		if err == nil && kl.Len() > strings.Count(s, "\n")+1 {
			t.Fatalf("%d entries from %d lines", kl.Len(), strings.Count(s, "\n")+1)
		}
		if err != nil {
			// The line named is one of the input's.
			var line int
			if _, serr := fmt.Sscanf(err.Error(), "tlstrace: key log line %d:", &line); serr != nil {
				t.Fatalf("error without line: %v", err)
			}
			if lines := strings.Count(s, "\n") + 1; line < 1 || line > lines {
				t.Fatalf("error names line %d of %d: %v", line, lines, err)
			}
		}
	})
}
