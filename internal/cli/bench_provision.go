package cli

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

const benchProvisionUsage = `Usage:
  dps-conform bench provision [--devices N] [--registrations N | --duration D] [--idle N] [--key-type ecdsa|rsa] [flags]
  dps-conform bench provision --target mqtts://HOST:PORT --id-scope SCOPE --group-key KEY [--ca FILE] [flags]

Runs a provisioning storm on loopback: --devices concurrent devices, each
registration a full TLS 1.2 handshake (no session resumption) + CONNECT +
SUBSCRIBE + register + poll until assigned, against the reference emulator
answering retry-after 0, with distinct registration ids attesting with keys
derived from one symmetric-key enrollment group. Reports registrations/s and
p50/p99 latency, next to the ceiling: the raw TLS 1.2 full-handshake rate of a
bare TLS server with the same certificate type, in the same process layout,
at the same concurrency, measured in the same run; and next to a bare MQTT
responder that answers the same flow with canned packets and no DPS work,
and (--mosquitto) of mosquitto answering the same packets as an echo flow.
These phases take turns in --rounds rounds, so that the machine's drift
weighs on all of them alike.

Then it holds --idle connections open (TLS connected + CONNECT accepted) and
reports the memory each one costs. By default the server runs as a child
process ('dps-conform emulator', and a bare TLS server for the ceiling), so its
memory is its own VmRSS (/proc/PID/status) and the load generator's is
measured apart; --server inproc runs both in this process instead (figures are
then client + server together).

With --target the storm and the handshake ceiling run against an external
server (whose retry-after and limits are its own); idle memory is then the
client's only.
`

// benchProvisionFlags are the flags of bench provision.
type benchProvisionFlags struct {
	devices       int
	registrations int
	duration      time.Duration
	keyType       string
	idle          int
	target        string
	idScope       string
	groupKey      string
	caFile        string
	server        string
	stateDir      string
	format        string
	timeout       time.Duration
	cpuProfile    string
	responder     bool
	client        string
	rounds        int
	mosquitto     string
}

// latencyStats summarises a set of durations in milliseconds.
type latencyStats struct {
	P50ms  float64 `json:"p50ms"`
	P99ms  float64 `json:"p99ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

// phaseResult is one timed phase: the storm or the handshake ceiling.
type phaseResult struct {
	Done     int          `json:"done"`
	Failed   int          `json:"failed"`
	FirstErr string       `json:"firstError,omitempty"`
	Seconds  float64      `json:"seconds"`
	PerSec   float64      `json:"perSecond"`
	Latency  latencyStats `json:"latency"`
	Polls    int          `json:"polls,omitempty"`
	Attempts int          `json:"attempts,omitempty"`

	lat  []time.Duration // the latencies, sorted
	dead bool            // stopped: its first --devices operations all failed
}

// combinePhases adds up two runs of the same phase.
func combinePhases(a, b phaseResult) phaseResult {
	c := phaseResult{Done: a.Done + b.Done, Failed: a.Failed + b.Failed, FirstErr: a.FirstErr, Seconds: a.Seconds + b.Seconds,
		Polls: a.Polls + b.Polls, Attempts: a.Attempts + b.Attempts}
	if c.FirstErr == "" {
		c.FirstErr = b.FirstErr
	}
	if c.Seconds > 0 {
		c.PerSec = float64(c.Done) / c.Seconds
	}
	c.lat = append(append([]time.Duration(nil), a.lat...), b.lat...)
	c.Latency = summarise(c.lat)
	return c
}

// idleResult is the memory held by idle connections.
type idleResult struct {
	Requested int    `json:"requested"`
	Held      int    `json:"held"`
	Note      string `json:"note,omitempty"`
	FirstErr  string `json:"firstError,omitempty"`
	// Server side (child process): VmRSS delta per connection; absent
	// when there is no child, or when its RSS fell while the connections
	// were held (too few of them to measure).
	ServerRSSPerConnBytes *float64 `json:"serverRSSPerConnBytes,omitempty"`
	// Client side (this process): heap+stacks after GC, and VmRSS delta
	// (absent when it fell).
	ClientHeapPerConnBytes float64  `json:"clientHeapPerConnBytes"`
	ClientRSSPerConnBytes  *float64 `json:"clientRSSPerConnBytes,omitempty"`
	// Combined is set with --server inproc: both sides in this process.
	Combined bool `json:"combinedClientAndServer"`
	// server: a server process was measured (not --target, not inproc);
	// its figure is nil when its RSS fell.
	server bool
}

// provisionBenchResult is the outcome of bench provision.
type provisionBenchResult struct {
	Server     string      `json:"server"` // "child", "inproc" or the target
	StateDir   string      `json:"stateDir,omitempty"`
	KeyType    string      `json:"keyType"`
	Devices    int         `json:"devices"`
	Storm      phaseResult `json:"registrations"`
	Handshakes phaseResult `json:"handshakes"`
	// Responder is the same registrations against the bare MQTT
	// responder; nil when not run.
	Responder *phaseResult `json:"responder,omitempty"`
	// ResponderRatio is the responder's registrations/s ÷ handshakes/s.
	ResponderRatio float64 `json:"responderRegistrationsPerHandshake,omitempty"`
	// Mosquitto is the echo flow against mosquitto; nil when not run
	// (MosquittoNote says why).
	Mosquitto        *phaseResult `json:"mosquitto,omitempty"`
	MosquittoVersion string       `json:"mosquittoVersion,omitempty"`
	MosquittoNote    string       `json:"mosquittoNote,omitempty"`
	// VsMosquitto is registrations/s ÷ mosquitto's echo flows/s.
	VsMosquitto float64 `json:"registrationsPerMosquittoEcho,omitempty"`
	// MosquittoIdle is the memory of idle connections to mosquitto.
	MosquittoIdle *idleResult `json:"mosquittoIdle,omitempty"`
	// Rounds are the rates of each round of the interleaved phases.
	Rounds []roundRates `json:"rounds"`
	// WarmUp is the number of handshakes and registrations each phase ran
	// before the first round, not counted.
	WarmUp        int         `json:"warmUp"`
	Ratio         float64     `json:"registrationsPerHandshake"`
	Idle          *idleResult `json:"idle,omitempty"`
	NoFileSoft    uint64      `json:"rlimitNoFileSoft"`
	NoFileHard    uint64      `json:"rlimitNoFileHard"`
	NumCPU        int         `json:"numCPU"`
	LayoutRemark  string      `json:"remark"`
	CeilingRemark string      `json:"ceilingRemark"`
}

// roundRates are the rates of the phases of one round.
type roundRates struct {
	Handshakes    float64 `json:"handshakesPerSecond"`
	Registrations float64 `json:"registrationsPerSecond"`
	Responder     float64 `json:"responderRegistrationsPerSecond,omitempty"`
	Mosquitto     float64 `json:"mosquittoEchoesPerSecond,omitempty"`
	Ratio         float64 `json:"registrationsPerHandshake"`
}

// benchServer is a server under test: where to dial it and how to stop it.
type benchServer struct {
	addr    string
	idScope string
	pid     int  // 0: in this process or external
	echo    bool // a plain MQTT broker: the storm runs the echo flow (leanRegistration.echo)
	stop    func() error
}

// provisionBench runs bench provision. spawn starts a child dps-conform
// with the given arguments (tests replace it: their binary is not
// dps-conform).
type provisionBench struct {
	f     benchProvisionFlags
	env   *Env
	spawn func(ctx context.Context, args []string) *exec.Cmd
	// pki
	dir      string
	kt       transport.KeyType
	roots    *x509.CertPool
	certFile string
	keyFile  string
	caFile   string
	cert     tls.Certificate
	groupKey string
	stateDir string // the registry's directory; "" means a temporary database
	// mosquittoBin is the broker of the echo flow; "" when not run, and
	// mosquittoNote says why.
	mosquittoBin, mosquittoNote string
}

func benchProvisionCmd(ctx context.Context, env *Env, args []string) error {
	return runProvisionBench(ctx, env, args, spawnSelf)
}

// spawnSelf runs this executable with args, as a child that dies with this
// process (dieWithParent).
func spawnSelf(ctx context.Context, args []string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	dieWithParent(cmd)
	return cmd
}

func runProvisionBench(ctx context.Context, env *Env, args []string, spawn func(context.Context, []string) *exec.Cmd) error {
	fs := newFlagSet("bench provision", benchProvisionUsage)
	f := benchProvisionFlags{}
	fs.IntVar(&f.devices, "devices", 16, "`N` concurrent devices (and concurrent handshakes for the ceiling)")
	fs.IntVar(&f.registrations, "registrations", 3000, "`N` registrations in total (each with a distinct registration id); the handshake ceiling does as many handshakes, and the bare responder as many registrations")
	fs.DurationVar(&f.duration, "duration", 0, "stop each phase (the ceiling, the storm, the responder) after `D` in all, even if its count is not done (each round gets D ÷ --rounds); 0: no time bound but --timeout")
	fs.StringVar(&f.keyType, "key-type", "ecdsa", "server certificate `TYPE`: ecdsa (P-256) or rsa (2048)")
	fs.IntVar(&f.idle, "idle", 10000, "`N` idle connections (TLS + CONNECT accepted) held for the memory figure; 0: skip")
	fs.StringVar(&f.target, "target", "", "bench this external `URL` (mqtts://host:port) instead of the embedded emulator")
	fs.StringVar(&f.idScope, "id-scope", "", "id `SCOPE` of --target")
	fs.StringVar(&f.groupKey, "group-key", "", "symmetric-key enrollment group `KEY` of --target (base64)")
	fs.StringVar(&f.caFile, "ca", "", "CA `FILE` (PEM) that --target's certificate chains to; default: system roots")
	fs.StringVar(&f.server, "server", "child", "where the embedded server runs: `MODE` child (a child process; honest memory split) or inproc")
	fs.StringVar(&f.stateDir, "state-dir", "", "`DIR` under which the embedded server keeps its registry database (a fresh subdirectory, removed at exit), as 'emulator --state-dir' does: assigned registrations are then committed durably (fdatasync), so the disk's sync latency enters the figure; default: registrations in memory, as 'emulator' without --state-dir")
	fs.StringVar(&f.format, "format", "text", "output `FORMAT`: text or json")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "`DURATION` bound on the whole run")
	fs.StringVar(&f.client, "client", "", "load generator `KIND`: lean (the packets of the reference device, without its machinery; the default against the embedded emulator) or device (the reference device client, device.Provision, which also retries 429 and 5xx; the default with --target)")
	fs.IntVar(&f.rounds, "rounds", 4, "interleave the phases in `N` rounds: each round runs a share of the ceiling's handshakes, of the storm, of the responder's registrations and of mosquitto's echo flows, in an order that rotates, so that the machine's drift weighs on every phase alike; --cpuprofile implies 1")
	fs.BoolVar(&f.responder, "responder", true, "also run the registrations against a bare MQTT responder (canned DPS answers, no DPS work; 'bench tls-server --mqtt'), a reference for what the round trips alone cost; --responder=false skips it")
	fs.StringVar(&f.mosquitto, "mosquitto", "auto", "also run the same packets as an echo flow against mosquitto, a real MQTT broker in C (TLS 1.2, the same certificate): `BIN` is the mosquitto executable, auto (the one in PATH or /usr/sbin, skipped with a note when there is none) or off")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the storm (this process: the load generator, and the server too with --server inproc) to `FILE`, and one of the responder phase to FILE with -responder before its extension, for go tool pprof")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (bench provision takes only flags)", fs.Arg(0))
	}
	if f.cpuProfile != "" {
		f.rounds = 1 // a profile covers one contiguous phase
	}
	format, err := parseBenchFormat(f.format)
	if err != nil {
		return err
	}
	set := flagsSet(fs)
	if !set["rounds"] {
		f.rounds = min(f.rounds, max(f.registrations, 1)) // the default, for a small run
	}
	b := &provisionBench{f: f, env: env, spawn: spawn}
	if b.kt, err = parseKeyType("key-type", f.keyType); err != nil {
		return err
	}
	switch f.client {
	case "":
		b.f.client = "lean"
		if f.target != "" {
			b.f.client = "device"
		}
	case "lean", "device":
	default:
		return usageErrorf("--client %q: want lean or device", f.client)
	}
	switch {
	case f.devices < 1 || f.devices > 10000:
		return usageErrorf("--devices %d: want 1..10000", f.devices)
	case f.registrations < 1:
		return usageErrorf("--registrations %d: want at least 1", f.registrations)
	case f.duration < 0:
		return usageErrorf("--duration %v is negative", f.duration)
	case f.rounds < 1 || f.rounds > f.registrations:
		return usageErrorf("--rounds %d: want 1..--registrations (%d)", f.rounds, f.registrations)
	case f.idle < 0 || f.idle > 1_000_000:
		return usageErrorf("--idle %d: want 0..1000000", f.idle)
	case f.timeout <= 0:
		return usageErrorf("--timeout %v: want a positive duration", f.timeout)
	case f.server != "child" && f.server != "inproc":
		return usageErrorf("--server %q: want child or inproc", f.server)
	}
	if f.target != "" {
		// Flags of the embedded set-up; switching a phase off is no
		// change against a target (it runs none of them).
		var given []string
		for _, name := range []string{"key-type", "server", "state-dir", "responder", "mosquitto"} {
			if set[name] && !(name == "responder" && !f.responder) && !(name == "mosquitto" && f.mosquitto == "off") {
				given = append(given, "--"+name)
			}
		}
		if len(given) > 0 {
			return usageErrorf("%s: applies to the embedded emulator, not to --target", strings.Join(given, ", "))
		}
		b.f.responder = false
		if f.idScope == "" || f.groupKey == "" {
			return usageErrorf("--target needs --id-scope and --group-key (a symmetric-key enrollment group of the target)")
		}
		if _, err := base64.StdEncoding.DecodeString(f.groupKey); err != nil {
			return usageErrorf("--group-key is not base64") // never echo the key
		}
	} else if set["id-scope"] || set["group-key"] || set["ca"] {
		return usageErrorf("--id-scope, --group-key and --ca apply only with --target")
	}
	if f.target == "" {
		if b.mosquittoBin, b.mosquittoNote, err = findMosquitto(f.mosquitto, mosquittoSbin); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if werr := writeBenchOutput(env.Stdout, format, res, "dps-conform bench provision", res.rows()); werr != nil {
		return werr
	}
	if res.Storm.Failed > 0 {
		return envErrorf("%d of %d registrations failed; first: %s", res.Storm.Failed, res.Storm.Failed+res.Storm.Done, res.Storm.FirstErr)
	}
	if res.Handshakes.Failed > 0 {
		return envErrorf("%d handshakes of the ceiling failed; first: %s", res.Handshakes.Failed, res.Handshakes.FirstErr)
	}
	if m := res.Mosquitto; m != nil && m.Failed > 0 {
		return envErrorf("%d of %d echo flows against mosquitto failed; first: %s", m.Failed, m.Failed+m.Done, m.FirstErr)
	}
	return nil
}

// run measures the storm, the ceiling and the idle memory.
func (b *provisionBench) run(ctx context.Context) (*provisionBenchResult, error) {
	res := &provisionBenchResult{Devices: b.f.devices, NumCPU: runtime.NumCPU(), KeyType: b.kt.String()}
	soft, hard, err := raiseNoFile()
	if err != nil {
		return nil, envErrorf("%v", err)
	}
	res.NoFileSoft, res.NoFileHard = soft, hard

	var tlsConf *tls.Config
	if b.f.target == "" {
		dir, err := os.MkdirTemp("", "dps-conform-bench-provision-")
		if err != nil {
			return nil, envErrorf("temporary directory: %v", err)
		}
		defer os.RemoveAll(dir)
		b.dir = dir
		if err := b.makePKI(); err != nil {
			return nil, err
		}
		if b.f.stateDir != "" {
			sd, err := os.MkdirTemp(b.f.stateDir, "dps-conform-bench-state-")
			if err != nil {
				return nil, &UsageError{Err: fmt.Errorf("--state-dir: %w", err)}
			}
			defer os.RemoveAll(sd)
			b.stateDir = sd
			res.StateDir = sd
		}
		tlsConf = &tls.Config{RootCAs: b.roots, ServerName: "localhost"}
		res.Server = b.f.server
		res.LayoutRemark = "load generator and server share this machine's CPUs; "
		if b.f.server == "child" {
			res.LayoutRemark += "the server runs in a child process ('dps-conform emulator' for the storm, a bare TLS server for the ceiling)"
		} else {
			res.LayoutRemark += "the server runs in this process (--server inproc)"
		}
	} else {
		t, err := transport.ParseTarget(b.f.target)
		if err != nil || t.Scheme != transport.SchemeMQTTS {
			return nil, usageErrorf("--target %q: want mqtts://host:port", b.f.target)
		}
		tlsConf = &tls.Config{ServerName: t.Host}
		if b.f.caFile != "" {
			pool, err := loadCAPool("--ca", b.f.caFile)
			if err != nil {
				return nil, err
			}
			tlsConf.RootCAs = pool
		}
		// One handshake first, bounded as run and tlsprobe bound it: a
		// target that does not answer costs 5 s and says so, not a
		// phase's 30 s per device and "context deadline exceeded".
		if err := benchCheckTarget(ctx, t, tlsConf); err != nil {
			return nil, err
		}
		res.Server = t.String()
		res.KeyType = "the target's"
		res.LayoutRemark = "external target: its retry-after, limits and certificate are its own"
	}
	// No ClientSessionCache: every connection is a full handshake.
	tlsConf = transport.TLS12Only(tlsConf)

	res.CeilingRemark = fmt.Sprintf("bare TLS 1.2 server, same certificate type, SessionTicketsDisabled, no client session cache, same concurrency; interleaved with the storm in %d rounds", b.f.rounds)
	if b.f.target != "" {
		res.CeilingRemark = fmt.Sprintf("full TLS 1.2 handshakes against the target itself (handshake, then close), same concurrency; interleaved with the storm in %d rounds", b.f.rounds)
	}

	// The servers of the phases are all up for the whole run; the
	// phases take turns in rounds (the order rotating), so that a change
	// of load on the machine weighs on every phase alike.
	ceil, err := b.startTLSServer(ctx, false)
	if err != nil {
		return nil, err
	}
	defer ceil.stop()
	srv, err := b.startEmulator(ctx)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	var resp *benchServer
	if b.f.responder {
		if resp, err = b.startTLSServer(ctx, true); err != nil {
			return nil, err
		}
		defer resp.stop()
		resp.idScope = benchIDScope // the responder takes any
		res.Responder = &phaseResult{}
	}
	mosq, err := b.startMosquitto(ctx, res)
	if err != nil {
		return nil, err
	}
	if mosq != nil {
		defer mosq.stop()
		res.Mosquitto = &phaseResult{}
	}
	profile := func(file string, run func() phaseResult) (phaseResult, error) {
		stop, err := startCPUProfile(file)
		if err != nil {
			return phaseResult{}, err
		}
		r := run()
		return r, stop()
	}
	// A warm-up of each phase, not counted: the first connections of a
	// server (and of this process) are slower, and would otherwise weigh
	// on the first round's ceiling. Not against --target: registrations
	// there are the user's quota, spent only as asked.
	if b.f.target == "" {
		res.WarmUp = min(200, max(b.f.devices, b.f.registrations/20))
		b.handshakes(ctx, ceil.addr, tlsConf, res.WarmUp)
		b.storm(ctx, srv, tlsConf, res.WarmUp)
		if resp != nil {
			b.storm(ctx, resp, tlsConf, res.WarmUp)
		}
		if mosq != nil {
			b.storm(ctx, mosq, tlsConf, res.WarmUp)
		}
	}
	for round := range b.f.rounds {
		if ctx.Err() != nil {
			break
		}
		n := share(b.f.registrations, b.f.rounds, round)
		var rr roundRates
		phases := []func() error{
			func() error {
				h := b.handshakes(ctx, ceil.addr, tlsConf, n)
				res.Handshakes = combinePhases(res.Handshakes, h)
				rr.Handshakes = h.PerSec
				return deadPhase("the TLS handshakes of the ceiling", h)
			},
			func() error {
				st, err := profile(b.f.cpuProfile, func() phaseResult { return b.storm(ctx, srv, tlsConf, n) })
				res.Storm = combinePhases(res.Storm, st)
				rr.Registrations = st.PerSec
				return cmp.Or(err, deadPhase("the registrations", st))
			},
			func() error {
				if resp == nil {
					return nil
				}
				st, err := profile(responderProfile(b.f.cpuProfile), func() phaseResult { return b.storm(ctx, resp, tlsConf, n) })
				*res.Responder = combinePhases(*res.Responder, st)
				rr.Responder = st.PerSec
				return cmp.Or(err, deadPhase("the registrations against the bare responder", st))
			},
			func() error {
				if mosq == nil {
					return nil
				}
				st := b.storm(ctx, mosq, tlsConf, n)
				*res.Mosquitto = combinePhases(*res.Mosquitto, st)
				rr.Mosquitto = st.PerSec
				return deadPhase("the echo flows against mosquitto", st)
			},
		}
		for i := range phases {
			if err := phases[(i+round)%len(phases)](); err != nil {
				return nil, err
			}
		}
		if rr.Handshakes > 0 {
			rr.Ratio = rr.Registrations / rr.Handshakes
		}
		res.Rounds = append(res.Rounds, rr)
	}
	if err := ceil.stop(); err != nil {
		return nil, envErrorf("stopping the bare TLS server: %v", err)
	}
	if resp != nil {
		if err := resp.stop(); err != nil {
			return nil, envErrorf("stopping the bare MQTT responder: %v", err)
		}
	}
	if mosq != nil && res.Mosquitto.PerSec > 0 {
		res.VsMosquitto = res.Storm.PerSec / res.Mosquitto.PerSec
	}
	if res.Handshakes.PerSec > 0 {
		res.Ratio = res.Storm.PerSec / res.Handshakes.PerSec
		if res.Responder != nil {
			res.ResponderRatio = res.Responder.PerSec / res.Handshakes.PerSec
		}
	}

	// 3. Idle connections.
	if b.f.idle > 0 && ctx.Err() == nil {
		res.Idle = b.idleConns(ctx, srv, tlsConf, soft)
	}
	if mosq != nil {
		if b.f.idle > 0 && ctx.Err() == nil {
			res.MosquittoIdle = b.idleConns(ctx, mosq, tlsConf, soft)
		}
		if err := mosq.stop(); err != nil {
			return nil, envErrorf("stopping mosquitto: %v", err)
		}
	}
	if err := srv.stop(); err != nil {
		return nil, envErrorf("stopping the server: %v", err)
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return res, envErrorf("bench provision did not finish within --timeout %v", b.f.timeout)
		}
		return res, interrupted(ctx)
	}
	return res, nil
}

// deadPhase is the error of a phase whose devices' first operations all
// failed.
func deadPhase(what string, r phaseResult) error {
	if !r.dead {
		return nil
	}
	return envErrorf("%s: %d failed, the first of every device among them, and none succeeded, so the run stopped; first error: %s", what, r.Failed, r.FirstErr)
}

// share is round's part of total split into rounds parts (the first
// total mod rounds parts one larger).
func share(total, rounds, round int) int {
	n := total / rounds
	if round < total%rounds {
		n++
	}
	return n
}

// makePKI writes a CA, a server certificate of the chosen key type and the
// enrollment config into b.dir.
func (b *provisionBench) makePKI() error {
	pki, err := transport.LoadOrCreateServerPKI(b.dir, nil, b.kt, time.Now())
	if err != nil {
		return envErrorf("server PKI: %v", err)
	}
	b.roots = x509.NewCertPool()
	b.roots.AddCert(pki.CA)
	b.certFile, b.keyFile, b.caFile, b.cert = pki.CertFile, pki.KeyFile, pki.CAFile, pki.Certificate
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		return envErrorf("group key: %v", err)
	}
	b.groupKey = base64.StdEncoding.EncodeToString(key)
	return nil
}

// benchIDScope is the id scope of the embedded emulator.
const benchIDScope = "0ne00BE4C00"

func (b *provisionBench) registryConfig() *registry.Config {
	return &registry.Config{
		IDScope:    benchIDScope,
		LinkedHubs: []registry.LinkedHub{{Name: "bench-hub.azure-devices.net"}},
		EnrollmentGroups: []registry.EnrollmentGroup{{
			EnrollmentGroupID: "bench-group",
			Attestation: registry.AttestationMechanism{Type: registry.AttestationSymmetricKey,
				SymmetricKey: &registry.SymmetricKeyAttestation{PrimaryKey: b.groupKey}},
		}},
	}
}

// benchLimits switch off the DPS throttles (a storm is what they prevent)
// and keep idle connections open.
func benchLimits() emulator.Limits {
	l := emulator.DefaultLimits()
	l.MaxConnections = -1
	l.PollsPerWindow = -1
	l.RegistrationsPerMinute = -1
	l.IdleTimeout = time.Hour
	l.MaxOperations = -1
	return l
}

// startEmulator starts the server of the storm: the external target, a
// child 'dps-conform emulator', or an in-process emulator.
func (b *provisionBench) startEmulator(ctx context.Context) (*benchServer, error) {
	if b.f.target != "" {
		t, _ := transport.ParseTarget(b.f.target)
		return &benchServer{addr: t.Addr(), idScope: b.f.idScope, stop: func() error { return nil }}, nil
	}
	if b.f.server == "child" {
		cfgFile := filepath.Join(b.dir, "enrollments.json")
		raw, err := json.Marshal(b.registryConfig())
		if err != nil {
			return nil, envErrorf("enrollment config: %v", err)
		}
		if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
			return nil, envErrorf("enrollment config: %v", err)
		}
		l := benchLimits()
		args := []string{"emulator", "--mqtt-addr", "127.0.0.1:0", "--ws-addr", "", "--admin-addr", "",
			"--config", cfgFile, "--tls-cert", b.certFile, "--tls-key", b.keyFile, "--tls-ca", b.caFile,
			"--retry-after", "0", "--log-level", "error",
			"--max-connections", "-1", "--polls-per-window", "-1", "--registrations-per-minute", "-1",
			"--idle-timeout", l.IdleTimeout.String()}
		if b.stateDir != "" {
			args = append(args, "--state-dir", b.stateDir)
		}
		srv, line, err := b.startChild(ctx, args)
		if err != nil {
			return nil, err
		}
		var ready emulator.Ready
		if err := json.Unmarshal(line, &ready); err != nil || ready.MQTT == "" {
			srv.stop()
			return nil, envErrorf("child emulator: unexpected ready line %q", line)
		}
		srv.addr, srv.idScope = ready.MQTT, ready.IDScope
		return srv, nil
	}
	reg, err := registry.Open(ctx, registry.Options{Config: b.registryConfig(), StateDir: b.stateDir})
	if err != nil {
		return nil, envErrorf("registry: %v", err)
	}
	es, err := emulator.New(emulator.Config{
		MQTTAddr:  "127.0.0.1:0",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{b.cert}},
		Registry:  reg,
		Limits:    benchLimits(),
	})
	if err != nil {
		reg.Close()
		return nil, envErrorf("emulator: %v", err)
	}
	if err := es.Start(ctx); err != nil {
		reg.Close()
		return nil, envErrorf("emulator: %v", err)
	}
	var once sync.Once
	var stopErr error
	return &benchServer{addr: es.Ready().MQTT, idScope: es.IDScope(), stop: func() error {
		once.Do(func() { stopErr = errors.Join(es.Close(), reg.Close()) })
		return stopErr
	}}, nil
}

// startTLSServer starts the bare TLS server of the ceiling (or with mqtt
// the bare MQTT responder): the target itself, a child 'dps-conform bench
// tls-server' or one in this process.
func (b *provisionBench) startTLSServer(ctx context.Context, mqtt bool) (*benchServer, error) {
	if b.f.target != "" {
		t, _ := transport.ParseTarget(b.f.target)
		return &benchServer{addr: t.Addr(), stop: func() error { return nil }}, nil
	}
	if b.f.server == "child" {
		args := []string{"bench", "tls-server", "--cert", b.certFile, "--key", b.keyFile}
		if mqtt {
			args = append(args, "--mqtt")
		}
		srv, line, err := b.startChild(ctx, args)
		if err != nil {
			return nil, err
		}
		var ready struct{ Addr string }
		if err := json.Unmarshal(line, &ready); err != nil || ready.Addr == "" {
			srv.stop()
			return nil, envErrorf("child TLS server: unexpected ready line %q", line)
		}
		srv.addr = ready.Addr
		return srv, nil
	}
	l, err := listenHandshakes(b.cert)
	if err != nil {
		return nil, envErrorf("bare TLS server: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); serveConns(ctx, l, tlsServerHandler(mqtt)) }()
	return &benchServer{addr: l.Addr().String(), stop: func() error {
		l.Close()
		<-done
		return nil
	}}, nil
}

// startChild starts a child dps-conform and waits (30 s at most) for its
// first stdout line.
func (b *provisionBench) startChild(ctx context.Context, args []string) (*benchServer, []byte, error) {
	cctx, cancel := context.WithCancel(ctx)
	cmd := b.spawn(cctx, args)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, nil, envErrorf("child %s: %v", args[0], err)
	}
	stderr := &limitedBuffer{max: 4096}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, nil, envErrorf("starting the child %s: %v", args[0], err)
	}
	lines := make(chan []byte, 1)
	go func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadBytes('\n')
		lines <- line
		io.Copy(io.Discard, br)
	}()
	srv := &benchServer{pid: cmd.Process.Pid, stop: childStopper(cmd.Wait, cancel)}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case line := <-lines:
		if len(line) == 0 {
			srv.stop()
			return nil, nil, envErrorf("child %s exited before it was ready: %s", args[0], oneLine(stderr.String()))
		}
		return srv, line, nil
	case <-timer.C:
		srv.stop()
		return nil, nil, envErrorf("child %s not ready within 30 s: %s", args[0], oneLine(stderr.String()))
	case <-ctx.Done():
		srv.stop()
		return nil, nil, envErrorf("interrupted while starting the child %s", args[0])
	}
}

// childStopper returns the stop function of a started child: cancel (the
// command's Cancel sends SIGTERM), then wait for it (cmd.Wait, or what
// stands for it); once, however often called.
func childStopper(wait func() error, cancel context.CancelFunc) func() error {
	var once sync.Once
	var stopErr error
	return func() error {
		once.Do(func() {
			cancel()
			err := wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) || errors.Is(err, context.Canceled) {
				err = nil // stopped by SIGTERM, as asked
			}
			stopErr = err
		})
		return stopErr
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// phase runs do total times on n workers, bounded by ctx and --duration.
// When every worker's first operation failed and none has succeeded, the
// target answers nothing: the phase stops there, marked dead, rather than
// spend a timeout on each of the others.
func (b *provisionBench) phase(ctx context.Context, total int, do func(ctx context.Context, i int) error) phaseResult {
	if b.f.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.f.duration/time.Duration(b.f.rounds))
		defer cancel()
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var oks, firstFails atomic.Int64
	var dead atomic.Bool
	var next atomic.Int64
	var mu sync.Mutex
	var res phaseResult
	var lat []time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for range b.f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			failed, firstErr := 0, ""
			for ctx.Err() == nil {
				i := int(next.Add(1))
				if i > total {
					break
				}
				t0 := time.Now()
				if err := do(ctx, i); err != nil {
					if ctx.Err() != nil {
						break // stopped by --duration, --timeout or a dead target, not a failure
					}
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					// Only each worker's first operation counts: one
					// worker's quick failures (a 429) say nothing of the
					// others' operations still under way.
					if failed == 1 && len(mine) == 0 && firstFails.Add(1) >= int64(b.f.devices) && oks.Load() == 0 {
						dead.Store(true)
						stop()
					}
					continue
				}
				oks.Add(1)
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			res.Failed += failed
			if res.FirstErr == "" {
				res.FirstErr = firstErr
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	res.Done = len(lat)
	res.Seconds = el.Seconds()
	if res.Seconds > 0 {
		res.PerSec = float64(res.Done) / res.Seconds
	}
	res.Latency = summarise(lat)
	res.lat = lat
	// All failed: also when quick failures used up every operation
	// before some worker drew its first.
	res.dead = dead.Load() || (res.Done == 0 && res.Failed > 0)
	return res
}

// summarise returns the percentiles of d (nearest rank).
func summarise(d []time.Duration) latencyStats {
	if len(d) == 0 {
		return latencyStats{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(d))+0.999999) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return latencyStats{P50ms: ms(rank(0.50)), P99ms: ms(rank(0.99)), MaxMs: ms(d[len(d)-1]), MeanMs: ms(sum / time.Duration(len(d)))}
}

// benchTargetCheckTimeout bounds the connect and the handshake of the
// check of --target before the phases.
const benchTargetCheckTimeout = 5 * time.Second

// benchCheckTarget connects to --target and completes one TLS handshake
// with conf (no CONNECT), each step within benchTargetCheckTimeout; an
// *EnvError naming --target and what went unanswered when it fails.
func benchCheckTarget(ctx context.Context, t transport.Target, conf *tls.Config) error {
	c, err := transport.Dial(ctx, t, transport.DialOptions{
		TLSConfig:        transport.TLS12Only(conf.Clone()),
		Dialer:           &net.Dialer{Timeout: benchTargetCheckTimeout},
		HandshakeTimeout: benchTargetCheckTimeout,
	})
	if err != nil {
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return envErrorf("--target %s: no TLS handshake within --timeout: %v", t, err)
			}
			return interrupted(ctx)
		}
		return envErrorf("--target: %v", err)
	}
	c.Close()
	return nil
}

// benchPhaseHandshakeTimeout bounds one connect + handshake of the ceiling
// phase: generous, as a loaded server queues handshakes.
const benchPhaseHandshakeTimeout = 30 * time.Second

// handshakes measures full TLS 1.2 handshakes: connect, handshake, close.
func (b *provisionBench) handshakes(ctx context.Context, addr string, conf *tls.Config, n int) phaseResult {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return b.phase(ctx, n, func(ctx context.Context, _ int) error {
		hctx, cancel := context.WithTimeout(ctx, benchPhaseHandshakeTimeout)
		defer cancel()
		raw, err := d.DialContext(hctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", addr, err)
		}
		c := tls.Client(raw, conf)
		err = c.HandshakeContext(hctx)
		raw.Close()
		if err != nil && ctx.Err() == nil && hctx.Err() != nil {
			return fmt.Errorf("TLS handshake with %s: not finished within %v (no ServerHello, or a stalled one)", addr, benchPhaseHandshakeTimeout)
		}
		if err != nil {
			return fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return nil
	})
}

// storm provisions n distinct devices against srv with the --client load generator.
func (b *provisionBench) storm(ctx context.Context, srv *benchServer, conf *tls.Config, n int) phaseResult {
	target := transport.Target{Scheme: transport.SchemeMQTTS}
	host, port, _ := net.SplitHostPort(srv.addr)
	target.Host = host
	target.Port, _ = strconv.Atoi(port)
	groupKey := b.groupKey
	if b.f.target != "" {
		groupKey = b.f.groupKey
	}
	var mu sync.Mutex
	polls, attempts := 0, 0
	run := time.Now().UnixNano()
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	res := b.phase(ctx, n, func(ctx context.Context, i int) error {
		regID := fmt.Sprintf("bench-%x-%06d", run, i)
		if b.f.client == "lean" || srv.echo {
			key, err := dps.DeriveDeviceKey(groupKey, regID)
			if err != nil {
				return err
			}
			l := leanRegistration{addr: srv.addr, conf: conf, idScope: srv.idScope, regID: regID, key: key, deadline: 30 * time.Second, echo: srv.echo}
			p, err := l.run(ctx, dialer)
			if err != nil {
				return err
			}
			mu.Lock()
			polls += p
			attempts++
			mu.Unlock()
			return nil
		}
		r, err := device.Provision(ctx, device.Config{
			Target: target,
			// The ceiling's bound, not the device's 5 s: a loaded
			// server queues handshakes.
			Dial:           transport.DialOptions{TLSConfig: conf, HandshakeTimeout: benchPhaseHandshakeTimeout},
			IDScope:        srv.idScope,
			RegistrationID: regID,
			GroupKey:       groupKey,
			// retry-after 0: the device polls at once, as often as the
			// service answers "assigning"; still bounded.
			MaxPolls: 1_000_000,
		})
		if err != nil {
			return err
		}
		if r.Status != dps.StatusAssigned {
			return fmt.Errorf("registration ended %q", r.Status)
		}
		mu.Lock()
		polls += r.Polls
		attempts += r.Attempts
		mu.Unlock()
		return nil
	})
	res.Polls, res.Attempts = polls, attempts
	return res
}

// memSnapshot is the memory of this process after a GC.
type memSnapshot struct {
	heap   uint64 // HeapInuse + StackInuse
	rssKiB int64
}

func snapshotSelf() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, _ := procStatusKiB(0, "VmRSS")
	return memSnapshot{heap: ms.HeapInuse + ms.StackInuse, rssKiB: rss}
}

// idleConns opens --idle connections (TLS + CONNECT accepted), holds them
// and measures what they cost.
func (b *provisionBench) idleConns(ctx context.Context, srv *benchServer, conf *tls.Config, soft uint64) *idleResult {
	res := &idleResult{Requested: b.f.idle, Combined: b.f.server == "inproc" && b.f.target == "" && srv.pid == 0}
	want := b.f.idle
	// File descriptors: this process holds one per connection (two when
	// the server is in this process too), plus a margin.
	perConn := uint64(1)
	if res.Combined {
		perConn = 2
	}
	if room := (soft - min(soft, 256)) / perConn; uint64(want) > room {
		want = int(room)
		res.Note = fmt.Sprintf("RLIMIT_NOFILE soft limit %d (raised to the hard limit) allows only %d idle connections here, not %d", soft, want, b.f.idle)
	}
	groupKey := b.groupKey
	if b.f.target != "" {
		groupKey = b.f.groupKey
	}
	run := time.Now().UnixNano()

	before := snapshotSelf()
	var srvBefore int64
	beforeOK := false
	if srv.pid > 0 {
		srvBefore, beforeOK = procStatusKiB(srv.pid, "VmRSS")
	}
	conns := make([]net.Conn, want)
	var next atomic.Int64
	var failed atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	d := &net.Dialer{Timeout: 10 * time.Second}
	for range b.f.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && failed.Load() < 100 {
				i := int(next.Add(1)) - 1
				if i >= want {
					return
				}
				c, err := b.idleConnect(ctx, d, srv, conf, groupKey, fmt.Sprintf("idle-%x-%06d", run, i))
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { res.FirstErr = err.Error() })
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c != nil {
			res.Held++
		}
	}
	// Let the server settle (its goroutines park, buffers are released).
	time.Sleep(500 * time.Millisecond)
	after := snapshotSelf()
	if srv.pid > 0 {
		// Measured only when both reads succeeded: a failed first read
		// would make the whole RSS pass for a delta.
		if srvAfter, ok := procStatusKiB(srv.pid, "VmRSS"); ok && beforeOK && res.Held > 0 {
			res.server = true
			res.ServerRSSPerConnBytes = rssPerConn(srvAfter-srvBefore, res.Held)
		}
	}
	if res.Held > 0 {
		res.ClientHeapPerConnBytes = (float64(after.heap) - float64(before.heap)) / float64(res.Held)
		res.ClientRSSPerConnBytes = rssPerConn(after.rssKiB-before.rssKiB, res.Held)
	}
	if res.Held < b.f.idle && res.Note == "" {
		res.Note = fmt.Sprintf("only %d of %d connections could be opened", res.Held, b.f.idle)
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	runtime.KeepAlive(conns)
	return res
}

// idleConnect opens one connection and has its CONNECT accepted.
func (b *provisionBench) idleConnect(ctx context.Context, d *net.Dialer, srv *benchServer, conf *tls.Config, groupKey, regID string) (net.Conn, error) {
	key, err := dps.DeriveDeviceKey(groupKey, regID)
	if err != nil {
		return nil, err
	}
	cp, err := benchConnect(srv.idScope, regID, key, 0)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	raw, err := d.DialContext(hctx, "tcp", srv.addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, conf)
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	deadline, _ := hctx.Deadline()
	c.SetDeadline(deadline)
	if err := packets.WritePacket(c, cp); err != nil {
		c.Close()
		return nil, err
	}
	p, err := packets.ReadPacket(c, packets.DecodeOptions{})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	ack, ok := p.(*packets.Connack)
	if !ok || ack.ReturnCode != packets.ConnackAccepted {
		c.Close()
		return nil, fmt.Errorf("CONNECT not accepted: %v", device.Describe(p))
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func fmtRatios(rounds []roundRates) string {
	out := ""
	for i, r := range rounds {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%.2f", r.Ratio)
	}
	return out
}

// rows renders the result as a table.
func (r *provisionBenchResult) rows() []benchRow {
	s, h := r.Storm, r.Handshakes
	rows := []benchRow{
		{"server", r.Server, r.LayoutRemark},
		{"certificate", r.KeyType, fmt.Sprintf("%d CPUs, %d concurrent devices", r.NumCPU, r.Devices)},
	}
	if r.Server == "child" || r.Server == "inproc" {
		if r.StateDir != "" {
			rows = append(rows, benchRow{"registry", r.StateDir, "--state-dir: assigned registrations committed durably (fdatasync)"})
		} else {
			rows = append(rows, benchRow{"registry", "in memory", "registrations in memory, as the emulator keeps them without --state-dir"})
		}
	}
	rows = append(rows, []benchRow{
		{},
		{"registrations", fmt.Sprintf("%d", s.Done), fmt.Sprintf("%d failed, %.2f s, %d register requests, %d polls", s.Failed, s.Seconds, s.Attempts, s.Polls)},
		{"registrations/s", fmtRate(s.PerSec, "/s"), "TLS handshake + CONNECT + SUBSCRIBE + register + poll → assigned + DISCONNECT"},
		{"latency p50", fmt.Sprintf("%.2f ms", s.Latency.P50ms), fmt.Sprintf("mean %.2f ms", s.Latency.MeanMs)},
		{"latency p99", fmt.Sprintf("%.2f ms", s.Latency.P99ms), fmt.Sprintf("max %.2f ms; target ≤ 15 ms at 16 devices", s.Latency.MaxMs)},
		{},
		{"TLS handshakes/s", fmtRate(h.PerSec, "/s"), fmt.Sprintf("%d handshakes, %d failed, %.2f s; the ceiling: %s", h.Done, h.Failed, h.Seconds, r.CeilingRemark)},
		{"handshake p50/p99", fmt.Sprintf("%.2f / %.2f ms", h.Latency.P50ms, h.Latency.P99ms), ""},
		{"ratio", fmt.Sprintf("%.2f", r.Ratio), "registrations/s ÷ handshakes/s; target ≥ 0.75 with ECDSA P-256"},
		{"  per round", fmtRatios(r.Rounds), fmt.Sprintf("the ratio of each of the %d rounds (after a warm-up of %d per phase, not counted)", len(r.Rounds), r.WarmUp)},
	}...)
	if p := r.Responder; p != nil {
		rows = append(rows, []benchRow{
			{},
			{"bare responder", fmtRate(p.PerSec, "/s"), fmt.Sprintf("the same registrations against canned DPS answers (no DPS work): %d done, %d failed, %.2f s", p.Done, p.Failed, p.Seconds)},
			{"  p50/p99", fmt.Sprintf("%.2f / %.2f ms", p.Latency.P50ms, p.Latency.P99ms), ""},
			{"  ratio", fmt.Sprintf("%.2f", r.ResponderRatio), fmt.Sprintf("responder registrations/s ÷ handshakes/s; the emulator reaches %.0f%% of the responder", 100*r.Storm.PerSec/max(p.PerSec, 1e-9))},
		}...)
	}
	if p := r.Mosquitto; p != nil {
		per := make([]string, len(r.Rounds))
		for i, rr := range r.Rounds {
			per[i] = "-"
			if rr.Mosquitto > 0 {
				per[i] = fmt.Sprintf("%.2f", rr.Registrations/rr.Mosquitto)
			}
		}
		rows = append(rows, []benchRow{
			{},
			{"mosquitto echo", fmtRate(p.PerSec, "/s"), fmt.Sprintf("%s: the same packets, each request published on its answer's topic and delivered back by the broker: %d done, %d failed, %.2f s", r.MosquittoVersion, p.Done, p.Failed, p.Seconds)},
			{"  p50/p99", fmt.Sprintf("%.2f / %.2f ms", p.Latency.P50ms, p.Latency.P99ms), ""},
			{"  emulator ÷ mosquitto", fmt.Sprintf("%.2f", r.VsMosquitto), "registrations/s ÷ mosquitto's echo flows/s; per round " + strings.Join(per, " ")},
		}...)
	} else if r.MosquittoNote != "" {
		rows = append(rows, benchRow{}, benchRow{"mosquitto echo", "not run", r.MosquittoNote})
	}
	if i := r.Idle; i != nil {
		rows = append(rows, benchRow{},
			benchRow{"idle connections", fmt.Sprintf("%d", i.Held), fmt.Sprintf("of %d requested (TLS + CONNECT accepted, held open); RLIMIT_NOFILE %d/%d", i.Requested, r.NoFileSoft, r.NoFileHard)})
		if i.Note != "" {
			rows = append(rows, benchRow{"  note", i.Note, ""})
		}
		if i.FirstErr != "" {
			rows = append(rows, benchRow{"  first error", i.FirstErr, ""})
		}
		kib := func(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
		if i.Combined {
			rows = append(rows,
				benchRow{"memory/conn (both)", rssText(i.ClientRSSPerConnBytes), "VmRSS delta of this process ÷ connections: client AND server (--server inproc)"},
				benchRow{"  heap/conn (both)", kib(i.ClientHeapPerConnBytes), "HeapInuse+StackInuse after GC, client AND server"})
		} else {
			if i.server {
				rows = append(rows, benchRow{"memory/conn server", rssText(i.ServerRSSPerConnBytes), "VmRSS delta of the server process ÷ connections; target < 40 KiB"})
			}
			if i.Held > 0 { // nothing held, nothing measured
				rows = append(rows,
					benchRow{"memory/conn client", rssText(i.ClientRSSPerConnBytes), "VmRSS delta of the load generator ÷ connections"},
					benchRow{"  client heap/conn", kib(i.ClientHeapPerConnBytes), "HeapInuse+StackInuse after GC"})
			}
		}
	}
	if m := r.MosquittoIdle; m != nil {
		rows = append(rows, benchRow{},
			benchRow{"idle to mosquitto", fmt.Sprintf("%d", m.Held), fmt.Sprintf("of %d requested, the same connections held open to mosquitto after the emulator's were closed", m.Requested)})
		if m.Note != "" {
			rows = append(rows, benchRow{"  note", m.Note, ""})
		}
		if m.FirstErr != "" {
			rows = append(rows, benchRow{"  first error", m.FirstErr, ""})
		}
		remark := "VmRSS delta of mosquitto ÷ connections"
		if i := r.Idle; i != nil && !i.Combined && i.ServerRSSPerConnBytes != nil && *i.ServerRSSPerConnBytes > 0 && m.ServerRSSPerConnBytes != nil && *m.ServerRSSPerConnBytes > 0 {
			remark += fmt.Sprintf("; the emulator's ÷ mosquitto's: %.2f", *i.ServerRSSPerConnBytes / *m.ServerRSSPerConnBytes)
		}
		if m.server { // its RSS was read before and after
			rows = append(rows, benchRow{"memory/conn mosquitto", rssText(m.ServerRSSPerConnBytes), remark})
		}
	}
	return rows
}

// rssPerConn is a VmRSS delta in KiB per connection, in bytes; nil when
// the RSS fell (the runtime gave memory back: nothing to divide).
func rssPerConn(deltaKiB int64, conns int) *float64 {
	if deltaKiB < 0 {
		return nil
	}
	v := float64(deltaKiB) * 1024 / float64(conns)
	return &v
}

// rssText shows a rssPerConn figure.
func rssText(b *float64) string {
	if b == nil {
		// The process gave memory back while the connections were
		// held: too few of them to measure (--idle).
		return "n/a (RSS fell; hold more connections)"
	}
	return fmt.Sprintf("%.1f KiB", *b/1024)
}

// responderProfile is the file of the responder phase's CPU profile: file
// with "-responder" before its extension.
func responderProfile(file string) string {
	if file == "" {
		return ""
	}
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + "-responder" + ext
}

// startCPUProfile starts a CPU profile into file ("" does nothing) and
// returns the function that stops it and closes the file.
func startCPUProfile(file string) (stop func() error, err error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	out, err := os.Create(file)
	if err != nil {
		return nil, &UsageError{Err: fmt.Errorf("--cpuprofile: %w", err)}
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, envErrorf("--cpuprofile: %v", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := out.Close(); err != nil {
			return envErrorf("--cpuprofile: %v", err)
		}
		return nil
	}, nil
}
