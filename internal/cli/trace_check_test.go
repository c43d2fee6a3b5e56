package cli_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/internal/pcapngtest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// TestTraceCheckRules: --check judges field captures with the service rules
// of the suite. The committed violations capture has a QoS 2 grant and a
// device that closes right after a 401; the conformant flow has none.
func TestTraceCheckRules(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"trace", "--check", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			"! DPS-SUB-002 MUST conversation 1, frame 10: expected SUBACK granting 1; actual: asked QoS 2, SUBACK id 1 granting [0x02]\n",
			// The device closes 40 ms after the 401: too soon to say the
			// server would not have (RuleEnv.CloseGrace), so no DPS-AUTH-007.
			"1 finding of the service rules (1 MUST; 9 MUST requirements judged), profile dps-2019\n",
		}},
		{[]string{"trace", "--check", "--keylog", "../../testdata/pcaps/register-tls.keylog", "../../testdata/pcaps/register-tls.pcapng"}, cli.ExitConformant, []string{
			"0 findings of the service rules (0 MUST; 10 MUST requirements judged), profile dps-2019\n",
		}},
		// Captured from the poll on, at a packet boundary: the CONNECT,
		// SUBSCRIBE and register were not captured, so no verdict.
		{[]string{"trace", "--check", "../../testdata/pcaps/midstream.pcapng"}, cli.ExitTargetUnreachable, []string{
			"  c>s #1 ! [tracer-midstream] capture starts mid-connection: the connection's CONNECT, and whatever preceded the first packet seen (c2s PUBLISH, frame 1), was not captured (offset 0; a defect of the capture, not counted by --check)\n",
			"0 findings of the service rules (0 MUST; 5 MUST requirements judged), profile dps-2019\n",
		}},
		{[]string{"trace", "--check", "--format", "json", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			`{"type":"finding","level":"MUST","id":"DPS-SUB-002","conversation":1,"frame":10,`,
		}},
		{[]string{"trace", "--check", "--profile", "dps-2030", "../../testdata/pcaps/violations.pcapng"}, cli.ExitUsage, nil},
		{[]string{"trace", "--check", "--role", "broker", "../../testdata/pcaps/violations.pcapng"}, cli.ExitUsage, nil},
		// The same capture judged as a device: the ?rid= typo, the poll
		// before retry-after, the retry after 401.
		{[]string{"trace", "--check", "--role", "device", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			"! DPS-DEV-011 MUST", "! DPS-DEV-014 MUST", "findings of the device rules",
		}},
		{[]string{"trace", "--check", "--role", "all", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			"findings of the service and device rules",
		}},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, stdout.String())
			}
		}
	}
}

// TestTraceCheckNoVerdict: --check without a violation but without the
// means to judge exits 3 and says why, rather than passing the capture or
// failing it: a TLS capture whose key log is missing (the usual tcpdump
// capture), and a capture that ends after the CONNECT, which no MUST rule
// judges.
func TestTraceCheckNoVerdict(t *testing.T) {
	orig, err := os.ReadFile("../../testdata/pcaps/register-tls.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// keep writes the blocks of orig that keep says to keep.
	keep := func(name string, keep func(typ uint32, epbs int) bool) string {
		return rewritePcapng(t, orig, filepath.Join(dir, name), func(typ uint32, epbs int, b []byte) []byte {
			if keep(typ, epbs) {
				return b
			}
			return nil
		})
	}
	nokeys := keep("nokeys.pcapng", func(typ uint32, _ int) bool { return typ != 10 }) // no Decryption Secrets Block
	// A key log with the handshake secrets but not the server's traffic
	// secret: the handshake decrypts, the server's MQTT does not.
	kl, err := os.ReadFile("../../testdata/pcaps/register-tls.keylog")
	if err != nil {
		t.Fatal(err)
	}
	var partial []string
	for _, l := range strings.Split(string(kl), "\n") {
		if !strings.HasPrefix(l, "SERVER_TRAFFIC_SECRET_0 ") {
			partial = append(partial, l)
		}
	}
	partialKL := filepath.Join(dir, "partial.keylog")
	if err := os.WriteFile(partialKL, []byte(strings.Join(partial, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no key log", []string{nokeys},
			"no verdict: conversation 1 (192.0.2.10:50001 → 192.0.2.20:8883) is TLS and was not decrypted, or only in part (no key log entry for client random "},
		{"server traffic secret missing", []string{"--keylog", partialKL, nokeys},
			"is TLS and was not decrypted, or only in part (key log has no traffic secret 0 for s2c"},
		{"CONNECT only", []string{keep("connect.pcapng", func(typ uint32, epbs int) bool { return typ != 6 || epbs <= 18 })}, // frame 18 is the CONNECT
			"no verdict: no MUST requirement was judged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), append([]string{"trace", "--check"}, tc.args...), &stdout, &stderr)
			if code != cli.ExitTargetUnreachable || !strings.Contains(stderr.String(), tc.want) || strings.Contains(stderr.String(), "non-conformant") {
				t.Errorf("exit %d (want %d), stderr lacks %q:\n%s\n%s", code, cli.ExitTargetUnreachable, tc.want, stderr.String(), stdout.String())
			}
		})
	}
}

// TestTraceCheckUnseen: the rules do not judge MQTT the tracer could not
// read. In register-tls.pcapng, the device's poll (frame 50) is lost (a
// gap) or one byte of its encrypted record is flipped (the record fails
// authentication, and the rest of c2s stays encrypted); the 200 answer to
// that poll must not look like an answer to no request (DPS-REG-003). A
// flipped byte was sent (or damaged) on the wire: a decode violation, exit
// 1. A lost segment is a defect of the capture, not of the peers: no
// verdict, exit 3, saying what was lost. Neither has a MUST finding.
func TestTraceCheckUnseen(t *testing.T) {
	orig, err := os.ReadFile("../../testdata/pcaps/register-tls.pcapng")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// edit writes orig with frame 50's Enhanced Packet Block passed
	// through f (nil drops it).
	edit := func(name string, f func(epb []byte) []byte) string {
		return rewritePcapng(t, orig, filepath.Join(dir, name), func(typ uint32, epbs int, b []byte) []byte {
			if typ == 6 && epbs == 50 {
				return f(bytes.Clone(b))
			}
			return b
		})
	}
	for _, tc := range []struct {
		name   string
		path   string
		want   string
		code   int
		stderr string
	}{
		{"poll lost", edit("lost.pcapng", func([]byte) []byte { return nil }), "GAP", cli.ExitTargetUnreachable,
			"no verdict: the capture has defects, and what they lost was not judged (no MUST finding or protocol error in the rest): conversation 1 (192.0.2.10:50001 → 192.0.2.20:8883): 156 bytes of c2s lost at stream offset 2064 (before frame 61)\n"},
		{"poll corrupted", edit("flipped.pcapng", func(epb []byte) []byte {
			capLen := int(binary.LittleEndian.Uint32(epb[20:]))
			epb[28+capLen-1] ^= 0x01 // the last byte of the record's tag
			return epb
		}), "authentication tag mismatch", cli.ExitNonConformant, "non-conformant: 1 decode violation (a protocol error in the capture)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{"trace", "--check", "--role", "all", tc.path}, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.want) || !strings.HasSuffix(stderr.String(), tc.stderr) ||
				strings.Contains(stdout.String(), "! DPS-") || strings.Contains(stderr.String(), "MUST-level") {
				t.Errorf("exit %d (want %d, stderr ending %q, no finding):\n%s\n%s", code, tc.code, tc.stderr, stdout.String(), stderr.String())
			}
		})
	}
}

// TestTraceCheckCaptureDefects: --check tells what the capture lost from
// what the peers sent. A stream that the capture stops recording inside a
// packet, and a frame a small snapshot length cut, are defects of the
// capture: no verdict (exit 3), saying what was lost and where. A stream
// that a FIN ends inside a packet really ended there: a decode violation
// (exit 1).
func TestTraceCheckCaptureDefects(t *testing.T) {
	dir := t.TempDir()
	if err := writeTraceCaptures(dir); err != nil {
		t.Fatal(err)
	}
	connect := encodeAll(&packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("reg-1"),
		Username: []byte("0ne00000001/registrations/reg-1/api-version=2019-03-31"),
		Password: []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=c2VjcmV0LXNpZw%3d%3d&se=1700000000&skn=registration")})
	register := encodeAll(&packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"), Payload: []byte(`{"registrationId":"reg-1"}`)})
	// cutOff records a CONNECT, its CONNACK and the first 20 bytes of a
	// register, then a FIN from the device or nothing more.
	cutOff := func(name string, fin bool) string {
		t.Helper()
		var buf bytes.Buffer
		r, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f, err := r.Flow(netip.MustParseAddrPort("192.0.2.10:50130"), netip.MustParseAddrPort("192.0.2.1:1883"), tracer.FlowOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []struct {
			side tracer.Side
			data []byte
		}{{tracer.Client, connect}, {tracer.Server, encodeAll(&packets.Connack{})}, {tracer.Client, register[:20]}} {
			if err := f.Send(s.side, s.data, tracer.SegOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		if fin {
			if err := f.Fin(tracer.Client); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	dps, err := os.ReadFile(filepath.Join(dir, "dps.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	// snap.pcapng: dps.pcapng with the last 10 bytes of frame 8 (the
	// SUBSCRIBE) not captured, as a snapshot length would cut them.
	snap := rewritePcapng(t, dps, filepath.Join(dir, "snap.pcapng"), func(typ uint32, epbs int, b []byte) []byte {
		if typ != 6 || epbs != 8 {
			return b
		}
		capLen := int(binary.LittleEndian.Uint32(b[20:]))
		data := b[28 : 28+capLen-10]
		nb := append(bytes.Clone(b[:28]), data...)
		for len(nb)%4 != 0 {
			nb = append(nb, 0)
		}
		nb = binary.LittleEndian.AppendUint32(nb, uint32(len(nb)+4))
		binary.LittleEndian.PutUint32(nb[4:], uint32(len(nb)))
		binary.LittleEndian.PutUint32(nb[20:], uint32(capLen-10))
		return nb
	})
	for _, tc := range []struct {
		name   string
		path   string
		code   int
		stderr string
	}{
		{"capture stops inside a packet", cutOff("stop.pcapng", false), cli.ExitTargetUnreachable,
			"dps-conform trace: no verdict: the capture has defects, and what they lost was not judged (no MUST finding or protocol error in the rest): conversation 1 (192.0.2.10:50130 → 192.0.2.1:1883): the capture ends before c2s does, with no FIN or RST: stream ends inside a PUBLISH packet (20 bytes buffered)\n"},
		{"FIN inside a packet", cutOff("fin.pcapng", true), cli.ExitNonConformant,
			"dps-conform trace: non-conformant: 1 decode violation (a protocol error in the capture)\n"},
		{"snapshot length", snap, cli.ExitTargetUnreachable,
			"dps-conform trace: no verdict: the capture has defects, and what they lost was not judged (no MUST finding or protocol error in the rest): conversation 1 (192.0.2.10:50123 → 192.0.2.1:1883): 10 bytes of c2s cut by the snapshot length at stream offset 215 (in frame 8); 1 packet cut by a gap\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli.Main(context.Background(), []string{"trace", "--check", tc.path}, &stdout, &stderr)
			if code != tc.code || stderr.String() != tc.stderr {
				t.Errorf("exit %d, stderr\n%s\nwant exit %d, stderr\n%s\nstdout:\n%s", code, stderr.String(), tc.code, tc.stderr, stdout.String())
			}
		})
	}
}

// TestTraceCheckRunEvidence: trace --check agrees with the run on the
// capture of TLS-005, a plaintext CONNECT sent to the server's TLS port
// and refused (closed without an answer): no DPS-CONN-001 finding for the
// missing CONNACK, since no answer is what the server owes it.
func TestTraceCheckRunEvidence(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := cli.Main(context.Background(), []string{"run", "--target", "emulator", "--label-filter", "req: containsAny TLS-005", "--out", dir}, &stdout, &stderr); code != cli.ExitConformant {
		t.Fatalf("run: exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code := cli.Main(context.Background(), []string{"trace", "--check", filepath.Join(dir, "pcaps", "001-TLS-005.pcapng")}, &stdout, &stderr)
	if code != cli.ExitConformant || strings.Contains(stdout.String(), "! DPS-CONN-001") {
		t.Errorf("trace --check: exit %d, want %d and no DPS-CONN-001 finding:\n%s\n%s", code, cli.ExitConformant, stdout.String(), stderr.String())
	}
}

// rewritePcapng writes to path the pcapng file orig edited with
// pcapngtest.EditBlocks.
func rewritePcapng(t *testing.T, orig []byte, path string, f func(typ uint32, epbs int, block []byte) []byte) string {
	t.Helper()
	out, err := pcapngtest.EditBlocks(orig, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
