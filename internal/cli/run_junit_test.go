package cli_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/reports"
)

// junitFile is junit.xml as a CI consumer (Jenkins, GitLab, the JUnit
// viewers of GitHub Actions) reads it, with types of our own so that the
// test pins the XML, not Ginkgo's structs.
type junitFile struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Disabled int      `xml:"disabled,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []struct {
		Name      string `xml:"name,attr"`
		Package   string `xml:"package,attr"`
		Tests     int    `xml:"tests,attr"`
		Failures  int    `xml:"failures,attr"`
		Errors    int    `xml:"errors,attr"`
		Skipped   int    `xml:"skipped,attr"`
		Disabled  int    `xml:"disabled,attr"`
		Time      string `xml:"time,attr"`
		Timestamp string `xml:"timestamp,attr"`
		Props     []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:"value,attr"`
		} `xml:"properties>property"`
		Cases []junitTestCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitTestCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Status    string `xml:"status,attr"`
	Time      string `xml:"time,attr"`
	Props     []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"properties>property"`
	Failure *junitElem `xml:"failure"`
	Error   *junitElem `xml:"error"`
	Skipped *junitElem `xml:"skipped"`
}

type junitElem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// readJUnitFile parses junit.xml strictly and checks what common
// consumers rely on: every count attribute is the count of its elements
// (<testsuites disabled> counts skipped and pending, the schema having no
// skipped there), a test case has at most one outcome element, every
// time attribute is a non-negative number of seconds, the suite has an
// ISO 8601 timestamp, every property and test case has a name.
func readJUnitFile(t *testing.T, b []byte) junitFile {
	t.Helper()
	var d junitFile
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.Strict = true
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("junit.xml is not XML a CI consumer can read: %v\n%s", err, b)
	}
	seconds := func(what, s string) {
		if f, err := strconv.ParseFloat(s, 64); err != nil || f < 0 {
			t.Errorf("%s: time=%q is not a number of seconds", what, s)
		}
	}
	seconds("<testsuites>", d.Time)
	var tests, failures, errs, disabled int
	for _, s := range d.Suites {
		seconds("<testsuite "+s.Name+">", s.Time)
		if _, err := time.Parse("2006-01-02T15:04:05", s.Timestamp); err != nil {
			t.Errorf("<testsuite %s> timestamp=%q: %v", s.Name, s.Timestamp, err)
		}
		for _, p := range s.Props {
			if p.Name == "" {
				t.Errorf("<testsuite %s> has a property with no name (value %q)", s.Name, p.Value)
			}
		}
		var f, e, sk, pend int
		for _, c := range s.Cases {
			if c.Name == "" || c.Classname == "" {
				t.Errorf("test case name=%q classname=%q", c.Name, c.Classname)
			}
			seconds("<testcase "+c.Name+">", c.Time)
			for _, p := range c.Props {
				if p.Name == "" {
					t.Errorf("<testcase %s> has a property with no name (value %q)", c.Name, p.Value)
				}
			}
			n := 0
			if c.Failure != nil {
				f, n = f+1, n+1
			}
			if c.Error != nil {
				e, n = e+1, n+1
			}
			if c.Skipped != nil {
				n++
				if c.Status == "pending" {
					pend++
				} else {
					sk++
				}
			}
			if n > 1 {
				t.Errorf("<testcase %s> has %d outcome elements", c.Name, n)
			}
		}
		if s.Tests != len(s.Cases) || s.Failures != f || s.Errors != e || s.Skipped != sk || s.Disabled != pend {
			t.Errorf("<testsuite %s tests=%d failures=%d errors=%d skipped=%d disabled=%d>, its test cases give %d %d %d %d %d",
				s.Name, s.Tests, s.Failures, s.Errors, s.Skipped, s.Disabled, len(s.Cases), f, e, sk, pend)
		}
		tests, failures, errs, disabled = tests+len(s.Cases), failures+f, errs+e, disabled+sk+pend
	}
	if d.Tests != tests || d.Failures != failures || d.Errors != errs || d.Disabled != disabled {
		t.Errorf("<testsuites tests=%d failures=%d errors=%d disabled=%d>, the suites give %d %d %d %d",
			d.Tests, d.Failures, d.Errors, d.Disabled, tests, failures, errs, disabled)
	}
	return d
}

// TestRunJUnitSelection: "run --focus" writes a junit.xml that lists the
// specs the focus selected and no other (Ginkgo's own report lists the
// rest as skipped; a CI viewer would show them as skips), the same specs
// results.json lists, with counts that add up (the emulator fault fails
// one), each named by its requirement ID and text under a classname that
// does not change with the target, its capture a path inside the results
// directory; "report render" writes it again from ginkgo-report.json, the
// same.
func TestRunJUnitSelection(t *testing.T) {
	out := filepath.Join(t.TempDir(), "r")
	code, stdout, stderr := runCLI(t, "run", "--emulator-fault", "grant-qos2", "--focus", "documented CONNECT", "--focus", "SUBSCRIBE grants",
		"--out", out, "--close-wait", "500ms")
	if code != cli.ExitNonConformant {
		t.Fatalf("exit %d, want %d (DPS-SUB-002 fails)\n%s\n%s", code, cli.ExitNonConformant, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatal(err)
	}
	d := readJUnitFile(t, b)
	rep, err := reports.ReadJSONFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var specs []string
	for _, rq := range rep.Requirements {
		for _, s := range rq.Specs {
			specs = append(specs, rq.ID+" "+s.Text)
		}
	}
	var cases []string
	for _, s := range d.Suites {
		for _, c := range s.Cases {
			cases = append(cases, c.Name)
			if c.Skipped != nil {
				t.Errorf("%q skipped (%q): every spec of this run ran", c.Name, c.Skipped.Message)
			}
			if c.Classname != "dps-conform service role" {
				t.Errorf("%q: classname %q", c.Name, c.Classname)
			}
			if (c.Failure != nil) != strings.HasPrefix(c.Name, "DPS-SUB-002 ") {
				t.Errorf("%q: failure %+v, want one for DPS-SUB-002 only", c.Name, c.Failure)
			}
			if c.Failure != nil {
				checkFailureMessage(t, c, "DPS-SUB-002")
			}
			var pcap, level string
			for _, p := range c.Props {
				switch p.Name {
				case "pcap":
					pcap = p.Value
				case "level":
					level = p.Value
				}
			}
			if level != "MUST" {
				t.Errorf("%q: level %q", c.Name, level)
			}
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(pcap))); err != nil || filepath.IsAbs(pcap) {
				t.Errorf("%q: pcap %q is not a capture inside the results directory (%v)", c.Name, pcap, err)
			}
		}
	}
	if d.Failures != 1 {
		t.Errorf("<testsuites failures=%d>, want 1", d.Failures)
	}
	checkPackage(t, d)
	slices.Sort(specs)
	slices.Sort(cases)
	if len(cases) < 2 || !slices.Equal(cases, specs) {
		t.Errorf("junit.xml lists %d test cases %q;\nresults.json %d specs %q", len(cases), cases, len(specs), specs)
	}
	if !strings.Contains(stdout, "specs in") || !strings.Contains(stdout, strconv.Itoa(len(specs))+" specs in") {
		t.Errorf("the console summary does not count the %d specs of the run:\n%s", len(specs), stdout)
	}
	// report render derives the same junit.xml from ginkgo-report.json.
	if err := os.Remove(filepath.Join(out, "junit.xml")); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, "report", "render", out); code != 0 {
		t.Fatalf("report render: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if again, err := os.ReadFile(filepath.Join(out, "junit.xml")); err != nil || !bytes.Equal(again, b) {
		t.Errorf("report render wrote another junit.xml (%v):\n%s", err, again)
	}
}

// checkFailureMessage: the message of a failed test case is the one line
// a CI dashboard shows, what the target did wrong (as in a device run:
// the finding's detail), not the requirement's statement; the statement,
// the requirement ID and level, its source and the full failure text are
// in the element's text.
func checkFailureMessage(t *testing.T, c junitTestCase, id string) {
	t.Helper()
	cat, err := conformance.LoadCatalog()
	if err != nil {
		t.Fatal(err)
	}
	rq, ok := cat.Lookup(id)
	if !ok {
		t.Fatalf("%s is not in the catalogue", id)
	}
	msg := c.Failure.Message
	if msg == "" || strings.ContainsAny(msg, "\r\n") || len([]rune(msg)) > 240 {
		t.Errorf("%q: <failure message=%q>: want one line of at most 240 characters", c.Name, msg)
	}
	if strings.Contains(msg, rq.Statement) || !strings.HasPrefix(msg, "conversation ") || !strings.Contains(msg, "actual: ") {
		t.Errorf("%q: <failure message=%q>: want the finding's detail (conversation N, frame N: expected …; actual: …), not the statement", c.Name, msg)
	}
	for _, want := range []string{id + " (" + string(rq.Level) + "): " + rq.Statement, rq.Source, msg, "capture: "} {
		if !strings.Contains(c.Failure.Text, want) {
			t.Errorf("%q: the <failure> text does not hold %q:\n%s", c.Name, want, c.Failure.Text)
		}
	}
}

// checkPackage: <testsuite package> names the tool, the same on every
// machine and in every directory, not Ginkgo's default (the working
// directory of the run).
func checkPackage(t *testing.T, d junitFile) {
	t.Helper()
	wd, _ := os.Getwd()
	for _, s := range d.Suites {
		if s.Package != "dps-conform" {
			t.Errorf("<testsuite %s package=%q>, want \"dps-conform\" (working directory %s)", s.Name, s.Package, wd)
		}
	}
}
