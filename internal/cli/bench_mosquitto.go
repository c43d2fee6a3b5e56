package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mosquittoAsRoot keeps a broker started as root from dropping to the
// mosquitto user, which could not read the bench's key (mode 0600). Run by
// another user, mosquitto changes no user.
const mosquittoAsRoot = "user root\n"

// mosquittoConf is the configuration of the broker of 'bench provision
// --mosquitto': TLS 1.2 on loopback with the bench's server certificate,
// nothing kept, anonymous clients (the SAS token is an ordinary password to
// it), and TCP_NODELAY as every Go socket has it (without it, Nagle's
// algorithm would hold the broker's second small write of a request, its
// delivery after the PUBACK, until the device acknowledges the first). Its
// ciphers are the suite the Go servers of the other phases pick among the
// DPS suites the client offers (AES-128-GCM-SHA256; crypto/tls prefers it
// to AES-256-GCM): OpenSSL follows the client's order and would otherwise
// take AES-256-GCM-SHA384, another key schedule and record cipher than the
// ceiling's and the emulator's (TestBenchServersSameTLS).
const mosquittoConf = `per_listener_settings false
persistence false
log_dest stderr
log_type error
log_type warning
set_tcp_nodelay true
listener %d 127.0.0.1
protocol mqtt
allow_anonymous true
certfile %s
keyfile %s
tls_version tlsv1.2
ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
`

// mosquittoSbin is where Debian's mosquitto package installs the broker,
// often outside a user's PATH.
const mosquittoSbin = "/usr/sbin/mosquitto"

// findMosquitto resolves --mosquitto: the executable, or "" with the
// reason it is not run. auto looks in PATH, then at sbin.
func findMosquitto(flag, sbin string) (bin, note string, err error) {
	switch flag {
	case "off":
		return "", "--mosquitto off", nil
	case "auto":
		if p, err := exec.LookPath("mosquitto"); err == nil {
			return p, "", nil
		}
		if fi, err := os.Stat(sbin); err == nil && !fi.IsDir() {
			return sbin, "", nil
		}
		return "", "mosquitto is not installed (not in PATH nor " + sbin + "; Debian: apt-get install mosquitto); give --mosquitto BIN", nil
	}
	p, err := exec.LookPath(flag)
	if err != nil {
		return "", "", &UsageError{Err: fmt.Errorf("--mosquitto %q: %w", flag, err)}
	}
	return p, "", nil
}

// mosquittoVersion is the first line of 'mosquitto -h' ("mosquitto
// version 2.0.11"), or "mosquitto" when it prints none.
func mosquittoVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, "-h").Output() // exits non-zero after the help
	line, _, _ := bytes.Cut(out, []byte("\n"))
	if v := strings.TrimSpace(string(line)); strings.HasPrefix(v, "mosquitto version ") {
		return v
	}
	return "mosquitto"
}

// startMosquitto starts the broker of the echo flow, b.mosquittoBin, or
// returns nil (and the reason in res.MosquittoNote) when there is none.
// mosquitto takes its port from its configuration, so a free
// port is chosen first; a start that loses the port to another process is
// retried with a new one, three times at most.
func (b *provisionBench) startMosquitto(ctx context.Context, res *provisionBenchResult) (*benchServer, error) {
	bin := b.mosquittoBin
	if bin == "" {
		res.MosquittoNote = b.mosquittoNote
		return nil, nil
	}
	res.MosquittoVersion = mosquittoVersion(ctx, bin)
	var lastErr error
	for attempt := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, envErrorf("mosquitto: choosing a port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		conf := filepath.Join(b.dir, "mosquitto-"+strconv.Itoa(attempt)+".conf")
		text := fmt.Appendf(nil, mosquittoConf, port, b.certFile, b.keyFile)
		if os.Geteuid() == 0 {
			text = append(text, mosquittoAsRoot...)
		}
		if err := os.WriteFile(conf, text, 0o600); err != nil {
			return nil, envErrorf("mosquitto configuration: %v", err)
		}
		srv, err := b.runMosquitto(ctx, bin, conf, "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			return srv, nil
		}
		lastErr = err
		if ctx.Err() != nil || !strings.Contains(err.Error(), "Address already in use") {
			break // only a lost port is worth another start
		}
	}
	return nil, lastErr
}

// runMosquitto starts bin -c conf and waits (10 s at most) until it
// accepts TCP on addr.
func (b *provisionBench) runMosquitto(ctx context.Context, bin, conf, addr string) (*benchServer, error) {
	cctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(cctx, bin, "-c", conf)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	dieWithParent(cmd)
	stderr := &limitedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, envErrorf("starting mosquitto (%s): %v", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	wait := func() error {
		<-exited
		return waitErr
	}
	srv := &benchServer{addr: addr, idScope: benchIDScope, pid: cmd.Process.Pid, echo: true, stop: childStopper(wait, cancel)}
	deadline := time.Now().Add(10 * time.Second)
	d := net.Dialer{Timeout: time.Second}
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return srv, nil
		}
		select {
		case <-exited:
			srv.stop()
			out := oneLine(stderr.String())
			if out == "" {
				out = fmt.Sprintf("no output (%v)", waitErr)
				if waitErr == nil {
					out = "no output (exit status 0)"
				}
			}
			return nil, envErrorf("mosquitto (%s) exited before listening on %s: %s", bin, addr, out)
		case <-ctx.Done():
			srv.stop()
			return nil, envErrorf("interrupted while starting mosquitto")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			srv.stop()
			return nil, envErrorf("mosquitto (%s) not listening on %s within 10 s: %s", bin, addr, oneLine(stderr.String()))
		}
	}
}
