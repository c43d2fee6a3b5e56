package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

const traceUsage = `Usage:
  dps-conform trace [flags] FILE

Decodes a pcap or pcapng capture: reassembles its TCP connections, decrypts
TLS with an NSS key log (--keylog, or secrets embedded in the pcapng),
unframes WebSocket and decodes MQTT leniently, so that rule violations are
reported rather than fatal. Prints one line per MQTT packet, DPS-aware
(register, poll and responses with status, $rid, retry-after, operation id,
and the time from a 202 to the poll that follows it), or with --format json
one JSON object per packet.

SAS signatures are printed as [redacted] unless --show-secrets is given.

With --check, the capture is also judged by the rules of the conformance
suite (the same rules that judge live runs and devices; 'dps-conform list'
shows them): --role service (default: the server's behaviour), device (the
client's: CONNECT fields, polling timing, ...) or all, under --profile.
What the capture cannot tell about the device may be given for the device
rules: --device-key KEY (the base64 symmetric key it attests with: its SAS
signatures are verified, DPS-DEV-005), --device-x509 (it was given a client
certificate: DPS-DEV-006 wants one on every connection) and --server-name
NAME (the host it was told: DPS-DEV-002 judges its SNI), as 'dps-conform
device' knows them. Findings are printed after the transcript as

  ! DPS-SUB-002 MUST conversation 1, frame 12: expected …; actual: …

and the exit code is 1 when a MUST rule found something or the capture has
decode violations (malformed packets, packets that break MQTT 3.1.1 rules,
TLS or WebSocket errors: bytes the peers sent); otherwise 3 (no verdict)
when the file could not be read to its end (cut off or corrupt), a TLS
connection could not be decrypted, the capture has defects (bytes it lost
or cut, a conversation captured mid-stream, a stream it stopped recording
inside a packet: what they lost was not judged), or no MQTT conversation
was found, and 0 only when everything was decoded and judged cleanly.
`

// portsFlag collects --port values (repeatable, or comma-separated).
type portsFlag []int

func (p *portsFlag) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *portsFlag) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", f)
		}
		*p = append(*p, n)
	}
	return nil
}

func traceCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("trace", traceUsage)
	var (
		keylog      string
		ports       portsFlag
		format      string
		check       bool
		profile     string
		role        string
		showSecrets bool
		maxBuf      int
		workers     int
		devEnv      conformance.RuleEnv // what the device was given
	)
	fs.StringVar(&keylog, "keylog", "", "NSS key log `FILE` (SSLKEYLOGFILE) for decrypting TLS")
	fs.Var(&ports, "port", "extra plaintext MQTT server `PORT` (repeatable or comma-separated); 1883, 8883, 443, 80 and 8080 are known")
	fs.StringVar(&format, "format", "text", "output `FORMAT`: text or json")
	fs.BoolVar(&check, "check", false, "judge the capture with the rules of --role (default: the service rules); exit 1 on MUST findings or decode violations, 3 when it gives no verdict")
	fs.StringVar(&profile, "profile", conformance.ProfileDPS2019, "profile `VERSION` the rules judge under: dps-2019 or dps-2023")
	fs.StringVar(&role, "role", "service", "which rules --check applies: `ROLE` service, device or all")
	fs.BoolVar(&showSecrets, "show-secrets", false, "print SAS signatures and passwords instead of [redacted]")
	fs.IntVar(&maxBuf, "max-stream-buffer", tracer.DefaultMaxStreamBuffer, "cap on the `BYTES` buffered per TCP stream direction")
	fs.IntVar(&workers, "workers", 1, "`N` goroutines reassembling and decoding flows")
	fs.StringVar(&devEnv.SymmetricKey, "device-key", "", "with --check --role device|all: the device's base64 symmetric `KEY`; its SAS signatures are verified (DPS-DEV-005)")
	fs.BoolVar(&devEnv.X509, "device-x509", false, "with --check --role device|all: the device was given a client certificate; DPS-DEV-006 wants it on every connection")
	fs.StringVar(&devEnv.ServerName, "server-name", "", "with --check --role device|all: the host `NAME` the device was told; DPS-DEV-002 judges its SNI")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return usageErrorf("missing capture FILE")
	case fs.NArg() > 1:
		return usageErrorf("want one capture FILE, got %d arguments", fs.NArg())
	case format != "text" && format != "json":
		return usageErrorf("--format %q is not text or json", format)
	case maxBuf < 1024:
		return usageErrorf("--max-stream-buffer %d is below 1024 bytes", maxBuf)
	case workers < 1 || workers > 256:
		return usageErrorf("--workers %d is not from 1 to 256", workers)
	case role != "service" && role != "device" && role != "all":
		return usageErrorf("--role %q is not service, device or all", role)
	case !conformance.KnownProfile(profile):
		return usageErrorf("--profile %q is not %s or %s", profile, conformance.ProfileDPS2019, conformance.ProfileDPS2023)
	case devEnv.SymmetricKey != "" && devEnv.X509:
		return usageErrorf("--device-key and --device-x509 say different things: a device attests with a symmetric key or with a certificate")
	}
	// --role and --profile choose what --check judges; without it they
	// would change nothing, and a user who gave them believes they did.
	for _, name := range []string{"role", "profile"} {
		if flagsSet(fs)[name] && !check {
			return usageErrorf("--%s chooses how --check judges the capture: it needs --check", name)
		}
	}
	for _, name := range []string{"device-key", "device-x509", "server-name"} {
		if flagsSet(fs)[name] && (!check || role == "service") {
			return usageErrorf("--%s informs the device rules: it needs --check with --role device or all", name)
		}
	}
	if devEnv.SymmetricKey != "" {
		if err := checkBase64Key("device-key", devEnv.SymmetricKey); err != nil {
			return err
		}
	}
	if devEnv.ServerName != "" {
		if err := checkHostName("server-name", devEnv.ServerName); err != nil {
			return err
		}
	}
	if fs.Arg(0) == "-" {
		if _, err := os.Stat("-"); err != nil {
			return usageErrorf("%q: trace reads a capture FILE, not %q; for standard input give /dev/stdin (a pipe is read as it is written)", "-", "-")
		}
	}
	o := tracer.Options{Ports: ports, MaxStreamBuffer: maxBuf, Workers: workers}
	if keylog != "" {
		f, err := os.Open(keylog)
		if err != nil {
			return inputError("--keylog", err)
		}
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			f.Close()
			return usageErrorf("--keylog %s is a directory, not a key log file", keylog)
		}
		o.KeyLog, err = tlstrace.ParseKeyLog(f)
		f.Close()
		if err != nil {
			return usageErrorf("--keylog %s: %v", keylog, err)
		}
		// Random bytes or a capture given by mistake parse as lines of
		// unknown labels; an empty key log (no TLS connection) is fine.
		if n, first := o.KeyLog.Unused(); n > 0 && o.KeyLog.Len() == 0 {
			return usageErrorf("--keylog %s: not an NSS key log: no CLIENT_RANDOM or TLS 1.3 *_TRAFFIC_SECRET entry in %s (first line: %q)", keylog, plural(n, "non-comment line"), first)
		}
	}
	writeTranscript := func(capt *tracer.Capture) error {
		topt := tracer.TranscriptOptions{ShowSecrets: showSecrets}
		if format == "json" {
			return tracer.WriteJSON(env.Stdout, capt, topt)
		}
		return tracer.WriteText(env.Stdout, capt, topt)
	}
	capt, err := tracer.DecodeFileContext(ctx, fs.Arg(0), o)
	if err != nil && ctx.Err() != nil {
		// Ctrl-C ends a live capture read from a pipe: print what was
		// decoded until then (it says where it stopped), no verdict.
		if capt != nil {
			_ = writeTranscript(capt)
		}
		return interrupted(ctx)
	}
	if err != nil {
		if errors.Is(err, tracer.ErrCorrupt) || errors.Is(err, tracer.ErrIsDirectory) {
			return &UsageError{Err: err}
		}
		return inputError("", err)
	}
	if err := writeTranscript(capt); err != nil {
		return envErrorf("writing the transcript: %v", err)
	}
	if len(capt.Conversations) == 0 {
		fmt.Fprintf(env.Stderr, "%s trace: %s\n", progName, noMQTTHint(capt, ports))
	}
	if check {
		devEnv.Profile = profile
		must, judged, err := checkCapture(env, capt, devEnv, role, format)
		if err != nil {
			return err
		}
		lost := captureDefects(capt)
		if n := tracer.CountViolations(capt); must+n > 0 {
			return &NonConformantError{MustFindings: must, DecodeViolations: n, CaptureDefects: lost}
		}
		if why := noVerdict(capt); why != "" {
			return envErrorf("no verdict: %s", why)
		}
		if lost != "" {
			// A lossy capture of a conformant peer must not read as
			// conformant, nor as non-conformant.
			return envErrorf("no verdict: the capture has defects, and what they lost was not judged (no MUST finding or protocol error in the rest): %s", lost)
		}
		if judged == 0 {
			return envErrorf("no verdict: no MUST requirement was judged (the capture holds none of the exchanges the %s rules judge)", role)
		}
	}
	return nil
}

// checkCapture applies the service rules to the capture, prints the
// findings (text: "! ID LEVEL detail" lines; json: one "finding" object per
// line) and returns the number of MUST findings and of MUST requirements
// judged (a rule applied at least once).
// renv carries the profile and what is known of the device.
func checkCapture(env *Env, capt *tracer.Capture, renv conformance.RuleEnv, role, format string) (must, judged int, err error) {
	cat, err := conformance.LoadCatalog()
	if err != nil {
		return 0, 0, &EnvError{Err: err}
	}
	var all []*conformance.Rule
	if role != "device" {
		all = append(all, conformance.ServiceRules()...)
	}
	if role != "service" {
		all = append(all, conformance.DeviceRules()...)
	}
	findings, applied := conformance.CheckCapture(capt, cat.RulesUnder(all, renv.Profile), renv)
	for id, n := range applied {
		if req, ok := cat.Lookup(id); ok && n > 0 && req.Level == conformance.MUST {
			judged++
		}
	}
	enc := json.NewEncoder(env.Stdout)
	for _, f := range findings {
		req, _ := cat.Lookup(f.ID)
		if req.Level == conformance.MUST {
			must++
		}
		if format == "json" {
			if err := enc.Encode(struct {
				Type  string            `json:"type"`
				Level conformance.Level `json:"level"`
				conformance.Finding
			}{"finding", req.Level, f}); err != nil {
				return 0, 0, envErrorf("writing findings: %v", err)
			}
			continue
		}
		fmt.Fprintf(env.Stdout, "! %s %s %s\n", f.ID, req.Level, f.Detail())
	}
	if format != "json" {
		rules := role
		if role == "all" {
			rules = "service and device"
		}
		fmt.Fprintf(env.Stdout, "%s of the %s rules (%d MUST; %s judged), profile %s\n", plural(len(findings), "finding"), rules, must, plural(judged, "MUST requirement"), renv.Profile)
	}
	return must, judged, nil
}

// noMQTTHint says which TCP connections the capture had when none carried
// MQTT the tracer recognised, and suggests --port for the unknown ports
// among them (the known ones, and those given as --port, need none).
func noMQTTHint(c *tracer.Capture, extra []int) string {
	if len(c.TCPServerPorts) == 0 {
		return fmt.Sprintf("no MQTT conversation found: no TCP connection in %d frames", c.Frames)
	}
	var ports, unknown []string
	for _, p := range c.TCPServerPorts {
		ports = append(ports, strconv.Itoa(int(p)))
		if !tracer.KnownPort(p) && !slices.Contains(extra, int(p)) {
			unknown = append(unknown, strconv.Itoa(int(p)))
		}
	}
	seen := fmt.Sprintf("no MQTT conversation found; TCP connections to server port %s seen", strings.Join(ports, ", "))
	switch {
	case len(unknown) == len(ports):
		return seen + ": if one carries plaintext MQTT, use --port N"
	case len(unknown) == 0 && len(ports) == 1:
		return seen + ", a known port, but none carried data recognisable as MQTT, TLS or WebSocket (did the capture end too soon?)"
	case len(unknown) == 0:
		return seen + ", known ports, but none carried data recognisable as MQTT, TLS or WebSocket (did the capture end too soon?)"
	}
	to := "port "
	if len(unknown) > 1 {
		to = "ports "
	}
	return seen + ": if one to " + to + strings.Join(unknown, ", ") + " carries plaintext MQTT, use --port N (the others are known ports)"
}

// maxDefectConversations bounds the conversations captureDefects names.
const maxDefectConversations = 3

// captureDefects says what the defects of the capture (gaps and
// tracer.Problem.CaptureDefect) lost, per conversation: "" when there are
// none. It names at most maxDefectConversations conversations; the
// transcript has every defect.
func captureDefects(c *tracer.Capture) string {
	var convs []string
	more := 0
	for _, cv := range c.Conversations {
		var parts []string
		if len(cv.Gaps) > 0 {
			g, lostBytes, cut := cv.Gaps[0], 0, 0
			for _, g := range cv.Gaps {
				lostBytes += g.Len
				if g.Cut {
					cut++
				}
			}
			lost := "lost"
			switch {
			case cut == len(cv.Gaps):
				lost = "cut by the snapshot length"
			case cut > 0:
				lost = fmt.Sprintf("lost (%d of the gaps cut by the snapshot length)", cut)
			}
			where := fmt.Sprintf("before frame %d", g.Frame)
			if g.Cut {
				where = fmt.Sprintf("in frame %d", g.Frame)
			}
			if len(cv.Gaps) == 1 {
				parts = append(parts, fmt.Sprintf("%s of %v %s at stream offset %d (%s)", plural(lostBytes, "byte"), g.Dir, lost, g.Offset, where))
			} else {
				parts = append(parts, fmt.Sprintf("%d gaps, %s %s in all (the first: %v at stream offset %d, %s)", len(cv.Gaps), plural(lostBytes, "byte"), lost, g.Dir, g.Offset, where))
			}
		}
		var cutPackets int
		for _, p := range cv.Problems {
			if !p.CaptureDefect {
				continue
			}
			switch {
			case p.Clause == "tracer-gap":
				cutPackets++
			case p.Clause == "tracer-resync" && p.Offset == 0 && cv.MidStream:
				parts = append(parts, fmt.Sprintf("captured mid-stream, %v frame %d: %s", p.Dir, p.Frame, p.Msg))
			case p.Clause == tracer.ClauseMidStream:
				parts = append(parts, p.Msg)
			case p.Clause == "tracer-truncated":
				parts = append(parts, fmt.Sprintf("the capture ends before %v does, with no FIN or RST: %s", p.Dir, p.Msg))
			default:
				parts = append(parts, fmt.Sprintf("%v frame %d, after a gap: %s", p.Dir, p.Frame, p.Msg))
			}
		}
		if cutPackets > 0 {
			parts = append(parts, plural(cutPackets, "packet")+" cut by a gap")
		}
		if len(parts) == 0 {
			continue
		}
		if len(convs) == maxDefectConversations {
			more++
			continue
		}
		convs = append(convs, fmt.Sprintf("conversation %d (%v → %v): %s", cv.ID, cv.Client, cv.Server, strings.Join(parts, "; ")))
	}
	if more > 0 {
		convs = append(convs, fmt.Sprintf("and %s more (see the transcript)", plural(more, "conversation")))
	}
	return strings.Join(convs, "; ")
}

// noVerdict is why --check cannot call the capture conformant although it
// found no violation: the file was not read to its end, a TLS connection
// could not be decrypted, or no MQTT was found. "" when there is a verdict.
func noVerdict(c *tracer.Capture) string {
	if c.Incomplete != "" {
		return "the capture was not read to its end: " + c.Incomplete
	}
	if len(c.Conversations) == 0 {
		return "no MQTT conversation found"
	}
	for _, cv := range c.Conversations {
		// Not decrypted at all, or only in part (a key log with the
		// handshake secrets but not the traffic secrets of a direction).
		why := cv.Undecrypted()
		if why != "" {
			why += "; give --keylog FILE with its secrets"
		} else if cv.TLS != nil && !cv.TLS.Decrypted {
			why = "give --keylog FILE"
		}
		if why != "" {
			return fmt.Sprintf("conversation %d (%v → %v) is TLS and was not decrypted, or only in part (%s)", cv.ID, cv.Client, cv.Server, why)
		}
	}
	return ""
}

// inputError classifies a file that cannot be read: missing or unreadable
// input, or a directory given for a file, is the user's mistake (exit 2),
// anything else an environment failure.
func inputError(what string, err error) error {
	if what != "" {
		err = fmt.Errorf("%s: %w", what, err)
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EISDIR) {
		return &UsageError{Err: err}
	}
	return &EnvError{Err: err}
}
