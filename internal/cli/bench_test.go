package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/internal/testnet"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// benchHelperEnv makes this test binary act as "dps-conform" with the
// arguments in the variable (JSON): the child processes of bench provision.
const benchHelperEnv = "DPSCONFORM_TEST_BENCH_ARGS"

// TestBenchHelperProcess is not a test: it is the child process (emulator,
// bare TLS server) of the bench provision tests.
func TestBenchHelperProcess(t *testing.T) {
	raw := os.Getenv(benchHelperEnv)
	if raw == "" {
		t.Skip("helper process for the bench provision tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(Main(ctx, args, os.Stdout, os.Stderr))
}

// spawnTestBinary runs this test binary as the dps-conform child.
func spawnTestBinary(ctx context.Context, args []string) *exec.Cmd {
	raw, _ := json.Marshal(args)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBenchHelperProcess$")
	cmd.Env = append(os.Environ(), benchHelperEnv+"="+string(raw))
	return cmd
}

// runBench runs a bench command with JSON output and decodes it into v.
func runBench(t *testing.T, run func(ctx context.Context, env *Env, args []string) error, args []string, v any) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdout: &stdout, Stderr: &stderr, Now: time.Now}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, env, append(args, "--format", "json")); err != nil {
		t.Fatalf("bench %v: %v\nstdout:\n%s", args, err, stdout.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("output is not the JSON result: %v\n%s", err, stdout.String())
	}
}

func TestBenchProvisionChild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc for the memory figures")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var res provisionBenchResult
	runBench(t, func(ctx context.Context, env *Env, args []string) error {
		return runProvisionBench(ctx, env, args, spawnTestBinary)
	}, []string{"--devices", "2", "--registrations", "20", "--idle", "50", "--mosquitto", "off"}, &res)
	checkProvisionResult(t, &res, 20, 50)
	if res.Mosquitto != nil || res.MosquittoIdle != nil || res.MosquittoNote != "--mosquitto off" {
		t.Errorf("--mosquitto off: mosquitto %+v, idle %+v, note %q; want not run, and the note saying why", res.Mosquitto, res.MosquittoIdle, res.MosquittoNote)
	}
	if len(res.Rounds) != 4 {
		t.Errorf("%d rounds, want the default 4", len(res.Rounds))
	}
	if res.Server != "child" || res.Idle.Combined {
		t.Errorf("server = %q, combined = %v; want child, false", res.Server, res.Idle.Combined)
	}
	if res.KeyType != "ecdsa-p256" {
		t.Errorf("key type = %q, want the default ecdsa-p256", res.KeyType)
	}
}

func TestBenchProvisionInproc(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var res provisionBenchResult
	state := t.TempDir()
	prof := filepath.Join(t.TempDir(), "storm.prof")
	runBench(t, benchProvisionCmd, []string{"--server", "inproc", "--key-type", "rsa", "--devices", "3", "--registrations", "10", "--idle", "20", "--state-dir", state,
		"--client", "device", "--cpuprofile", prof, "--mosquitto", "off"}, &res)
	checkProvisionResult(t, &res, 10, 20)
	if len(res.Rounds) != 1 {
		t.Errorf("%d rounds, want 1 (--cpuprofile implies one round)", len(res.Rounds))
	}
	for _, f := range []string{prof, filepath.Join(filepath.Dir(prof), "storm-responder.prof")} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("--cpuprofile: %s: %v (want a non-empty profile)", f, err)
		}
	}
	if filepath.Dir(res.StateDir) != state {
		t.Errorf("registry in %q, want a subdirectory of --state-dir %q", res.StateDir, state)
	}
	if _, err := os.Stat(res.StateDir); !os.IsNotExist(err) {
		t.Errorf("registry directory not removed at exit: stat: %v", err)
	}
	if !res.Idle.Combined || res.Idle.ServerRSSPerConnBytes != nil {
		t.Errorf("inproc: combined = %v, server figure = %v; want a combined figure only", res.Idle.Combined, res.Idle.ServerRSSPerConnBytes)
	}
	if res.KeyType != "rsa-2048" {
		t.Errorf("key type = %q, want rsa-2048", res.KeyType)
	}
}

// TestBenchProvisionMosquitto runs the echo flow against a real mosquitto:
// every echo flow completes with one poll, the comparison is the ratio of
// the two rates, each round has a mosquitto rate, and idle connections are
// held to mosquitto too, measured in its process apart from this one.
func TestBenchProvisionMosquitto(t *testing.T) {
	// The bench's own lookup: Debian installs the broker in /usr/sbin,
	// which is often not on PATH.
	bin, _, _ := findMosquitto("auto", mosquittoSbin)
	if bin == "" {
		requireBenchPeer(t, "mosquitto") // skips, or fails under DPSCONFORM_REQUIRE_PEERS=1
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	var res provisionBenchResult
	runBench(t, benchProvisionCmd, []string{"--server", "inproc", "--devices", "3", "--registrations", "24", "--rounds", "2", "--idle", "30", "--mosquitto", bin}, &res)
	checkProvisionResult(t, &res, 24, 30)
	m := res.Mosquitto
	if m == nil {
		t.Fatalf("no mosquitto phase; note %q", res.MosquittoNote)
	}
	if m.Done != 24 || m.Failed != 0 || m.Polls != 24 {
		t.Errorf("mosquitto echo = %+v; want 24 flows with one poll each, none failed", m)
	}
	if want := res.Storm.PerSec / m.PerSec; res.VsMosquitto != want {
		t.Errorf("emulator ÷ mosquitto = %v, want %v", res.VsMosquitto, want)
	}
	for i, r := range res.Rounds {
		if r.Mosquitto <= 0 {
			t.Errorf("round %d: mosquitto rate %v, want positive", i, r.Mosquitto)
		}
	}
	if !strings.HasPrefix(res.MosquittoVersion, "mosquitto version ") {
		t.Errorf("mosquitto version %q, want the first line of mosquitto -h", res.MosquittoVersion)
	}
	// The RSS delta of 30 connections may be 0 (the storm left free memory
	// in the broker), so only the split is checked: mosquitto's figure is
	// its own process's, never combined with this one.
	if mi := res.MosquittoIdle; mi == nil || mi.Held != 30 || mi.Combined {
		t.Errorf("idle to mosquitto = %+v; want 30 held, measured apart", mi)
	}
}

// TestFindMosquitto checks how --mosquitto is resolved: off and a missing
// auto are notes (the bench runs without it), a named executable that is
// not there is a usage error naming the flag.
func TestFindMosquitto(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("PATH", empty)
	fake := filepath.Join(t.TempDir(), "mosquitto")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag, sbin     string
		bin, note, err string
	}{
		{"off", fake, "", "--mosquitto off", ""},
		{"auto", filepath.Join(empty, "none"), "", "mosquitto is not installed (not in PATH nor " + filepath.Join(empty, "none"), ""},
		{"auto", fake, fake, "", ""},
		{"auto", empty, "", "mosquitto is not installed", ""}, // a directory is not the broker
		{fake, "", fake, "", ""},
		{filepath.Join(empty, "mosquitto"), fake, "", "", `--mosquitto "` + filepath.Join(empty, "mosquitto") + `"`},
	} {
		bin, note, err := findMosquitto(tc.flag, tc.sbin)
		var ue *UsageError
		switch {
		case tc.err != "" && (err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("findMosquitto(%q, %q) error %v, want a usage error containing %q", tc.flag, tc.sbin, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("findMosquitto(%q, %q) error %v", tc.flag, tc.sbin, err)
		case bin != tc.bin || !strings.HasPrefix(note, tc.note) || (tc.note == "") != (note == ""):
			t.Errorf("findMosquitto(%q, %q) = %q, %q; want %q, a note starting %q", tc.flag, tc.sbin, bin, note, tc.bin, tc.note)
		}
	}
}

// TestBenchProvisionMosquittoFails checks that a broker that exits at
// start ends the run with its own words, after the three tries, and
// leaves nothing behind.
func TestBenchProvisionMosquittoFails(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	fake := filepath.Join(t.TempDir(), "mosquitto")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho 'Error: Unable to load server key file.' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	env := &Env{Stdout: &stdout, Stderr: &stderr}
	err := benchProvisionCmd(context.Background(), env, []string{"--server", "inproc", "--devices", "1", "--registrations", "4", "--idle", "0", "--responder=false", "--mosquitto", fake})
	var ee *EnvError
	if !errors.As(err, &ee) || !strings.Contains(err.Error(), "exited before listening") || !strings.Contains(err.Error(), "Unable to load server key file") {
		t.Fatalf("error %v, want an environment error quoting the broker", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want no table from a run that did not complete", stdout.String())
	}
}

func checkProvisionResult(t *testing.T, res *provisionBenchResult, regs, idle int) {
	t.Helper()
	if res.Storm.Done != regs || res.Storm.Failed != 0 {
		t.Errorf("registrations done = %d, failed = %d (%s); want %d, 0", res.Storm.Done, res.Storm.Failed, res.Storm.FirstErr, regs)
	}
	if res.Storm.Attempts != regs {
		t.Errorf("register requests = %d, want one per registration (%d)", res.Storm.Attempts, regs)
	}
	if res.Storm.Polls < regs {
		t.Errorf("polls = %d, want at least one per registration (%d)", res.Storm.Polls, regs)
	}
	if res.Handshakes.Done != regs || res.Handshakes.Failed != 0 {
		t.Errorf("handshakes done = %d, failed = %d (%s); want %d, 0", res.Handshakes.Done, res.Handshakes.Failed, res.Handshakes.FirstErr, regs)
	}
	for name, p := range map[string]phaseResult{"registrations": res.Storm, "handshakes": res.Handshakes} {
		l := p.Latency
		if p.PerSec <= 0 || l.P50ms <= 0 || l.P50ms > l.P99ms || l.P99ms > l.MaxMs {
			t.Errorf("%s: rate %v, latency %+v: want a positive rate and 0 < p50 ≤ p99 ≤ max", name, p.PerSec, l)
		}
	}
	if want := res.Storm.PerSec / res.Handshakes.PerSec; res.Ratio != want {
		t.Errorf("ratio = %v, want registrations/s ÷ handshakes/s = %v", res.Ratio, want)
	}
	for i, r := range res.Rounds {
		if r.Handshakes <= 0 || r.Registrations <= 0 || r.Responder <= 0 || r.Ratio != r.Registrations/r.Handshakes {
			t.Errorf("round %d: %+v; want positive rates and ratio = registrations/s ÷ handshakes/s", i, r)
		}
	}
	if r := res.Responder; r == nil || r.Done != regs || r.Failed != 0 || r.Polls != regs {
		t.Errorf("bare responder = %+v; want %d registrations with one poll each, none failed", r, regs)
	} else if want := r.PerSec / res.Handshakes.PerSec; res.ResponderRatio != want {
		t.Errorf("responder ratio = %v, want %v", res.ResponderRatio, want)
	}
	if res.Idle == nil || res.Idle.Held != idle || res.Idle.Requested != idle {
		t.Fatalf("idle = %+v, want %d held", res.Idle, idle)
	}
	if res.NoFileSoft == 0 || res.NoFileSoft > res.NoFileHard {
		t.Errorf("RLIMIT_NOFILE %d/%d: want 0 < soft ≤ hard", res.NoFileSoft, res.NoFileHard)
	}
}

func TestBenchTrace(t *testing.T) {
	var res traceBenchResult
	runBench(t, benchTraceCmd, []string{"--size", "2", "--flows", "20", "--repeat", "2", "--dir", t.TempDir()}, &res)
	if res.Generated == nil {
		t.Fatal("no generator figures")
	}
	g := res.Generated
	if res.FileBytes < 2_000_000 || res.FileBytes != g.Bytes {
		t.Errorf("file is %d bytes, generator says %d; want ≥ 2 MB and equal", res.FileBytes, g.Bytes)
	}
	if g.Flows != 20 || g.Split == 0 || g.Multi == 0 {
		t.Errorf("generated %+v: want 20 flows, some split and some coalesced writes", g)
	}
	if len(res.Runs) != 2 || res.Runs[0].Workers != 1 || res.Runs[1].Workers != 2 {
		t.Fatalf("runs = %+v, want workers 1 then 2", res.Runs)
	}
	for _, r := range res.Runs {
		if r.Packets != g.Packets {
			t.Errorf("%d worker(s) decoded %d MQTT packets, the generator wrote %d", r.Workers, r.Packets, g.Packets)
		}
		if r.MQTTConversations != g.Flows || r.Conversations != g.Flows {
			t.Errorf("%d worker(s): %d conversations, %d carrying MQTT; want %d", r.Workers, r.Conversations, r.MQTTConversations, g.Flows)
		}
		if r.Problems != 0 || r.Gaps != 0 {
			t.Errorf("%d worker(s): %d problems, %d gaps in a clean capture", r.Workers, r.Problems, r.Gaps)
		}
		if len(r.AllSeconds) != 2 || r.Seconds != min(r.AllSeconds[0], r.AllSeconds[1]) {
			t.Errorf("%d worker(s): %.4f s of %v: want the fastest of 2 repetitions", r.Workers, r.Seconds, r.AllSeconds)
		}
		if r.MBps <= 0 || r.PacketsPerSec <= 0 || r.PeakHeapBytes == 0 {
			t.Errorf("%d worker(s): %+v: want positive rates and heap", r.Workers, r)
		}
	}
	if res.Cat.Skipped == "" && res.Cat.MBps <= 0 {
		t.Errorf("cat: %+v, want a positive rate", res.Cat)
	}
	if _, err := os.Stat(filepath.Dir(res.File)); !os.IsNotExist(err) {
		t.Errorf("capture directory not removed without --keep: stat: %v", err)
	}
}

func TestBenchTraceTShark(t *testing.T) {
	requireBenchPeer(t, "tshark")
	var res traceBenchResult
	runBench(t, benchTraceCmd, []string{"--size", "1", "--flows", "10", "--workers", "1", "--tshark", "--tshark-limit", "1", "--dir", t.TempDir()}, &res)
	ts := res.TShark
	if ts == nil || ts.Skipped != "" {
		t.Fatalf("tshark: %+v", ts)
	}
	if ts.MBps <= 0 || ts.Packets == 0 || len(res.VsTShark) != 1 {
		t.Errorf("tshark %+v, speed-ups %v: want a rate, packets and one ratio", ts, res.VsTShark)
	}
}

// standInTShark puts a shell script called tshark first on PATH: it runs
// logLine with $LOG set to the file it returns (its arguments are the real
// tshark's) and prints one MQTT line, "1,3".
func standInTShark(t *testing.T, logLine string) (log string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the stand-in tshark is a shell script")
	}
	bin := t.TempDir()
	log = filepath.Join(bin, "log")
	script := "#!/bin/sh\nLOG='" + log + "'\n" + logLine + "\necho 1,3\n"
	if err := os.WriteFile(filepath.Join(bin, "tshark"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// TestBenchTraceTSharkPrefix: with --tshark-limit below the file size,
// tshark reads a prefix, and the ratio compares it with the tracer on that
// same prefix, not on the whole file (other traffic, other rate). A
// stand-in tshark on PATH records the size of the file it was given.
func TestBenchTraceTSharkPrefix(t *testing.T) {
	sizes := standInTShark(t, `wc -c < "$2" >> "$LOG"`)
	var res traceBenchResult
	runBench(t, benchTraceCmd, []string{"--size", "3", "--flows", "10", "--workers", "1,2", "--tshark", "--tshark-limit", "1", "--dir", t.TempDir()}, &res)
	ts := res.TShark
	if ts == nil || ts.Skipped != "" {
		t.Fatalf("tshark: %+v", ts)
	}
	b, err := os.ReadFile(sizes)
	if err != nil {
		t.Fatal(err)
	}
	read, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || read != ts.Bytes || read >= res.FileBytes {
		t.Fatalf("tshark read %q bytes, its figure says %d, the file has %d: want the prefix (about 1 MB)", b, ts.Bytes, res.FileBytes)
	}
	if len(res.PrefixRuns) != 2 || len(res.VsTShark) != 2 {
		t.Fatalf("prefix runs %d, ratios %d: want one per worker count", len(res.PrefixRuns), len(res.VsTShark))
	}
	for i, p := range res.PrefixRuns {
		if want := float64(ts.Bytes) / 1e6 / p.Seconds; p.MBps != want {
			t.Errorf("prefix run %d: %.1f MB/s, want the prefix's %d bytes over %.3f s = %.1f", i, p.MBps, ts.Bytes, p.Seconds, want)
		}
		if got, want := res.VsTShark[i], p.MBps/ts.MBps; got != want {
			t.Errorf("ratio %d = %.3f, want the tracer on the prefix over tshark = %.3f (the whole file's run gives %.3f)", i, got, want, res.Runs[i].MBps/ts.MBps)
		}
	}
}

// TestBenchTraceTSharkRepeat checks that --repeat weighs on both sides of
// the tshark ratio alike: the tracer's fastest of N decodes is compared with
// tshark's fastest of N runs, not with a single run. A stand-in tshark on
// PATH counts its runs.
func TestBenchTraceTSharkRepeat(t *testing.T) {
	runs := standInTShark(t, `echo run >> "$LOG"`)
	var res traceBenchResult
	runBench(t, benchTraceCmd, []string{"--size", "1", "--flows", "10", "--workers", "1", "--repeat", "3", "--tshark", "--dir", t.TempDir()}, &res)
	raw, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(raw), "run"); n != 3 {
		t.Errorf("tshark ran %d times with --repeat 3, want 3 (the tracer's fastest of 3 against one tshark run favours the tracer)", n)
	}
	ts := res.TShark
	if ts == nil || ts.Skipped != "" {
		t.Fatalf("tshark: %+v", ts)
	}
	if len(ts.AllSeconds) != 3 || ts.Seconds != slices.Min(ts.AllSeconds) {
		t.Errorf("tshark %.4f s of %v: want the fastest of 3 runs", ts.Seconds, ts.AllSeconds)
	}
	if len(res.VsTShark) != 1 || res.VsTShark[0] != res.Runs[0].MBps/ts.MBps {
		t.Errorf("speed-up %v, want the tracer's MB/s ÷ tshark's (%v ÷ %v)", res.VsTShark, res.Runs[0].MBps, ts.MBps)
	}
}

// requireBenchPeer skips the test when tool is missing, unless
// DPSCONFORM_REQUIRE_PEERS=1 makes that a failure.
func requireBenchPeer(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("DPSCONFORM_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is required (DPSCONFORM_REQUIRE_PEERS=1) but not installed: %v", tool, err)
		}
		t.Skipf("%s is not installed: %v", tool, err)
	}
}

func TestGenerateTraceCaptureDeterministic(t *testing.T) {
	dir := t.TempDir()
	sum := func(name string, seed uint64) [32]byte {
		p := filepath.Join(dir, name)
		if _, err := generateTraceCapture(p, traceGenOptions{Size: 200_000, Flows: 7, Seed: seed}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	a, b, c := sum("a", 7), sum("b", 7), sum("c", 8)
	if a != b {
		t.Error("the same seed gave two different captures")
	}
	if a == c {
		t.Error("different seeds gave the same capture")
	}
}

// TestGenerateTraceCaptureFlows checks every flow is a whole DPS exchange:
// CONNECT first, SUBSCRIBE, register PUBLISHes, DISCONNECT last, both
// sides closed.
func TestGenerateTraceCaptureFlows(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.pcapng")
	st, err := generateTraceCapture(p, traceGenOptions{Size: 300_000, Flows: 9, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tracer.DecodeFile(p, tracer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flows, total := 0, 0
	for _, conv := range c.Conversations {
		if len(conv.Packets) == 0 {
			continue
		}
		flows++
		total += len(conv.Packets)
		ps := conv.Packets
		if _, ok := ps[0].Packet.(*packets.Connect); !ok || ps[0].Dir != tracer.ClientToServer {
			t.Errorf("conversation %d starts with %T from %v, want CONNECT from the client", conv.ID, ps[0].Packet, ps[0].Dir)
		}
		if _, ok := ps[len(ps)-1].Packet.(*packets.Disconnect); !ok {
			t.Errorf("conversation %d ends with %T, want DISCONNECT", conv.ID, ps[len(ps)-1].Packet)
		}
		var subs, registers int
		for _, pk := range ps {
			switch v := pk.Packet.(type) {
			case *packets.Subscribe:
				subs++
			case *packets.Publish:
				if strings.HasPrefix(string(v.Topic), "$dps/registrations/PUT/iotdps-register/") {
					registers++
				}
			}
		}
		if subs != 1 || registers == 0 {
			t.Errorf("conversation %d: %d SUBSCRIBEs, %d registers; want 1 and some", conv.ID, subs, registers)
		}
		if !conv.Closed[0] || !conv.Closed[1] {
			t.Errorf("conversation %d closed = %v, want both directions", conv.ID, conv.Closed)
		}
	}
	if flows != st.Flows || total != st.Packets {
		t.Errorf("decoded %d flows, %d packets; generator wrote %d, %d", flows, total, st.Flows, st.Packets)
	}
}

func TestWriteCapturePrefix(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full.pcapng")
	st, err := generateTraceCapture(full, traceGenOptions{Size: 400_000, Flows: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dir, "prefix.pcapng")
	n, err := writeCapturePrefix(full, prefix, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if n != fi.Size() || n < 100_000 || n > 100_000+70_000 || n >= st.Bytes {
		t.Errorf("prefix of %d bytes (file %d): want just over 100000 and under the whole %d", n, fi.Size(), st.Bytes)
	}
	c, err := tracer.DecodeFile(prefix, tracer.Options{})
	if err != nil {
		t.Fatalf("prefix does not decode: %v", err)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w, "trunc") {
			t.Errorf("prefix ends inside a block: %s", w)
		}
	}
	// Each pcapng section has its own byte order: a little-endian section
	// followed by a big-endian one (two empty SHBs, 28 bytes each).
	le := []byte{0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0}
	be := []byte{0x0A, 0x0D, 0x0D, 0x0A, 0, 0, 0, 28, 0x1A, 0x2B, 0x3C, 0x4D, 0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28}
	mixed := filepath.Join(dir, "mixed.pcapng")
	if err := os.WriteFile(mixed, append(slices.Clone(le), be...), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := writeCapturePrefix(mixed, filepath.Join(dir, "mixed-prefix"), 56); err != nil || n != 56 {
		t.Errorf("mixed byte orders: %d bytes, %v; want both sections (56 bytes)", n, err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("this is not a capture file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := writeCapturePrefix(bad, filepath.Join(dir, "out"), 10); err == nil || !strings.Contains(err.Error(), "not a pcap") {
		t.Errorf("non-capture: err = %v, want 'not a pcap'", err)
	}
}

func TestSummarise(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		want latencyStats
	}{
		{"empty", nil, latencyStats{}},
		{"one", ms(4), latencyStats{4, 4, 4, 4}},
		{"unsorted", ms(3, 1, 2, 10), latencyStats{P50ms: 2, P99ms: 10, MaxMs: 10, MeanMs: 4}},
		{"hundred", append(ms(make([]int, 98)...), ms(50, 100)...), latencyStats{P50ms: 0, P99ms: 50, MaxMs: 100, MeanMs: 1.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarise(tc.in); got != tc.want {
				t.Errorf("summarise = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseIntList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1,2", []int{1, 2}, true},
		{" 4 ", []int{4}, true},
		{"0", nil, false},
		{"1,,2", nil, false},
		{"x", nil, false},
		{"65", nil, false},
	} {
		got, err := parseIntList("workers", tc.in, 64)
		if (err == nil) != tc.ok || (tc.ok && !slicesEqual(got, tc.want)) {
			t.Errorf("parseIntList(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--workers") {
			t.Errorf("error %q does not name the flag", err)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestProcStatusKiB(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if v, ok := procStatusKiB(0, "VmRSS"); !ok || v <= 0 {
		t.Errorf("VmRSS = %d, %v; want a positive figure", v, ok)
	}
	if v, ok := procStatusKiB(os.Getpid(), "VmHWM"); !ok || v <= 0 {
		t.Errorf("VmHWM by pid = %d, %v; want a positive figure", v, ok)
	}
	if _, ok := procStatusKiB(0, "NoSuchField"); ok {
		t.Error("a missing field was found")
	}
}

// TestBenchUsageErrors checks the flag validation of every bench command:
// exit 2, nothing on stdout, one stderr line naming the flag.
func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"provision", "--devices", "0"}, "--devices 0: want 1..10000"},
		{[]string{"provision", "--registrations", "-3"}, "--registrations -3: want at least 1"},
		{[]string{"provision", "--idle", "-1"}, "--idle -1: want 0..1000000"},
		{[]string{"provision", "--duration", "-1s"}, "--duration -1s is negative"},
		{[]string{"provision", "--timeout", "0s"}, "--timeout 0s: want a positive duration"},
		{[]string{"provision", "--devices", "many"}, `invalid value "many" for flag --devices`},
		{[]string{"provision", "--server", "remote"}, `--server "remote": want child or inproc`},
		{[]string{"provision", "--format", "xml"}, `--format "xml": want text or json`},
		{[]string{"provision", "--group-key", "abc"}, "--id-scope, --group-key and --ca apply only with --target"},
		{[]string{"provision", "--state-dir", "/x", "--target", "mqtts://127.0.0.1:1", "--id-scope", "s", "--group-key", "YWJj"}, "--state-dir: applies to the embedded emulator, not to --target"},
		{[]string{"provision", "--responder", "--key-type", "rsa", "--target", "mqtts://127.0.0.1:1", "--id-scope", "s", "--group-key", "YWJj"}, "--key-type, --responder: applies to the embedded emulator"},
		{[]string{"provision", "--mosquitto", "auto", "--target", "mqtts://127.0.0.1:1", "--id-scope", "s", "--group-key", "YWJj"}, "--mosquitto: applies to the embedded emulator"},
		{[]string{"provision", "--mosquitto", "/nonexistent/mosquitto"}, `--mosquitto "/nonexistent/mosquitto": exec: "/nonexistent/mosquitto"`},
		{[]string{"provision", "--client", "paho"}, `--client "paho": want lean or device`},
		{[]string{"provision", "--rounds", "0"}, "--rounds 0: want 1..--registrations (3000)"},
		{[]string{"provision", "--rounds", "11", "--registrations", "10"}, "--rounds 11: want 1..--registrations (10)"},
		{[]string{"provision", "--target", "mqtts://127.0.0.1:1", "--id-scope", "0ne1"}, "--target needs --id-scope and --group-key"},
		{[]string{"provision", "--target", "wss://127.0.0.1:1", "--id-scope", "s", "--group-key", "YWJj", "--idle", "0"}, `--target "wss://127.0.0.1:1": want mqtts://host:port`},
		{[]string{"provision", "--target", "mqtts://127.0.0.1:1", "--id-scope", "s", "--group-key", "YWJj", "--ca", "/nonexistent/ca.pem"}, "--ca: open /nonexistent/ca.pem"},
		{[]string{"provision", "extra"}, `unexpected argument "extra"`},
		{[]string{"trace", "--size", "0"}, "--size 0: want 1..100000 MB"},
		{[]string{"trace", "--flows", "1000001"}, "--flows 1000001: want 1..1000000"},
		{[]string{"trace", "--workers", "1,0"}, `--workers "1,0": want a comma-separated list of integers 1..64`},
		{[]string{"trace", "--tshark-limit", "5"}, "--tshark-limit applies only with --tshark"},
		{[]string{"trace", "--tshark", "--tshark-limit", "-5"}, "--tshark-limit -5 is negative"},
		{[]string{"trace", "--file", "x.pcap", "--size", "3"}, "--file decodes an existing capture"},
		{[]string{"trace", "--file", "/nonexistent/x.pcap"}, "--file: stat /nonexistent/x.pcap: no such file or directory"},
		{[]string{"trace", "--format", "yaml"}, `--format "yaml": want text or json`},
		{[]string{"trace", "--repeat", "0"}, "--repeat 0: want 1..100"},
		{[]string{"trace", "more"}, `unexpected argument "more"`},
		{[]string{"trace", "--dir", "/nonexistent/dir"}, "--dir: stat /nonexistent/dir: no such file or directory"},
		{[]string{"tls-server"}, "--cert and --key are required"},
		{[]string{"tls-server", "--cert", "/nonexistent/c.pem", "--key", "/nonexistent/k.pem"}, "--cert/--key"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"bench"}, tc.args...), &stdout, &stderr)
			if code != ExitUsage {
				t.Errorf("exit code %d, want %d; stderr: %s", code, ExitUsage, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
			got := stderr.String()
			if !strings.HasPrefix(got, "dps-conform bench: ") || !strings.Contains(got, tc.want) || strings.Count(got, "\n") != 1 {
				t.Errorf("stderr = %q, want one line containing %q", got, tc.want)
			}
		})
	}
}

func TestCombinePhases(t *testing.T) {
	ms := time.Millisecond
	a := phaseResult{Done: 3, Failed: 1, FirstErr: "first", Seconds: 1, lat: []time.Duration{1 * ms, 2 * ms, 3 * ms}}
	b := phaseResult{Done: 1, Failed: 2, FirstErr: "second", Seconds: 3, lat: []time.Duration{10 * ms}}
	c := combinePhases(a, b)
	if c.Done != 4 || c.Failed != 3 || c.FirstErr != "first" || c.Seconds != 4 || c.PerSec != 1 {
		t.Errorf("combined = %+v, want 4 done, 3 failed, first error kept, 4 s, 1/s", c)
	}
	if want := (latencyStats{P50ms: 2, P99ms: 10, MaxMs: 10, MeanMs: 4}); c.Latency != want {
		t.Errorf("latency = %+v, want %+v (percentiles over both halves)", c.Latency, want)
	}
	if got := combinePhases(phaseResult{}, b); got.FirstErr != "second" {
		t.Errorf("first error = %q, want the second half's when the first has none", got.FirstErr)
	}
}

// FuzzWriteCapturePrefix: whatever the file holds, cutting a prefix never
// panics or hangs, and what it writes is a prefix of the input.
func FuzzWriteCapturePrefix(f *testing.F) {
	shb := []byte{0x0A, 0x0D, 0x0D, 0x0A, 28, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0}
	pcap := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4}
	f.Add(shb, int64(10))
	f.Add(append(append([]byte{}, shb...), shb...), int64(30))
	f.Add(pcap, int64(1))
	f.Add([]byte("not a capture at all"), int64(5))
	f.Add(shb[:10], int64(100))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, limit int64) {
		in := filepath.Join(dir, "in")
		out := filepath.Join(dir, "out")
		if err := os.WriteFile(in, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := writeCapturePrefix(in, out, limit)
		if err != nil {
			return
		}
		got, rerr := os.ReadFile(out)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if int64(len(got)) != n || n > int64(len(data)) || !bytes.Equal(got, data[:n]) {
			t.Fatalf("wrote %d bytes (reported %d) that are not a prefix of the %d-byte input", len(got), n, len(data))
		}
	})
}

// TestPhaseDead: a phase is dead (stopped at once) only when every
// worker's first operation failed and none succeeded; one worker's quick
// failures while the others' operations are under way are not a dead
// target.
func TestPhaseDead(t *testing.T) {
	b := &provisionBench{f: benchProvisionFlags{devices: 4, rounds: 1}}
	// The first four operations start together (one per worker): the
	// first fails, the others wait until 4 failures have piled up, then
	// succeed. Until then every later operation fails at once, so the
	// first worker piles up those failures while the other three are
	// under way.
	var started sync.WaitGroup
	started.Add(4)
	var succeeded atomic.Bool
	var fails atomic.Int64
	piled := make(chan struct{})
	fail := func() error {
		if fails.Add(1) == 4 {
			close(piled)
		}
		return errors.New("refused")
	}
	r := b.phase(context.Background(), 40, func(ctx context.Context, i int) error {
		switch {
		case i <= 4:
			started.Done()
			started.Wait()
			if i == 1 {
				return fail()
			}
			<-piled
			succeeded.Store(true)
			return nil
		case succeeded.Load():
			return nil
		default:
			return fail()
		}
	})
	if r.dead || r.Done < 3 || r.Failed < 2 || r.Done+r.Failed != 40 {
		t.Errorf("one worker failing fast: dead %v, %d done, %d failed; want not dead, all 40 tried, 3 done at least and 2 failed", r.dead, r.Done, r.Failed)
	}
	// Every operation fails: dead after the first round of them.
	var calls atomic.Int64
	r = b.phase(context.Background(), 40, func(ctx context.Context, i int) error {
		calls.Add(1)
		time.Sleep(10 * time.Millisecond)
		return errors.New("no answer")
	})
	if !r.dead || r.Done != 0 || calls.Load() >= 40 {
		t.Errorf("dead target: dead %v, %d done, %d operations tried of 40; want dead, stopped early", r.dead, r.Done, calls.Load())
	}
}

// TestBenchProvisionTargetNoOps: against --target, switching off a phase of
// the embedded set-up changes nothing and is accepted (here the target is
// unreachable: exit 3, not a usage error); and a small run's default
// --rounds is clamped to --registrations.
func TestBenchProvisionTargetNoOps(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench", "provision", "--mosquitto", "off", "--responder=false", "--target", "mqtts://127.0.0.1:1",
		"--id-scope", "s", "--group-key", "YWJj", "--idle", "0", "--timeout", "10s"}, &stdout, &stderr)
	if code == ExitUsage || strings.Contains(stderr.String(), "applies to the embedded emulator") {
		t.Errorf("exit %d: %s", code, stderr.String())
	}

	var res provisionBenchResult
	runBench(t, benchProvisionCmd, []string{"--server", "inproc", "--devices", "1", "--registrations", "3", "--idle", "0", "--mosquitto", "off", "--responder=false"}, &res)
	if len(res.Rounds) != 3 {
		t.Errorf("%d rounds for 3 registrations, want the default 4 clamped to 3", len(res.Rounds))
	}
}

// TestBenchProvisionSilentTarget: a --target that accepts TCP and never
// answers the ClientHello ends after 5 s, exit 3, with one line naming
// the target and what went unanswered; it took the ceiling phase's 30 s
// and said "first error: context deadline exceeded".
func TestBenchProvisionSilentTarget(t *testing.T) {
	t.Parallel()
	target := "mqtts://" + testnet.Silent(t)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"bench", "provision", "--mosquitto", "off", "--responder=false", "--target", target,
		"--id-scope", "s", "--group-key", "YWJj", "--idle", "0", "--devices", "1", "--registrations", "1", "--rounds", "1", "--timeout", "60s"}, &stdout, &stderr)
	want := "dps-conform bench: --target: transport: dial " + target + ": tls: no answer to a ClientHello within 5s (is it a TLS port?)\n"
	if code != ExitTargetUnreachable || stdout.Len() != 0 || stderr.String() != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 3 and %q", code, stdout.String(), stderr.String(), want)
	}
}

// TestRSSPerConn: a VmRSS that fell while the connections were held gives
// no figure (JSON leaves it out, text says n/a), not a negative one.
func TestRSSPerConn(t *testing.T) {
	if v := rssPerConn(-5, 10); v != nil || rssText(v) != "n/a (RSS fell; hold more connections)" {
		t.Errorf("rssPerConn(-5, 10) = %v (%s)", v, rssText(v))
	}
	if v := rssPerConn(10, 5); v == nil || *v != 2048 || rssText(v) != "2.0 KiB" {
		t.Errorf("rssPerConn(10, 5) = %v", v)
	}
	b, _ := json.Marshal(idleResult{ClientRSSPerConnBytes: rssPerConn(-1, 1)})
	if strings.Contains(string(b), "RSSPerConn") {
		t.Errorf("JSON %s holds an RSS figure", b)
	}
}

// TestBenchRowsUnmeasured: a memory figure that was not measured (no
// connection held; mosquitto's RSS not read before and after) gets no row,
// rather than "n/a (RSS fell)", which says something else.
func TestBenchRowsUnmeasured(t *testing.T) {
	r := &provisionBenchResult{
		Idle:          &idleResult{Requested: 10, Held: 0, server: false},
		MosquittoIdle: &idleResult{Requested: 10, Held: 10, server: false},
	}
	for _, row := range r.rows() {
		if strings.HasPrefix(row.name, "memory/conn") {
			t.Errorf("row %q = %q for a figure never measured", row.name, row.value)
		}
	}
}
