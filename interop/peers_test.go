package interop

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

// requirePeersEnv makes a missing peer a failure instead of a skip.
const requirePeersEnv = "DPSCONFORM_REQUIRE_PEERS"

// missingPeer skips the test because a peer is not installed, or fails it
// when DPSCONFORM_REQUIRE_PEERS=1 (CI must run every interop test).
func missingPeer(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv(requirePeersEnv) == "1" {
		t.Fatalf("peer missing with "+requirePeersEnv+"=1: "+format, args...)
	}
	t.Skipf("peer missing: "+format, args...)
}

// lookPeer returns the path of the executable name or skips/fails the test.
func lookPeer(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missingPeer(t, "%s not in PATH (%s)", name, install)
	}
	return p
}

// result is what a peer process did.
type result struct {
	stdout, stderr string
	exit           int // -1 when killed
	err            error
}

// runPeer runs a command bounded by timeout, with env added to the
// environment. The process is killed with its process group when the
// timeout expires, and the group is killed when the process has exited, so
// runPeer never leaves a child of the peer behind (one that left the group,
// with setsid, is beyond reach).
func runPeer(t *testing.T, timeout time.Duration, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		// The peer has exited (or was killed); whatever it left running in
		// its process group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	r := result{stdout: out.String(), stderr: errb.String(), err: err, exit: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		r.err = ctx.Err()
	}
	return r
}

// startPeer starts a long-running command (a broker) and kills it, with its
// process group, at the end of the test.
func startPeer(t *testing.T, name string, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out
}

// syncBuffer is a bytes.Buffer safe for one writer process and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// writeClientPEM writes cert (with its chain) and its key as PEM files in a
// temporary directory and returns their paths.
func writeClientPEM(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("client key is a %T, not a crypto.Signer", cert.PrivateKey)
	}
	keyPEM, err := transport.EncodeKeyPEM(signer)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "device.pem"), filepath.Join(dir, "device.key")
	if err := os.WriteFile(certFile, transport.EncodeCertPEM(cert.Certificate...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
