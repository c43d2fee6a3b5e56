package interop

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

// TestRunPeerLeavesNoChild: a peer that exits leaving a background child
// in its process group does not leave it running after runPeer returns.
func TestRunPeerLeavesNoChild(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	r := runPeer(t, 10*time.Second, nil, "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!")
	if r.err != nil || r.exit != 0 {
		t.Fatalf("sh: exit %d, %v\n%s", r.exit, r.err, r.stderr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("sh printed %q, not the pid of its background child", r.stdout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the peer's background child (pid %d) is still running after runPeer returned", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
