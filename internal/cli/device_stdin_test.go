package cli

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOperatorLines: in operator mode one reader serves every scenario. A
// scenario that timed out without an Enter leaves nothing behind to take
// the next one's Enter, and lines typed before a prompt, however many, are
// not taken as the answer to it.
func TestOperatorLines(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	lines := readLines(r)

	// Scenario 1: no Enter; its timeout ends the wait, and no reader is
	// left waiting for a line on its behalf.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if waitEnter(ctx, lines, time.Now()) {
		t.Error("scenario 1 said it ended on an Enter; it timed out")
	}
	cancel()

	// Scenario 2: the operator's Enter ends it, long before its timeout.
	enterEnds(t, lines, w, time.Now(), "the Enter of scenario 2 did not end it: an earlier reader took it")

	// Three lines typed between prompts are all dropped at the next one.
	if _, err := io.WriteString(w, "early\nearlier\nearliest\n"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500 && len(lines) < 3; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines waiting, want the 3 typed", len(lines))
	}
	prompt := time.Now()
	ctx3, cancel3 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel3()
	waitEnter(ctx3, lines, prompt)
	if ctx3.Err() == nil {
		t.Error("scenario 3 ended on a line typed before its prompt")
	}
	// An Enter after the prompt still ends it.
	enterEnds(t, lines, w, prompt, "an Enter after scenario 3's prompt did not end it")

	// The end of the input (stdin closed, no terminal) leaves the
	// scenario to its timeout: the device may still be at work.
	w.Close()
	ctx4, cancel4 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel4()
	waitEnter(ctx4, lines, time.Now())
	if ctx4.Err() == nil {
		t.Error("the end of the input ended the wait before the scenario's timeout")
	}
}

// enterEnds types an Enter on w while waitEnter waits for one after prompt,
// and fails with msg unless that ends the wait.
func enterEnds(t *testing.T, lines <-chan time.Time, w io.Writer, prompt time.Time, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ended := make(chan struct{})
	var onEnter bool
	go func() { onEnter = waitEnter(ctx, lines, prompt); close(ended) }()
	if _, err := io.WriteString(w, "\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
		if !onEnter {
			t.Error("waitEnter said the scenario timed out; it ended on an Enter")
		}
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
}

// enterOn is an operator's terminal: it keeps what is written to it and,
// at the prompt of a scenario in enter, presses Enter.
type enterOn struct {
	mu    sync.Mutex
	b     strings.Builder
	enter []string
	w     io.Writer
}

func (e *enterOn) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.enter {
		if strings.Contains(string(p), "scenario "+s+": start the device now") {
			go io.WriteString(e.w, "\n")
		}
	}
	return e.b.Write(p)
}

// TestOperatorEnterKeepsRunning: without --exec, only scenarios nobody
// ended (stdin closed or no Enter, so --scenario-timeout ended them) count
// toward stopping a run whose device opened no TCP connection: one the
// operator ended with Enter (before starting the device, say) starts the
// count again, so the run stops after two timed-out scenarios in a row.
func TestOperatorEnterKeepsRunning(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	var stdout strings.Builder
	stderr := &enterOn{enter: []string{"register-429"}, w: w}
	env := &Env{Stdout: &stdout, Stderr: stderr, Stdin: r, Now: time.Now}
	code := env.main(context.Background(), []string{"device", "--out", filepath.Join(t.TempDir(), "d"), "--scenario-timeout", "300ms",
		"--scenario", "normal", "--scenario", "register-429", "--scenario", "poll-429", "--scenario", "unauthorized-401", "--scenario", "transient-500"})
	stderr.mu.Lock()
	defer stderr.mu.Unlock()
	if code != ExitTargetUnreachable {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitTargetUnreachable, stdout.String(), stderr.b.String())
	}
	for _, want := range []string{"scenario normal                 0 connections, ended at the scenario timeout (300ms)\n",
		"scenario register-429           0 connections, ended by the operator\n",
		"scenario poll-429               0 connections, ended at the scenario timeout (300ms)\n",
		"scenario unauthorized-401       0 connections, ended at the scenario timeout (300ms)\n",
		"scenario transient-500          not run\n",
		"\n1 scenario not run (transient-500): the device opened no TCP connection in 2 scenarios in a row (poll-429, unauthorized-401)",
		"NO VERDICT: the device never connected in any scenario (check that it was given the printed host, port and CA)\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
}
