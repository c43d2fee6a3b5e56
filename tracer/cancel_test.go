package tracer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestDecodeFileContextCancel: a pipe with no writer yet, and one whose
// writer sent a header and stalls, both wait for input; cancelling the
// context ends the wait with an error wrapping context.Canceled, and a
// capture of many records stops between records.
func TestDecodeFileContextCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	header := (&genCapture{t: t, link: linkEthernet}).pcap()
	for _, tc := range []struct {
		name string
		// feed opens the pipe's write end (or not) and writes to it; it
		// returns what the test closes at the end.
		feed func(t *testing.T, path string) *os.File
	}{
		{"no writer", func(t *testing.T, path string) *os.File { return nil }},
		{"writer stalls after the header", func(t *testing.T, path string) *os.File {
			var w *os.File
			// The decoder's open (a reader) must be waiting before a
			// non-blocking open for writing succeeds.
			for range 100 {
				f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
				if err == nil {
					w = f
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if w == nil {
				t.Fatal("the decoder never opened the pipe")
			}
			if _, err := w.Write(header); err != nil {
				t.Fatal(err)
			}
			return w
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "capture.pipe")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := DecodeFileContext(ctx, path, Options{})
				done <- err
			}()
			w := tc.feed(t, path)
			time.Sleep(50 * time.Millisecond)
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Errorf("DecodeFileContext after cancel: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("DecodeFileContext did not return within 5 s of the cancel")
			}
			if w != nil {
				w.Close()
				return
			}
			// Let the abandoned open complete (and close): a writer can
			// open once the reader's open is waiting, which may not be yet.
			for range 500 {
				if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
			t.Error("the abandoned open of the pipe never waited for a writer")
		})
	}
	t.Run("partial capture", func(t *testing.T) {
		// A whole capture written, the writer still open: cancelling
		// returns what was decoded, marked incomplete.
		path := filepath.Join(t.TempDir(), "capture.pipe")
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		whole, err := os.ReadFile("../testdata/pcaps/register-tls.pcapng")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		type result struct {
			c   *Capture
			err error
		}
		done := make(chan result, 1)
		first := make(chan struct{})
		var once sync.Once
		o := Options{OnPacket: func(*Conversation, *Packet) { once.Do(func() { close(first) }) }}
		go func() {
			c, err := DecodeFileContext(ctx, path, o)
			done <- result{c, err}
		}()
		w, err := os.OpenFile(path, os.O_WRONLY, 0) // waits for the decoder's open
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(whole); err != nil {
			t.Fatal(err)
		}
		select {
		case <-first: // decoding is under way
		case <-time.After(5 * time.Second):
			t.Fatal("no packet decoded within 5 s of the write")
		}
		cancel()
		select {
		case r := <-done:
			if !errors.Is(r.err, context.Canceled) || r.c == nil || r.c.Frames == 0 || r.c.Incomplete == "" {
				t.Fatalf("DecodeFileContext after cancel: %v, capture %+v; want what was decoded, marked incomplete", r.err, r.c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("DecodeFileContext did not return within 5 s of the cancel")
		}
	})
	t.Run("many records", func(t *testing.T) {
		g := &genCapture{t: t, link: linkEthernet}
		for range 2 * ctxCheckEvery {
			g.frames = append(g.frames, genFrame{ts: g.now, data: make([]byte, 14)})
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := DecodeContext(ctx, bytes.NewReader(g.pcap()), Options{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("DecodeContext with a cancelled ctx: %v, want context.Canceled", err)
		}
		c, err := DecodeContext(ctx, bytes.NewReader(g.pcap()), Options{Workers: 2})
		if !errors.Is(err, context.Canceled) || c == nil || c.Incomplete == "" {
			t.Errorf("DecodeContext with 2 workers and a cancelled ctx: %v, %+v", err, c)
		}
		if _, err := DecodeContext(context.Background(), bytes.NewReader(g.pcap()), Options{Workers: 2}); err != nil {
			t.Errorf("DecodeContext: %v", err)
		}
	})
}
