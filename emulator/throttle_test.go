package emulator

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newWindow(3, 10*time.Second)
	steps := []struct {
		at   time.Duration
		ok   bool
		wait time.Duration
	}{
		{0, true, 0},
		{1 * time.Second, true, 0},
		{2 * time.Second, true, 0},
		{3 * time.Second, false, 7 * time.Second}, // the event at 0 frees its slot at 10 s
		{9 * time.Second, false, 1 * time.Second},
		{10 * time.Second, true, 0}, // replaces the event at 0
		{10 * time.Second, false, 1 * time.Second},
		{11 * time.Second, true, 0},
		{12 * time.Second, true, 0},
		{13 * time.Second, false, 7 * time.Second},
	}
	for i, s := range steps {
		ok, wait := w.allow(t0.Add(s.at))
		if ok != s.ok || wait != s.wait {
			t.Fatalf("step %d at +%v: allow = %v, %v; want %v, %v", i, s.at, ok, wait, s.ok, s.wait)
		}
	}
	if w.idle(t0.Add(21 * time.Second)) {
		t.Error("idle with an event 9 s old")
	}
	if !w.idle(t0.Add(22 * time.Second)) {
		t.Error("not idle with every event 10 s old")
	}
}

func TestLimiterPerKeyAndSweep(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newLimiter(1, time.Second)
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("first event of a refused")
	}
	if ok, _ := l.allow("b", t0); !ok {
		t.Fatal("b shares a's budget")
	}
	if ok, wait := l.allow("a", t0.Add(500*time.Millisecond)); ok || wait != 500*time.Millisecond {
		t.Fatalf("second event of a within the period: %v, %v", ok, wait)
	}
	for i := range 100 {
		l.allow(fmt.Sprint("dev-", i), t0.Add(time.Second))
	}
	l.allow("z", t0.Add(3*time.Second)) // sweeps the idle windows
	if n := len(l.windows); n != 1 {
		t.Fatalf("%d windows kept after a sweep, want only z's", n)
	}
	unlimited := newLimiter(-1, time.Second)
	for range 10 {
		if ok, _ := unlimited.allow("a", t0); !ok {
			t.Fatal("a negative limit throttled")
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{{0, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {40 * time.Second, 40}} {
		if got := retryAfterSeconds(tt.d); got != tt.want {
			t.Errorf("retryAfterSeconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestOperationsTable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := newOperations(2, time.Minute)
	inProgress := func(regID string, at time.Time) bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.inProgressLocked(regKey(regID), at)
	}
	a := &operation{id: "a", regID: "Dev-1", created: t0, readyAt: t0.Add(3 * time.Second)}
	if o.add(a, t0, true) != opAdded {
		t.Fatal("add refused")
	}
	// Exclusive: a second operation of the device is refused while the
	// first is in progress, in the same critical section as the insert.
	if got := o.add(&operation{id: "a2", regID: "DEV-1", created: t0, readyAt: t0}, t0, true); got != opInProgress {
		t.Fatalf("exclusive add while in progress = %v, want opInProgress", got)
	}
	if !inProgress("dev-1", t0) {
		t.Fatal("not in progress while assigning (ids are case-insensitive)")
	}
	o.finish("a", dpsResult("Dev-1"), nil, t0.Add(time.Second))
	if !inProgress("DEV-1", t0.Add(2*time.Second)) {
		t.Fatal("not in progress before the retry-after passed")
	}
	if inProgress("dev-1", t0.Add(3*time.Second)) {
		t.Fatal("in progress once assigned and past the retry-after")
	}
	if _, ok := o.lookup("a", "dev-2"); ok {
		t.Fatal("another device sees the operation")
	}
	if st, ok := o.lookup("a", "dev-1"); !ok || !st.done || st.result.RegistrationID != "Dev-1" {
		t.Fatalf("lookup = %+v, %v", st, ok)
	}
	if o.add(&operation{id: "b", regID: "dev-2", created: t0, readyAt: t0}, t0, true) != opAdded {
		t.Fatal("second add refused")
	}
	if o.add(&operation{id: "c", regID: "dev-3", created: t0, readyAt: t0}, t0.Add(30*time.Second), false) != opTableFull {
		t.Fatal("add over the maximum accepted while nothing expired")
	}
	// a finished at +1 s; at +61 s it has expired and frees a slot (b never
	// finished, so it stays).
	if o.add(&operation{id: "c", regID: "dev-3", created: t0, readyAt: t0}, t0.Add(61*time.Second), false) != opAdded {
		t.Fatal("add refused after an operation expired")
	}
	if _, ok := o.lookup("a", "dev-1"); ok {
		t.Fatal("expired operation still found")
	}
	if _, ok := o.lookup("b", "dev-2"); !ok || o.len() != 2 {
		t.Fatalf("unfinished operation dropped (len %d)", o.len())
	}
}

// TestOperationsExclusiveAddConcurrent: registers of one device arriving
// at the same moment (two connections) get one operation; the others are
// refused as in progress (Part A §8, 409). The check and the insert were
// once two critical sections, and two registers could both pass.
func TestOperationsExclusiveAddConcurrent(t *testing.T) {
	t0 := time.Unix(1000, 0)
	o := newOperations(0, time.Minute)
	const n = 32
	results := make(chan addResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results <- o.add(&operation{id: fmt.Sprint("op-", i), regID: "dev-1", created: t0, readyAt: t0.Add(time.Second)}, t0, true)
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	added := 0
	for r := range results {
		if r == opAdded {
			added++
		}
	}
	if added != 1 {
		t.Errorf("%d of %d concurrent registers of one device got an operation, want 1", added, n)
	}
}
