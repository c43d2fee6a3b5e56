package tracer

import (
	"bytes"
	"context"
	"errors"
	"io"
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
		// A capture of many records whose reader cancels the context
		// part-way: the decode stops within ctxCheckEvery frames of the
		// cancel and returns the frames read so far, marked incomplete.
		const total = 20 * ctxCheckEvery
		g := &genCapture{t: t, link: linkEthernet}
		for range total {
			g.frames = append(g.frames, genFrame{ts: g.now, data: make([]byte, 14)})
		}
		data := g.pcap()
		for _, workers := range []int{1, 2} {
			ctx, cancel := context.WithCancel(context.Background())
			r := &cancellingReader{data: data, at: len(data) / 4, cancel: cancel}
			c, err := DecodeContext(ctx, r, Options{Workers: workers})
			cancel()
			if !errors.Is(err, context.Canceled) || c == nil || c.Incomplete == "" {
				t.Fatalf("workers %d: DecodeContext cancelled a quarter in: %v, capture %+v; want the partial capture, marked incomplete", workers, err, c)
			}
			if c.Frames == 0 || c.Frames >= total/2 {
				t.Errorf("workers %d: %d of %d frames decoded after a cancel a quarter in, want some but well under half", workers, c.Frames, total)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := DecodeContext(ctx, bytes.NewReader(data), Options{}); !errors.Is(err, context.Canceled) {
			t.Errorf("DecodeContext with a cancelled ctx: %v, want context.Canceled", err)
		}
		c, err := DecodeContext(context.Background(), bytes.NewReader(data), Options{Workers: 2})
		if err != nil || c.Frames != total || c.Incomplete != "" {
			t.Errorf("DecodeContext: %v, %d frames (want %d), incomplete %q", err, c.Frames, total, c.Incomplete)
		}
	})
}

// cancellingReader reads data in chunks of at most 1 KiB and calls cancel
// once at has been read.
type cancellingReader struct {
	data   []byte
	off    int
	at     int
	cancel context.CancelFunc
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1024)], r.data[r.off:])
	r.off += n
	if r.off >= r.at {
		r.cancel()
	}
	return n, nil
}
