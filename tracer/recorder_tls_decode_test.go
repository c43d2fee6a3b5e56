package tracer_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// recordLiveTLS runs mqttScript over loopback crypto/tls, recording only
// the client's raw TLS bytes with o, with no key log file: the secrets are
// only in the capture's Decryption Secrets Blocks.
func recordLiveTLS(t *testing.T, pcap string, o func(raw net.Conn) tracer.ConnOptions) {
	t.Helper()
	rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	steps, _ := mqttScript()
	raw, tcfg, errc := dialScriptTLS(t, steps, rec.KeyLogWriter())
	tc := tls.Client(rec.Wrap(raw, o(raw)), tcfg)
	r := packets.NewReader(tc, packets.DecodeOptions{})
	for _, st := range steps {
		if st.from == tracer.Client {
			for _, p := range st.ps {
				if err := packets.WritePacket(tc, p); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		for range st.ps {
			if _, err := r.ReadPacket(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	tc.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeRecorderTLSEmbeddedKeys decodes live Recorder TLS captures
// with no key log but the capture's own DSBs: every MQTT packet of the
// script must come out decrypted. The client logs its secrets after the
// ServerHello (handshake secrets) and after the server's Finished (traffic
// secrets), so the DSBs follow the ServerHello in the file.
func TestDecodeRecorderTLSEmbeddedKeys(t *testing.T) {
	defer goleak.VerifyNone(t)
	_, want := mqttScript()
	for _, tc := range []struct {
		name string
		o    func(net.Conn) tracer.ConnOptions
	}{
		{"layer-tls", func(net.Conn) tracer.ConnOptions {
			return tracer.ConnOptions{Side: tracer.Client, Layer: tracer.TLS}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pcap := filepath.Join(t.TempDir(), "live.pcapng")
			recordLiveTLS(t, pcap, tc.o)
			c, err := tracer.DecodeFile(pcap, tracer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Conversations) != 1 {
				t.Fatalf("%d conversations, want 1", len(c.Conversations))
			}
			cv := c.Conversations[0]
			if cv.TLS == nil || !cv.TLS.Decrypted || !cv.TLS.KeyLogFound {
				t.Fatalf("TLS facts %+v: not decrypted with the embedded key log; problems %v", cv.TLS, cv.Problems)
			}
			var got []mqttSumm
			for _, p := range cv.Packets {
				dir := "c2s"
				if p.Dir != tracer.ClientToServer {
					dir = "s2c"
				}
				got = append(got, summarize(dir, p.Packet))
			}
			if len(got) != len(want) {
				t.Fatalf("decoded %d packets, want %d: %v", len(got), len(want), got)
			}
			for i := range want {
				if !reflect.DeepEqual(normal(got[i]), normal(want[i])) {
					t.Errorf("packet %d: got %v, want %v", i, got[i], want[i])
				}
			}
			for _, p := range cv.Problems {
				t.Errorf("problem: %v", p)
			}
		})
	}
}

// TestRecorderDeferredReadTime checks that a TLS-layer read recorded late
// (at the next Write) keeps the time it was read, not the time of the
// Write: an answer must not appear to arrive when the next request leaves.
func TestRecorderDeferredReadTime(t *testing.T) {
	defer goleak.VerifyNone(t)
	var mu sync.Mutex
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := base
	set := func(d time.Duration) {
		mu.Lock()
		now = base.Add(d)
		mu.Unlock()
	}
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	var buf bytes.Buffer
	rec, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	cli, srv := net.Pipe()
	defer srv.Close()
	c := rec.Wrap(cli, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.TLS})
	answer, request := []byte("answer"), []byte("request2")
	done := make(chan error, 1)
	go func() {
		_, err := srv.Write(answer)
		if err == nil {
			_, err = io.ReadFull(srv, make([]byte, len(request)))
		}
		done <- err
	}()
	set(10 * time.Millisecond)
	got := make([]byte, len(answer))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	set(1100 * time.Millisecond) // the client sleeps before its next request
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	set(2 * time.Second)
	c.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	capt := readCapture(t, buf.Bytes())
	var sawAnswer, sawRequest bool
	for i, f := range capt.frames {
		switch {
		case bytes.Equal(f.payload, answer):
			sawAnswer = true
			if want := base.Add(10 * time.Millisecond); !f.ts.Equal(want) {
				t.Errorf("frame %d (answer) at %v, want the read time %v", i+1, f.ts.Sub(base), want.Sub(base))
			}
			if sawRequest {
				t.Errorf("frame %d: answer written after the later request", i+1)
			}
		case bytes.Equal(f.payload, request):
			sawRequest = true
			if want := base.Add(1100 * time.Millisecond); !f.ts.Equal(want) {
				t.Errorf("frame %d (request) at %v, want %v", i+1, f.ts.Sub(base), want.Sub(base))
			}
		}
	}
	if !sawAnswer || !sawRequest {
		t.Fatalf("answer found %v, request found %v in %d frames", sawAnswer, sawRequest, len(capt.frames))
	}
}
