package registry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// helperEnv names the state dir of the re-exec'd TestHelperAssign child.
const helperEnv = "DPSCONFORM_REGISTRY_HELPER_DIR"

func durableConfig() *Config {
	return &Config{IDScope: scope, LinkedHubs: []LinkedHub{{Name: "hub1.example"}, {Name: "hub2.example"}},
		Enrollments: []IndividualEnrollment{symEnrollment("dev1", keyA, "")}}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r, err := Open(ctx, Options{StateDir: dir, Config: durableConfig(), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	res := register(t, r, "dev1", keyA, nil)
	// An enrollment added through the admin API persists too.
	putEnrollment(t, r, symEnrollment("dev2", keyB, ""))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := r.Registration(ctx, "dev1"); err != ErrClosed {
		t.Fatalf("Registration after Close: %v", err)
	}

	// Reopen without a config: the stored scope, hubs and enrollments
	// are used.
	r2, err := Open(ctx, Options{StateDir: dir, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.IDScope() != scope || len(r2.LinkedHubs()) != 2 {
		t.Fatalf("reopened scope %q hubs %v", r2.IDScope(), r2.LinkedHubs())
	}
	got, found, err := r2.Registration(ctx, "Dev1")
	if err != nil || !found || mustJSON(t, got) != mustJSON(t, res) {
		t.Fatalf("Registration after reopen = %s, %v, %v; want %s", mustJSON(t, got), found, err, mustJSON(t, res))
	}
	if res := register(t, r2, "dev2", keyB, nil); res.Status != dps.StatusAssigned {
		t.Fatalf("admin enrollment after reopen: %s", mustJSON(t, res))
	}
}

func TestGeneratedIDScopePersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r, err := Open(ctx, Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s := r.IDScope()
	r.Close()
	if len(s) != 11 || !strings.HasPrefix(s, "0ne") || strings.ToUpper(s[3:]) != s[3:] || validateIDScope(s) != nil {
		t.Fatalf("generated scope %q, want 0ne + 8 upper-case hex digits", s)
	}
	r, err = Open(ctx, Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if r.IDScope() != s {
		t.Fatalf("scope %q after reopen, want %q", r.IDScope(), s)
	}
	r.Close()
	// A config's scope replaces the stored one and is kept.
	r, err = Open(ctx, Options{StateDir: dir, Config: &Config{IDScope: "0neCONFIG01"}})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = Open(ctx, Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.IDScope() != "0neCONFIG01" {
		t.Fatalf("scope %q after config, want 0neCONFIG01", r.IDScope())
	}
}

func TestInMemoryStateRemoved(t *testing.T) {
	r, err := Open(context.Background(), Options{Config: durableConfig(), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	dir := r.tempDir
	if _, err := os.Stat(filepath.Join(dir, DBFileName)); err != nil {
		t.Fatalf("temporary database: %v", err)
	}
	register(t, r, "dev1", keyA, nil)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temporary state dir %s still there: %v", dir, err)
	}
}

func TestOpenLockedTimesOut(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, nil, func(o *Options) { o.StateDir = dir })
	_ = r
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r2, err := Open(ctx, Options{StateDir: dir})
	if err == nil {
		r2.Close()
		t.Fatal("second Open of a locked state dir succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestOpenBadConfig(t *testing.T) {
	cfg := &Config{Enrollments: []IndividualEnrollment{symEnrollment("dev1", "bad", "")}}
	if _, err := Open(context.Background(), Options{StateDir: t.TempDir(), Config: cfg}); err == nil || !strings.Contains(err.Error(), "primaryKey") {
		t.Fatalf("Open with a bad config: %v", err)
	}
}

// TestKillAfterAssign re-execs the test binary as TestHelperAssign, which
// assigns a device and prints "assigned <etag>"; the parent then kills it
// with SIGKILL (no deferred Close runs) and finds the record on reopening:
// Assign's fsync'd commit happened before it returned.
func TestKillAfterAssign(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("no test executable: %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestHelperAssign$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var etag string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "assigned" {
			etag = f[1]
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v", err)
	}
	_ = cmd.Wait()
	if etag == "" {
		t.Fatalf("child never printed \"assigned\" (scanner: %v)", sc.Err())
	}
	r, err := Open(context.Background(), Options{StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, found, err := r.Registration(context.Background(), "dev1")
	if err != nil || !found {
		t.Fatalf("registration lost after SIGKILL: found=%v err=%v", found, err)
	}
	if got.ETag != etag || got.Status != dps.StatusAssigned {
		t.Fatalf("registration after SIGKILL %s, want etag %s", mustJSON(t, got), etag)
	}
}

// TestHelperAssign is the child of TestKillAfterAssign; it does nothing
// unless run by it.
func TestHelperAssign(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process of TestKillAfterAssign")
	}
	r, err := Open(context.Background(), Options{StateDir: dir, Config: durableConfig(), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	res := register(t, r, "dev1", keyA, nil)
	fmt.Printf("assigned %s\n", res.ETag)
	// Wait to be killed, without closing the database; bounded so an
	// orphan does not live forever.
	time.Sleep(20 * time.Second)
	t.Fatal("not killed")
}
