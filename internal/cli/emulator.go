package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dps-conform/dps-conform/emulator"
	"github.com/dps-conform/dps-conform/emulator/registry"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

const emulatorUsage = `Usage:
  dps-conform emulator [flags]
  dps-conform emulator --fault help

Serves the reference DPS emulator: MQTT over TLS (--mqtt-addr), MQTT over
WebSocket over TLS (--ws-addr, paths /$iothub/websocket, / and /mqtt) and the
admin API over plain HTTP (--admin-addr, paths /enrollments/{id},
/enrollmentGroups/{id}, /registrations/{id}). An address ending in :0 picks a
free port; an empty address turns the listener off.

When listening it prints one JSON line on stdout, e.g.
  {"event":"ready","mqtt":"127.0.0.1:8883","wss":"127.0.0.1:8443","admin":"http://127.0.0.1:40123","idScope":"0ne00FEED00","caFile":"/tmp/…/ca.pem"}
then logs to stderr and serves until interrupted (SIGINT, SIGTERM).

Enrollments come from --config (YAML or JSON in the DPS service schema, see
docs/enrollments.md) and the admin API. With --state-dir, registrations and the
generated CA and server certificate persist in DIR; without it the state is in
memory and the PKI lives in a temporary directory removed at exit.

Fault switches make the emulator break one documented behaviour each (for
testing a conformance suite); --fault help lists them.
`

// emulatorFlags are the values of the emulator flags.
type emulatorFlags struct {
	mqttAddr, wsAddr, adminAddr, plainAddr string
	config, stateDir                       string
	profile                                string
	retryAfter                             time.Duration
	faults                                 stringsFlag
	tlsCert, tlsKey, tlsCA                 string
	serverNames                            stringsFlag
	logLevel                               string
	limits                                 emulator.Limits
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

func emulatorCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("emulator", emulatorUsage)
	d := emulator.DefaultLimits()
	f := emulatorFlags{retryAfter: emulator.DefaultRetryAfter, limits: d}
	fs.StringVar(&f.mqttAddr, "mqtt-addr", "127.0.0.1:8883", "`ADDR` of MQTT over TLS; empty: off")
	fs.StringVar(&f.wsAddr, "ws-addr", "127.0.0.1:8443", "`ADDR` of MQTT over WebSocket over TLS; empty: off")
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:0", "`ADDR` of the admin API (plain HTTP; keep it on loopback); empty: off")
	fs.StringVar(&f.plainAddr, "insecure-plaintext-addr", "", "`ADDR` of MQTT without TLS, which DPS never serves; off unless set")
	fs.StringVar(&f.config, "config", "", "enrollments `FILE` (YAML or JSON): idScope, linkedHubs, enrollments, enrollmentGroups")
	fs.StringVar(&f.stateDir, "state-dir", "", "`DIR` keeping registrations, the CA and the server certificate; default: in memory")
	fs.StringVar(&f.profile, "profile", string(emulator.ProfileDPS2019), "documented behaviour `VERSION`: dps-2019 or dps-2023")
	fs.Var(durationFlag{p: &f.retryAfter, zeroOK: true, seconds: true}, "retry-after", "retry-after of 202 answers, a `DURATION` of whole seconds (0 for fast tests); assignments complete no sooner")
	fs.Var(&f.faults, "fault", "break one documented behaviour (`NAME`, repeatable); 'help' lists them")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "server certificate chain PEM `FILE` (with --tls-key) instead of the generated one")
	fs.StringVar(&f.tlsKey, "tls-key", "", "server private key PEM `FILE` (with --tls-cert)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA `FILE` reported as caFile in the ready line when --tls-cert is used")
	fs.Var(&f.serverNames, "server-name", "extra DNS `NAME` or IP of the generated server certificate (repeatable; localhost, 127.0.0.1 and ::1 are always in)")
	fs.StringVar(&f.logLevel, "log-level", "info", "`LEVEL` of the logs on stderr: debug, info, warn or error")
	fs.Var(durationFlag{p: &f.limits.ConnectTimeout, negativeOK: true}, "connect-timeout", "`DURATION` bound on the TLS handshake plus CONNECT")
	fs.IntVar(&f.limits.MaxPacketSize, "max-packet-size", d.MaxPacketSize, "largest MQTT packet in `BYTES` (DPS: 96 KB); larger ones close the connection; negative: no limit")
	fs.IntVar(&f.limits.MaxConnections, "max-connections", d.MaxConnections, "`N` MQTT connections served at once; negative: no limit")
	fs.IntVar(&f.limits.PollsPerWindow, "polls-per-window", d.PollsPerWindow, "`N` polls per --poll-window per device before 429; negative: no limit")
	fs.Var(durationFlag{p: &f.limits.PollWindow, negativeOK: true}, "poll-window", "`DURATION` window of --polls-per-window")
	fs.IntVar(&f.limits.RegistrationsPerMinute, "registrations-per-minute", d.RegistrationsPerMinute, "register budget of the service, `N` per minute, before 429; negative: no limit")
	fs.Var(durationFlag{p: &f.limits.IdleTimeout, negativeOK: true}, "idle-timeout", "close connections idle this `DURATION` when their keep-alive is 0")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (emulator takes only flags)", fs.Arg(0))
	}
	for _, name := range f.faults {
		if name == "help" {
			printFaults(env.Stdout)
			return nil
		}
	}
	return f.serve(ctx, env)
}

// printFaults lists the fault switches, one per line.
func printFaults(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tBREAKS\tDESCRIPTION")
	for _, f := range emulator.Faults() {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Name, f.Breaks, f.Description)
	}
	tw.Flush()
}

// parseProfileAndFaults parses the --profile value ("" is dps-2019) and the
// fault names given with faultFlag (--fault of "emulator", --emulator-fault
// of "run"); an unknown one is a usage error naming its flag.
func parseProfileAndFaults(profile, faultFlag string, faultNames []string) (emulator.Profile, []emulator.Fault, error) {
	p, err := emulator.ParseProfile(profile)
	if err != nil {
		return "", nil, usageErrorf("--profile: %v", err)
	}
	var faults []emulator.Fault
	for _, name := range faultNames {
		fault, err := emulator.ParseFault(name)
		if err != nil {
			return "", nil, usageErrorf("%s: %v", faultFlag, err)
		}
		faults = append(faults, fault)
	}
	return p, faults, nil
}

// maxMQTTPacketSize is the largest MQTT 3.1.1 packet, fixed header
// included: one byte of type and flags, four of remaining length, and
// the largest remaining length (§2.2.3).
const maxMQTTPacketSize = 1 + 4 + packets.MaxRemainingLength

// options checks the flags and returns what they ask for.
func (f *emulatorFlags) options() (emulator.Profile, []emulator.Fault, slog.Level, error) {
	profile, faults, err := parseProfileAndFaults(f.profile, "--fault", f.faults)
	if err != nil {
		return "", nil, 0, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return "", nil, 0, usageErrorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	// 0 would silently be the default (the zero Limits field means it):
	// as for the duration limits, a limit is positive, or negative for none.
	for _, c := range []struct {
		flag string
		v    int
	}{
		{"--max-packet-size", f.limits.MaxPacketSize}, {"--max-connections", f.limits.MaxConnections},
		{"--polls-per-window", f.limits.PollsPerWindow}, {"--registrations-per-minute", f.limits.RegistrationsPerMinute},
	} {
		if c.v == 0 {
			return "", nil, 0, usageErrorf("%s 0: want a positive number, or a negative one (-1) to switch the limit off", c.flag)
		}
	}
	// A limit above what MQTT can frame never applies: a typo (one digit
	// too many) would pass for a limit.
	if f.limits.MaxPacketSize > maxMQTTPacketSize {
		return "", nil, 0, usageErrorf("--max-packet-size %d: above MQTT's largest packet, %d bytes (a remaining length of %d plus a 5-byte fixed header); a negative value (-1) switches the limit off",
			f.limits.MaxPacketSize, maxMQTTPacketSize, packets.MaxRemainingLength)
	}
	// The topic carries whole seconds (retry-after={n}); a fraction would be
	// rounded silently, and the assignment timing would then disagree
	// with what the device was told.
	if f.retryAfter%time.Second != 0 {
		return "", nil, 0, usageErrorf("--retry-after %v is not a whole number of seconds (the topic carries retry-after={seconds})", f.retryAfter)
	}
	addrs := []struct{ flag, addr string }{
		{"--mqtt-addr", f.mqttAddr}, {"--ws-addr", f.wsAddr}, {"--admin-addr", f.adminAddr}, {"--insecure-plaintext-addr", f.plainAddr},
	}
	for i, a := range addrs {
		if err := checkListenAddr(a.addr); err != nil {
			return "", nil, 0, usageErrorf("%s %q: %v", a.flag, a.addr, err)
		}
		// Two listeners on one port: the second bind would fail with
		// "address already in use" (exit 3), naming neither flag.
		for _, b := range addrs[:i] {
			if sameListenPort(a.addr, b.addr) {
				return "", nil, 0, usageErrorf("%s %q and %s %q name the same port: each listener needs its own (port 0 picks a free one)", b.flag, b.addr, a.flag, a.addr)
			}
		}
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return "", nil, 0, usageErrorf("--tls-cert and --tls-key go together")
	}
	if f.tlsCA != "" && f.tlsCert == "" {
		return "", nil, 0, usageErrorf("--tls-ca applies only with --tls-cert")
	}
	if f.tlsCert != "" && len(f.serverNames) > 0 {
		return "", nil, 0, usageErrorf("--server-name applies to the generated certificate, not to --tls-cert")
	}
	for _, n := range f.serverNames {
		if err := checkHostName("server-name", n); err != nil {
			return "", nil, 0, err
		}
	}
	if f.mqttAddr == "" && f.wsAddr == "" && f.plainAddr == "" {
		return "", nil, 0, usageErrorf("no MQTT listener: --mqtt-addr, --ws-addr and --insecure-plaintext-addr are all empty")
	}
	return profile, faults, level, nil
}

// serve runs the emulator until ctx ends.
func (f *emulatorFlags) serve(ctx context.Context, env *Env) error {
	profile, faults, level, err := f.options()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))

	// A --state-dir that is a file is the user's mistake (exit 2), found
	// before anything is created, not a failure to write the PKI into it.
	if f.stateDir != "" {
		if fi, err := os.Stat(f.stateDir); err == nil && !fi.IsDir() {
			return usageErrorf("--state-dir %s is a file, not a directory", f.stateDir)
		}
	}

	var cfg *registry.Config
	if f.config != "" {
		if cfg, err = registry.LoadConfig(f.config); err != nil {
			return &UsageError{Err: fmt.Errorf("--config: %w", err)}
		}
	}

	// TLS material: the caller's, or a CA and server certificate kept in
	// the state directory (or a temporary one).
	tlsConf := &tls.Config{}
	caFile := f.tlsCA
	if f.tlsCert != "" {
		cert, err := transport.LoadServerCertificate(f.tlsCert, f.tlsKey)
		if err != nil {
			return &UsageError{Err: fmt.Errorf("--tls-cert/--tls-key: %w", err)}
		}
		tlsConf.Certificates = []tls.Certificate{cert}
	} else {
		dir := f.stateDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "dps-conform-emulator-")
			if err != nil {
				return envErrorf("temporary PKI directory: %v", err)
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		pki, err := transport.LoadOrCreateServerPKI(dir, f.serverNames, transport.ECDSAP256, env.Now())
		if err != nil {
			return envErrorf("server PKI in %s: %v", dir, err)
		}
		if f.stateDir != "" && len(pki.Created) > 0 {
			log.Info("server PKI written", "files", pki.Created)
		}
		tlsConf.Certificates = []tls.Certificate{pki.Certificate}
		caFile = pki.CAFile
	}
	// The ready line is read by other processes, maybe from another
	// working directory: give them an absolute path.
	if caFile != "" {
		if abs, err := filepath.Abs(caFile); err == nil {
			caFile = abs
		}
	}

	reg, err := registry.Open(ctx, registry.Options{StateDir: f.stateDir, Config: cfg, Logger: log.With("component", "registry")})
	if err != nil && ctx.Err() != nil {
		// Stopped while the enrollments were being stored (a big
		// --config): the normal stop, before the ready line.
		log.Info("shutting down before ready", "cause", context.Cause(ctx))
		return nil
	}
	if err != nil {
		var ce *registry.ConfigError
		if errors.As(err, &ce) {
			return &UsageError{Err: fmt.Errorf("--config: %w", err)}
		}
		if errors.Is(err, registry.ErrLocked) {
			return envErrorf("--state-dir %s is in use by another process (its registry database is locked); stop that emulator or choose another directory", f.stateDir)
		}
		return envErrorf("%v", err)
	}
	defer reg.Close()
	if cfg == nil || len(cfg.Enrollments)+len(cfg.EnrollmentGroups) == 0 {
		log.Warn("no enrollments in the configuration: add them with --config or through the admin API")
	}

	if ctx.Err() != nil {
		// Stopped while the config was read: no ready line for a server
		// that is going away.
		log.Info("shutting down before ready", "cause", context.Cause(ctx))
		return nil
	}

	srv, err := emulator.New(emulator.Config{
		MQTTAddr:          f.mqttAddr,
		WSAddr:            f.wsAddr,
		AdminAddr:         f.adminAddr,
		InsecurePlainAddr: f.plainAddr,
		TLSConfig:         tlsConf,
		CAFile:            caFile,
		Registry:          reg,
		Profile:           profile,
		RetryAfter:        f.retryAfter,
		Faults:            faults,
		Limits:            f.limits,
		Logger:            log,
	})
	if err != nil {
		return usageErrorf("%v", err)
	}
	if err := srv.Start(ctx); err != nil {
		return envErrorf("%v", err)
	}
	defer srv.Close()
	line, err := json.Marshal(srv.Ready())
	if err != nil {
		return envErrorf("ready line: %v", err)
	}
	if _, err := fmt.Fprintf(env.Stdout, "%s\n", line); err != nil {
		return envErrorf("writing the ready line: %v", err)
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx))
	return nil
}

// sameListenPort reports whether two listen addresses (checked by
// checkListenAddr) would bind the same port: the same port other than 0
// ("8883" and "08883" are one), on the same host or with either on every
// address. localhost is 127.0.0.1 (Go listens on a name's first IPv4
// address), and IP addresses compare as addresses.
func sameListenPort(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	na, errNA := strconv.ParseUint(pa, 10, 16)
	nb, errNB := strconv.ParseUint(pb, 10, 16)
	if errA != nil || errB != nil || errNA != nil || errNB != nil || na != nb || na == 0 {
		return false
	}
	host := func(h string) string {
		if strings.EqualFold(h, "localhost") {
			return "127.0.0.1"
		}
		if ip, err := netip.ParseAddr(h); err == nil {
			if ip.Unmap().IsUnspecified() {
				return "" // every address
			}
			return ip.Unmap().String()
		}
		return strings.ToLower(h)
	}
	ha, hb = host(ha), host(hb)
	return ha == hb || ha == "" || hb == ""
}

// checkListenAddr checks a listen address ("" = off) before anything is
// bound, so that a typo is a usage error (exit 2) naming the flag rather
// than a bind failure (exit 3).
func checkListenAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT (for example 127.0.0.1:8883; port 0 picks a free one): %w", err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			if _, err := net.LookupHost(host); err != nil {
				return fmt.Errorf("host %q is neither an IP address nor a resolvable name", host)
			}
		}
	}
	return nil
}
