package cli

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestOperatorLines: in operator mode one reader serves every scenario. A
// scenario that timed out without an Enter leaves nothing behind to take
// the next one's Enter, and a line typed before a prompt is not taken as
// the answer to it.
func TestOperatorLines(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	lines := readLines(r)

	// Scenario 1: no Enter; its timeout ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	waitEnter(ctx, lines)
	cancel()

	// Scenario 2: the operator's Enter ends it, long before its timeout.
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ended := make(chan struct{})
	go func() { waitEnter(ctx, lines); close(ended) }()
	if _, err := io.WriteString(w, "\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the Enter of scenario 2 did not end it: an earlier reader took it")
	}

	// A line typed between prompts is dropped before the next one.
	typed := make(chan struct{})
	go func() { io.WriteString(w, "early\n"); close(typed) }()
	<-typed // the reader has it (the pipe is unbuffered) and sends it
	dropped := 0
	for i := 0; i < 500 && dropped == 0; i++ {
		dropped = drainLines(lines)
		time.Sleep(10 * time.Millisecond)
	}
	if dropped != 1 {
		t.Fatalf("drainLines dropped %d lines, want the 1 typed", dropped)
	}
	ctx3, cancel3 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel3()
	waitEnter(ctx3, lines)
	if ctx3.Err() == nil {
		t.Error("scenario 3 ended on a line typed before its prompt")
	}

	// The end of the input ends the wait (the operator has nothing more).
	w.Close()
	ctx4, cancel4 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel4()
	waitEnter(ctx4, lines)
	if ctx4.Err() != nil {
		t.Error("the end of the input did not end the wait")
	}
}
