package cli

import (
	"context"
	"io"
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
