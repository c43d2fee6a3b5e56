// Command pcaps regenerates the shared captures in testdata/pcaps:
//
//	go run ./internal/gen/pcaps -out testdata/pcaps
//
// Each capture NAME.pcapng comes with NAME.truth.json, the MQTT packets the
// generator put in each flow, and TLS captures with NAME.keylog. Captures
// without TLS are byte-for-byte reproducible (fixed clock, fixed sequence
// numbers); TLS handshakes use fresh randomness (Go's crypto ignores
// caller-supplied randomness), so TLS captures differ in bytes from run to
// run but carry the same packets. testdata/pcaps/README.md has the
// provenance of each file.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

func main() {
	out := flag.String("out", "testdata/pcaps", "directory to write the captures to")
	only := flag.String("only", "", "write only the capture with this name")
	flag.Parse()
	if err := generate(*out, *only); err != nil {
		fmt.Fprintln(os.Stderr, "pcaps:", err)
		os.Exit(1)
	}
}

// scenario makes one capture.
type scenario struct {
	name, description string
	tls               bool // has a key log; not byte-reproducible
	tsharkDiffers     string
	build             func(c *capture) error
}

// scenarios lists every capture in testdata/pcaps.
var scenarios = []scenario{
	{name: "register-tls", tls: true, build: buildRegisterTLS,
		description: "conformant symmetric-key register then poll over MQTT/TLS 1.3; TLS bytes on 8883 with the key log in a DSB, plaintext view on 1883"},
	{name: "register-wss", tls: true, build: buildRegisterWSS,
		description: "conformant register then poll over MQTT over WebSocket over TLS (subprotocol mqtt); TLS bytes on 443 with the key log in a DSB, plaintext MQTT view on 1883"},
	{name: "violations", build: buildViolations,
		description: "device and service violations: SUBACK granting QoS 2, register topic with ?rid= missing $, poll sooner than retry-after, reconnect and retry after 401"},
	{name: "midstream", build: buildMidstream,
		description: "capture started while the connection was open: no handshake, no CONNECT; first frame is a poll PUBLISH"},
	{name: "loss", build: buildLoss,
		description: "a big register PUBLISH with a lost and retransmitted segment, a reordered segment and a spurious retransmission; several MQTT packets in one segment"},
	{name: "remlen-split", build: buildRemlenSplit,
		tsharkDiffers: "tshark 4.0.17 mis-frames the rest of a TCP stream when a segment ends inside a multi-byte MQTT remaining-length field (the register PUBLISH's first segment ends after its first remaining-length byte)",
		description:   "TCP segments ending inside the 2-byte remaining length of PUBLISH packets, and a packet split one byte per segment"},
}

// generate writes every scenario (or only the named one) to dir.
func generate(dir, only string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	found := false
	for _, s := range scenarios {
		if only != "" && s.name != only {
			continue
		}
		found = true
		if err := s.write(dir); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if !found {
		return fmt.Errorf("no capture named %q", only)
	}
	return nil
}

// write makes the capture, its truth file and, for TLS, its key log.
func (s scenario) write(dir string) error {
	o := tracer.RecorderOptions{Comment: "dps-conform internal/gen/pcaps: " + s.name}
	clk := newClock()
	o.Now = clk.now
	truth := Truth{Name: s.name, Description: s.description, Deterministic: !s.tls, TsharkDiffers: s.tsharkDiffers}
	if s.tls {
		truth.KeyLog = s.name + ".keylog"
		o.KeyLogPath = filepath.Join(dir, truth.KeyLog)
	}
	rec, err := tracer.CreateRecorder(filepath.Join(dir, s.name+".pcapng"), o)
	if err != nil {
		return err
	}
	c := &capture{rec: rec, clock: clk, truth: &truth}
	if err := s.build(c); err != nil {
		rec.Close()
		return err
	}
	if err := rec.Close(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(truth, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, s.name+".truth.json"), append(b, '\n'), 0o644)
}

// clock starts at a fixed instant and moves one millisecond per frame;
// scenarios move it further to model waits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// capture is the scenario's recorder and truth.
type capture struct {
	rec   *tracer.Recorder
	clock *clock
	truth *Truth
}

// truthFlow adds a flow to the truth and returns its index.
func (c *capture) truthFlow(client, server, layer string) int {
	c.truth.Flows = append(c.truth.Flows, TruthFlow{Client: client, Server: server, Layer: layer, Packets: []TruthPacket{}})
	return len(c.truth.Flows) - 1
}

// note records that p went from side in truth flows idx.
func (c *capture) note(from tracer.Side, p packets.Packet, idx ...int) {
	dir := "c2s"
	if from == tracer.Server {
		dir = "s2c"
	}
	for _, i := range idx {
		c.truth.Flows[i].Packets = append(c.truth.Flows[i].Packets, summarize(dir, p))
	}
}

// encode is the wire form of the packets, one after the other.
func encode(ps ...packets.Packet) ([]byte, error) {
	var b []byte
	for _, p := range ps {
		var err error
		if b, err = packets.Encode(b, p, packets.EncodeOptions{AllowInvalid: true}); err != nil {
			return nil, fmt.Errorf("encoding %v: %w", p.Type(), err)
		}
	}
	return b, nil
}
