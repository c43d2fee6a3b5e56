package tracer_test

// The tshark oracle: Wireshark's dissectors, an implementation nobody here
// wrote, must see in our captures exactly the MQTT packets the generator
// (or a live test) put there, and must find our frames valid (checksums,
// sequence numbers, no malformed packets). Where tshark 4.0 is known to be
// wrong the test says so by name; tshark must then still find every
// checksum good and agree with the truth up to the packets it mis-frames.
//
// Commands (tshark 4.0.17, Debian 12):
//
//	tshark -r F.pcapng -o tls.keylog_file:F.keylog -o tcp.reassemble_out_of_order:TRUE \
//	       -X lua_script:ws-mqtt.lua -Y mqtt -T pdml -J "frame ip ipv6 tcp mqtt"
//	tshark -r F.pcapng -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE ... \
//	       -Y '<validity filter>' -T fields -e frame.number -e _ws.expert.message
//
// ws-mqtt.lua registers MQTT for the WebSocket subprotocol "mqtt", which
// tshark 4.0 does not do by itself:
//
//	DissectorTable.get("ws.protocol"):add("mqtt", Dissector.get("mqtt"))

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/transport"
)

// requireTool returns the path of an external tool, or skips the test
// with the reason; with DPSCONFORM_REQUIRE_PEERS=1 a missing tool fails it.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found in PATH (%v); install it (Debian: apt-get install -y %s)", name, err, name)
	if os.Getenv("DPSCONFORM_REQUIRE_PEERS") == "1" {
		t.Fatal(msg + "; DPSCONFORM_REQUIRE_PEERS=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// truthFile is the NAME.truth.json written by internal/gen/pcaps.
type truthFile struct {
	Name          string      `json:"name"`
	KeyLog        string      `json:"keylog"`
	Deterministic bool        `json:"deterministic"`
	TsharkDiffers string      `json:"tsharkDiffers"`
	Flows         []truthFlow `json:"flows"`
}

type truthFlow struct {
	Client  string     `json:"client"`
	Server  string     `json:"server"`
	Layer   string     `json:"layer"`
	Packets []mqttSumm `json:"packets"`
}

// mqttSumm is the comparable summary of one MQTT packet (the JSON shape of
// the truth files).
type mqttSumm struct {
	Dir      string `json:"dir"`
	Type     string `json:"type"`
	Topic    string `json:"topic,omitempty"`
	PacketID uint16 `json:"packetId,omitempty"`
	QoS      int    `json:"qos,omitempty"`
	Codes    []int  `json:"codes,omitempty"`
	// CONNECT fields.
	ClientID     string `json:"clientId,omitempty"`
	Username     string `json:"username,omitempty"`
	KeepAlive    int    `json:"keepAlive,omitempty"`
	ConnectFlags int    `json:"connectFlags,omitempty"`
	// PUBLISH payload: its length and SHA-256 (set even when empty).
	PayloadLen    int    `json:"payloadLen,omitempty"`
	PayloadSHA256 string `json:"payloadSha256,omitempty"`
	// RemLenSplit (truth only): a TCP segment ends inside this packet's
	// remaining-length field; tshark 4.0 mis-frames its direction from here.
	RemLenSplit bool `json:"remLenSplit,omitempty"`
}

func (s mqttSumm) String() string {
	out := fmt.Sprintf("%s %s id=%d qos=%d codes=%v topic=%q", s.Dir, s.Type, s.PacketID, s.QoS, s.Codes, s.Topic)
	if s.Type == packets.TypeConnect.String() {
		out += fmt.Sprintf(" clientId=%q username=%q keepAlive=%d flags=%#02x", s.ClientID, s.Username, s.KeepAlive, s.ConnectFlags)
	}
	if s.PayloadSHA256 != "" {
		out += fmt.Sprintf(" payload=%d bytes sha256:%s", s.PayloadLen, s.PayloadSHA256)
	}
	return out
}

// payloadSumm sets the payload length and digest of a PUBLISH summary.
func (s *mqttSumm) payloadSumm(payload []byte) {
	sum := sha256.Sum256(payload)
	s.PayloadLen, s.PayloadSHA256 = len(payload), hex.EncodeToString(sum[:])
}

// pcapsDir is the shared captures directory.
const pcapsDir = "../testdata/pcaps"

// loadTruths reads every truth file in testdata/pcaps.
func loadTruths(t *testing.T) []truthFile {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(pcapsDir, "*.truth.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no truth files in %s (%v): run go run ./internal/gen/pcaps", pcapsDir, err)
	}
	var out []truthFile
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var tf truthFile
		if err := json.Unmarshal(b, &tf); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		out = append(out, tf)
	}
	return out
}

// pdml is the part of tshark's PDML output the oracle reads.
type pdml struct {
	Packets []struct {
		Protos []pdmlProto `xml:"proto"`
	} `xml:"packet"`
}

type pdmlProto struct {
	Name   string      `xml:"name,attr"`
	Fields []pdmlField `xml:"field"`
	Protos []pdmlProto `xml:"proto"`
}

type pdmlField struct {
	Name   string      `xml:"name,attr"`
	Show   string      `xml:"show,attr"`
	Value  string      `xml:"value,attr"`
	Fields []pdmlField `xml:"field"`
}

// all appends the values of every field called name, at any depth.
func all(fs []pdmlField, name string, out []string) []string {
	for _, f := range fs {
		if f.Name == name {
			out = append(out, f.Show)
		}
		out = all(f.Fields, name, out)
	}
	return out
}

func first(fs []pdmlField, name string) string {
	if v := all(fs, name, nil); len(v) > 0 {
		return v[0]
	}
	return ""
}

// tsharkPacket is one MQTT packet as tshark dissected it.
type tsharkPacket struct {
	frame    int
	src, dst netip.AddrPort
	summ     mqttSumm // Dir unset
}

// wsMQTTLua lets tshark 4.0 dissect the WebSocket subprotocol "mqtt".
const wsMQTTLua = `DissectorTable.get("ws.protocol"):add("mqtt", Dissector.get("mqtt"))` + "\n"

// tsharkArgs are the common options: key log, out-of-order reassembly
// (tshark's default gives up on the loss capture) and the Lua snippet.
func tsharkArgs(t *testing.T, pcap, keylog string) []string {
	lua := filepath.Join(t.TempDir(), "ws-mqtt.lua")
	if err := os.WriteFile(lua, []byte(wsMQTTLua), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-r", pcap, "-o", "tcp.reassemble_out_of_order:TRUE", "-X", "lua_script:" + lua}
	if keylog != "" {
		args = append(args, "-o", "tls.keylog_file:"+keylog)
	}
	return args
}

// runTshark runs tshark and returns its standard output; stderr lines
// other than the "running as root" notice fail the test.
func runTshark(t *testing.T, tshark string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(tshark, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l != "" && !strings.Contains(l, "Running as user") && !strings.Contains(l, "could be dangerous") {
			t.Fatalf("tshark %s: stderr: %s", strings.Join(args, " "), stderr.String())
		}
	}
	return stdout.Bytes()
}

// tsharkMQTT is every MQTT packet tshark finds in pcap, in frame order.
func tsharkMQTT(t *testing.T, tshark, pcap, keylog string) []tsharkPacket {
	t.Helper()
	args := append(tsharkArgs(t, pcap, keylog), "-Y", "mqtt", "-T", "pdml", "-J", "frame ip ipv6 tcp mqtt")
	var doc pdml
	if err := xml.Unmarshal(runTshark(t, tshark, args...), &doc); err != nil {
		t.Fatalf("tshark PDML: %v", err)
	}
	var out []tsharkPacket
	for _, p := range doc.Packets {
		var frame int
		var srcIP, dstIP, sport, dport string
		var mqtts []pdmlProto
		var walk func(ps []pdmlProto)
		walk = func(ps []pdmlProto) {
			for _, pr := range ps {
				switch pr.Name {
				case "frame":
					frame, _ = strconv.Atoi(first(pr.Fields, "frame.number"))
				case "ip":
					srcIP, dstIP = first(pr.Fields, "ip.src"), first(pr.Fields, "ip.dst")
				case "ipv6":
					srcIP, dstIP = first(pr.Fields, "ipv6.src"), first(pr.Fields, "ipv6.dst")
				case "tcp":
					sport, dport = first(pr.Fields, "tcp.srcport"), first(pr.Fields, "tcp.dstport")
				case "mqtt":
					mqtts = append(mqtts, pr)
				}
				walk(pr.Protos)
			}
		}
		walk(p.Protos)
		ep := func(ip, port string) netip.AddrPort {
			a, err1 := netip.ParseAddr(ip)
			p, err2 := strconv.ParseUint(port, 10, 16)
			if err1 != nil || err2 != nil {
				t.Fatalf("frame %d: tshark endpoint %q port %q", frame, ip, port)
			}
			return netip.AddrPortFrom(a, uint16(p))
		}
		src, dst := ep(srcIP, sport), ep(dstIP, dport)
		for _, m := range mqtts {
			out = append(out, tsharkPacket{frame: frame, src: src, dst: dst, summ: pdmlSumm(t, frame, m.Fields)})
		}
	}
	return out
}

// pdmlSumm reads the tshark 4.0 MQTT fields: mqtt.msgtype, mqtt.topic,
// mqtt.msgid, mqtt.qos and mqtt.msg (PUBLISH; its value attribute is the
// whole payload in hex, absent when the payload is empty), mqtt.clientid,
// mqtt.username, mqtt.kalive and mqtt.conflags (CONNECT), mqtt.conack.val,
// mqtt.suback.qos and mqtt.sub.qos.
func pdmlSumm(t *testing.T, frame int, fs []pdmlField) mqttSumm {
	num := func(s string) int {
		v, err := strconv.ParseInt(s, 0, 32)
		if err != nil {
			t.Fatalf("frame %d: tshark value %q: %v", frame, s, err)
		}
		return int(v)
	}
	typ := packets.Type(num(first(fs, "mqtt.msgtype")))
	s := mqttSumm{Type: typ.String(), Topic: first(fs, "mqtt.topic")}
	if v := first(fs, "mqtt.msgid"); v != "" {
		s.PacketID = uint16(num(v))
	}
	switch typ {
	case packets.TypeConnect:
		s.ClientID, s.Username = first(fs, "mqtt.clientid"), first(fs, "mqtt.username")
		s.KeepAlive, s.ConnectFlags = num(first(fs, "mqtt.kalive")), num(first(fs, "mqtt.conflags"))
	case packets.TypePublish:
		s.QoS = num(first(fs, "mqtt.qos"))
		var payload []byte
		for _, f := range fs {
			if f.Name != "mqtt.msg" {
				continue
			}
			v := f.Value
			if v == "" { // no value attribute: show is colon-separated hex
				v = strings.ReplaceAll(f.Show, ":", "")
			}
			var err error
			if payload, err = hex.DecodeString(v); err != nil {
				t.Fatalf("frame %d: tshark mqtt.msg value %.40q: %v", frame, f.Value, err)
			}
		}
		s.payloadSumm(payload)
	case packets.TypeConnack:
		s.Codes = []int{num(first(fs, "mqtt.conack.val"))}
	case packets.TypeSubscribe:
		s.Topic = "" // the truth lists filters' QoS only
		for _, v := range all(fs, "mqtt.sub.qos", nil) {
			s.Codes = append(s.Codes, num(v))
		}
	case packets.TypeSuback:
		for _, v := range all(fs, "mqtt.suback.qos", nil) {
			s.Codes = append(s.Codes, num(v))
		}
	}
	return s
}

// byFlow groups tshark's packets into the truth's flows, setting Dir.
func byFlow(t *testing.T, tp []tsharkPacket, flows []truthFlow) [][]mqttSumm {
	t.Helper()
	out := make([][]mqttSumm, len(flows))
	for _, p := range tp {
		found := false
		for i, f := range flows {
			switch {
			case p.src.String() == f.Client && p.dst.String() == f.Server:
				p.summ.Dir = "c2s"
			case p.src.String() == f.Server && p.dst.String() == f.Client:
				p.summ.Dir = "s2c"
			default:
				continue
			}
			out[i] = append(out[i], p.summ)
			found = true
		}
		if !found {
			t.Errorf("frame %d: MQTT %v on %v → %v, a flow the truth does not have", p.frame, p.summ, p.src, p.dst)
		}
	}
	return out
}

// compareFlows reports the first difference in each flow.
func compareFlows(t *testing.T, who string, got [][]mqttSumm, flows []truthFlow) {
	t.Helper()
	for _, d := range diffFlows(who, got, flows) {
		t.Error(d)
	}
}

// diffFlows lists the first difference in each flow.
func diffFlows(who string, got [][]mqttSumm, flows []truthFlow) []string {
	var out []string
	for i, f := range flows {
		if d := diffPackets(got[i], f.Packets); d != "" {
			out = append(out, fmt.Sprintf("%s, flow %s → %s: %s", who, f.Client, f.Server, d))
		}
	}
	return out
}

// diffPackets describes the first difference between got and want, or
// returns "".
func diffPackets(got, want []mqttSumm) string {
	for j := range max(len(got), len(want)) {
		switch {
		case j >= len(got):
			return fmt.Sprintf("packet %d missing, want %v", j+1, want[j])
		case j >= len(want):
			return fmt.Sprintf("extra packet %d: %v", j+1, got[j])
		case !reflect.DeepEqual(normal(got[j]), normal(want[j])):
			return fmt.Sprintf("packet %d is %v, want %v", j+1, got[j], want[j])
		}
	}
	return ""
}

// diffBeforeMisframing lists, for a capture tshark is known to mis-frame,
// the first difference in the part tshark must still get right: in each
// flow and direction, the packets before the first one marked RemLenSplit
// (all of them in a direction without such a packet). Past that point
// tshark's packets of that direction are not compared.
func diffBeforeMisframing(got [][]mqttSumm, flows []truthFlow) []string {
	var out []string
	marked := false
	for i, f := range flows {
		for _, dir := range []string{"c2s", "s2c"} {
			var want, g []mqttSumm
			for _, p := range f.Packets {
				if p.Dir != dir {
					continue
				}
				if p.RemLenSplit {
					marked = true
					break
				}
				want = append(want, p)
			}
			for _, p := range got[i] {
				if p.Dir == dir {
					g = append(g, p)
				}
			}
			if len(g) > len(want) {
				g = g[:len(want)]
			}
			if d := diffPackets(g, want); d != "" {
				out = append(out, fmt.Sprintf("tshark, flow %s → %s, %s before the first segment cut inside a remaining length: %s", f.Client, f.Server, dir, d))
			}
		}
	}
	if !marked {
		out = append(out, "the truth names a tshark bug but marks no packet remLenSplit: regenerate it or explain the bug in the generator")
	}
	return out
}

// sameFlows reports whether got matches the truth exactly.
func sameFlows(got [][]mqttSumm, flows []truthFlow) bool {
	for i, f := range flows {
		if len(got[i]) != len(f.Packets) {
			return false
		}
		for j := range got[i] {
			if !reflect.DeepEqual(normal(got[i][j]), normal(f.Packets[j])) {
				return false
			}
		}
	}
	return true
}

// normal makes empty and nil code lists equal and drops the truth-only
// RemLenSplit mark.
func normal(s mqttSumm) mqttSumm {
	if len(s.Codes) == 0 {
		s.Codes = nil
	}
	s.RemLenSplit = false
	return s
}

// tsharkInvalid lists frames tshark finds invalid: bad checksums,
// malformed packets, warnings other than TCP analysis. analysis lists the
// frames with TCP analysis flags (loss, retransmission, duplicate ACK).
func tsharkInvalid(t *testing.T, tshark, pcap, keylog string) (invalid, analysis []string) {
	t.Helper()
	base := append(tsharkArgs(t, pcap, keylog), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE")
	lines := func(filter string) []string {
		args := append(append([]string(nil), base...), "-Y", filter, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message")
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(string(runTshark(t, tshark, args...))), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	invalid = lines(`_ws.malformed || tcp.checksum.status != 1 || (ip && ip.checksum.status != 1) || (_ws.expert.severity >= warning && !tcp.analysis.flags)`)
	analysis = lines(`tcp.analysis.flags`)
	return invalid, analysis
}

// tsharkBadChecksums lists the frames of pcap whose TCP checksum, or IPv4
// header checksum, tshark does not find good (status 1): a wrong checksum,
// or none verified at all, as for a frame without TCP. The generator and
// the Recorder compute every checksum.
func tsharkBadChecksums(t *testing.T, tshark, pcap, keylog string) []string {
	t.Helper()
	args := append(tsharkArgs(t, pcap, keylog), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
		"-Y", `!(tcp.checksum.status == 1) || (ip && !(ip.checksum.status == 1))`,
		"-T", "fields", "-e", "frame.number", "-e", "tcp.checksum.status", "-e", "ip.checksum.status")
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(runTshark(t, tshark, args...))), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestOracleCaptures runs tshark on every committed capture: it must read
// it, find nothing invalid, and see the truth's MQTT packets, flow by
// flow — except where the truth names a tshark bug.
func TestOracleCaptures(t *testing.T) {
	tshark := requireTool(t, "tshark")
	t.Logf("%s", bytes.TrimSpace(runTshark(t, tshark, "--version")[:60]))
	for _, tf := range loadTruths(t) {
		t.Run(tf.Name, func(t *testing.T) {
			t.Parallel()
			if tf.KeyLog != "" {
				if _, err := os.Stat(filepath.Join(pcapsDir, tf.KeyLog)); err != nil {
					t.Errorf("key log file: %v", err)
				}
			}
			if tf.TsharkDiffers != "" {
				t.Logf("tshark is known to be wrong here: %s", tf.TsharkDiffers)
			}
			for _, p := range oracleProblems(t, tshark, filepath.Join(pcapsDir, tf.Name+".pcapng"), tf) {
				t.Error(p)
			}
		})
	}
}

// oracleProblems is what tshark finds wrong with pcap given its truth:
// invalid frames, TCP analysis flags (required in the loss capture,
// refused elsewhere), and MQTT packets that differ from the truth. Where
// the truth names a tshark bug, tshark must still find every checksum
// good and agree with the truth up to the packets it is known to mis-frame,
// and must actually be wrong (or the note is stale); its malformed frames
// are then its own.
func oracleProblems(t *testing.T, tshark, pcap string, tf truthFile) []string {
	t.Helper()
	var out []string
	// No key log file: tshark must decrypt TLS from our Decryption
	// Secrets Blocks alone.
	keylog := ""
	invalid, analysis := tsharkInvalid(t, tshark, pcap, keylog)
	if tf.Name == "loss" {
		if len(analysis) == 0 {
			out = append(out, "tshark finds no TCP analysis flags in the loss capture")
		}
	} else if len(analysis) > 0 {
		out = append(out, fmt.Sprintf("tshark TCP analysis flags: %q", analysis))
	}
	got := byFlow(t, tsharkMQTT(t, tshark, pcap, keylog), tf.Flows)
	if tf.TsharkDiffers != "" {
		if sameFlows(got, tf.Flows) {
			out = append(out, fmt.Sprintf("tshark now dissects %s correctly: drop the tsharkDiffers note", tf.Name))
		}
		if bad := tsharkBadChecksums(t, tshark, pcap, keylog); len(bad) > 0 {
			out = append(out, fmt.Sprintf("tshark finds checksums not good (frame, tcp.checksum.status, ip.checksum.status): %q", bad))
		}
		return append(out, diffBeforeMisframing(got, tf.Flows)...)
	}
	if len(invalid) > 0 {
		out = append(out, fmt.Sprintf("tshark finds invalid frames: %q", invalid))
	}
	return append(out, diffFlows("tshark", got, tf.Flows)...)
}

// TestOracleDamagedCaptures damages copies of committed captures the way a
// reviewer would and checks that the oracle notices: changed CONNECT
// fields and PUBLISH payloads (with TCP checksums recomputed, so that only
// the MQTT content differs) fail both tracer.DecodeFile's and tshark's
// comparison with the truth; in remlen-split, which tshark is known to
// mis-frame, a changed byte without a fixed checksum fails on tshark's
// checksum status, and changed packets before the mis-framing fail the
// comparison of that prefix.
func TestOracleDamagedCaptures(t *testing.T) {
	tshark := requireTool(t, "tshark")
	truths := map[string]truthFile{}
	for _, tf := range loadTruths(t) {
		truths[tf.Name] = tf
	}
	for _, tc := range []struct {
		name, capture string
		old, new      string
		fixChecksum   bool
		// wantTracer, wantTshark: a substring of some problem of each
		// ("" for wantTracer: tracer's view is not checked).
		wantTracer, wantTshark string
	}{
		{name: "publish-payload", capture: "loss", fixChecksum: true,
			old: `"registrationId":"gen-device-001","payload"`, new: `"registrationId":"gen-device-100","payload"`,
			wantTracer: "packet 7 is c2s PUBLISH", wantTshark: "packet 7 is c2s PUBLISH"},
		{name: "connect-clientid", capture: "loss", fixChecksum: true,
			old: "\x00\x0egen-device-001\x00\x61", new: "\x00\x0egen-device-100\x00\x61",
			wantTracer: "packet 1 is c2s CONNECT", wantTshark: "packet 1 is c2s CONNECT"},
		{name: "connect-username", capture: "loss", fixChecksum: true,
			old: "/registrations/gen-device-001/api-version", new: "/registrations/gen-device-100/api-version",
			wantTracer: "packet 1 is c2s CONNECT", wantTshark: "packet 1 is c2s CONNECT"},
		{name: "connect-keepalive", capture: "loss", fixChecksum: true,
			old: "\xc2\x00\xf0\x00\x0egen-device-001", new: "\xc2\x00\x3c\x00\x0egen-device-001",
			wantTracer: "packet 1 is c2s CONNECT", wantTshark: "packet 1 is c2s CONNECT"},
		{name: "bad-checksum", capture: "remlen-split", fixChecksum: false,
			old: "gen-hub.azure-devices.net", new: "gen-hub.azure-devices.org",
			wantTshark: "checksums not good"},
		{name: "before-misframing-c2s", capture: "remlen-split", fixChecksum: true,
			old: "\x00\x0egen-device-001\x00\x61", new: "\x00\x0egen-device-100\x00\x61",
			wantTracer: "packet 1 is c2s CONNECT", wantTshark: "c2s before the first segment cut inside a remaining length: packet 1 is c2s CONNECT"},
		{name: "before-misframing-s2c", capture: "remlen-split", fixChecksum: true,
			old: "\x90\x03\x00\x01\x01", new: "\x90\x03\x00\x01\x00",
			wantTracer: "packet 4 is s2c SUBACK", wantTshark: "s2c before the first segment cut inside a remaining length: packet 2 is s2c SUBACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tf, ok := truths[tc.capture]
			if !ok {
				t.Fatalf("no truth for %s", tc.capture)
			}
			pcap := damagedCopy(t, tc.capture, tc.old, tc.new, tc.fixChecksum)
			check := func(who, want string, problems []string) {
				t.Helper()
				for _, p := range problems {
					if strings.Contains(p, want) {
						t.Logf("%s notices: %s", who, p)
						return
					}
				}
				t.Errorf("%s: no problem mentions %q in the damaged copy; problems: %q", who, want, problems)
			}
			if tc.wantTracer != "" {
				check("tracer.DecodeFile vs truth", tc.wantTracer, truthProblems(t, pcap, tf))
			}
			check("tshark vs truth", tc.wantTshark, oracleProblems(t, tshark, pcap, tf))
		})
	}
}

// damagedCopy copies the committed capture name.pcapng to a temporary
// directory with its single occurrence of old replaced by new (of the same
// length, found nowhere in the original), and returns the copy's path.
// With fixChecksum the TCP checksum of the frame holding new is
// recomputed (Ethernet and IPv4 only, as the generator writes).
func damagedCopy(t *testing.T, name, old, new string, fixChecksum bool) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pcapsDir, name+".pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != len(new) || bytes.Count(b, []byte(old)) != 1 || bytes.Contains(b, []byte(new)) {
		t.Fatalf("%s: %q occurs %d times, %q %d times (want once and never, same length)", name, old, bytes.Count(b, []byte(old)), new, bytes.Count(b, []byte(new)))
	}
	i := bytes.Index(b, []byte(old))
	copy(b[i:], new)
	blocks, err := walkBlocks(b)
	if err != nil {
		t.Fatal(err)
	}
	frames := 0
	for _, bl := range blocks {
		if bl.typ != 6 {
			continue
		}
		data := bl.body[20 : 20+binary.LittleEndian.Uint32(bl.body[12:])] // aliases b
		if !bytes.Contains(data, []byte(new)) {
			continue
		}
		frames++
		if !fixChecksum {
			continue
		}
		if len(data) < 34 || binary.BigEndian.Uint16(data[12:]) != 0x0800 {
			t.Fatalf("%s: damaged frame is not Ethernet/IPv4", name)
		}
		ip := data[14:]
		seg := ip[int(ip[0]&0x0f)*4 : binary.BigEndian.Uint16(ip[2:])]
		seg[16], seg[17] = 0, 0
		pseudo := append(append([]byte(nil), ip[12:20]...), 0, 6, byte(len(seg)>>8), byte(len(seg)))
		binary.BigEndian.PutUint16(seg[16:], ^uint16(onesSum(onesSum(0, pseudo), seg)))
	}
	if frames != 1 {
		t.Fatalf("%s: %d frames hold the damaged bytes, want 1", name, frames)
	}
	out := filepath.Join(t.TempDir(), name+".pcapng")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// summarize is the comparable summary of p sent in direction dir.
func summarize(dir string, p packets.Packet) mqttSumm {
	s := mqttSumm{Dir: dir, Type: p.Type().String()}
	switch p := p.(type) {
	case *packets.Connack:
		s.Codes = []int{int(p.ReturnCode)}
	case *packets.Subscribe:
		s.PacketID = p.PacketID
		for _, sub := range p.Subscriptions {
			s.Codes = append(s.Codes, int(sub.QoS))
		}
	case *packets.Suback:
		s.PacketID = p.PacketID
		for _, c := range p.ReturnCodes {
			s.Codes = append(s.Codes, int(c))
		}
	case *packets.Publish:
		s.Topic, s.PacketID, s.QoS = string(p.Topic), p.PacketID, int(p.QoS)
		s.payloadSumm(p.Payload)
	case *packets.Puback:
		s.PacketID = p.PacketID
	case *packets.Connect:
		s.ClientID, s.Username = string(p.ClientID), string(p.Username)
		s.KeepAlive, s.ConnectFlags = int(p.KeepAlive), int(p.ConnectFlags())
	}
	return s
}

// decodeFlows is tracer.DecodeFile's view of pcap, grouped into the
// truth's flows. Conversations the truth does not have are errors.
func decodeFlows(t *testing.T, pcap string, flows []truthFlow) [][]mqttSumm {
	t.Helper()
	c, err := tracer.DecodeFile(pcap, tracer.Options{})
	if err != nil {
		t.Fatalf("DecodeFile(%s): %v", pcap, err)
	}
	out := make([][]mqttSumm, len(flows))
	for _, conv := range c.Conversations {
		i := slices.IndexFunc(flows, func(f truthFlow) bool {
			return f.Client == conv.Client.String() && f.Server == conv.Server.String()
		})
		if i < 0 {
			t.Errorf("DecodeFile: conversation %v → %v is not in the truth", conv.Client, conv.Server)
			continue
		}
		for _, p := range conv.Packets {
			dir := "c2s"
			if p.Dir != tracer.ClientToServer {
				dir = "s2c"
			}
			out[i] = append(out[i], summarize(dir, p.Packet))
		}
	}
	return out
}

// plainOnly keeps the flows that tracer can decode without TLS secrets.
// TODO(tracer): drop once Options.KeyLog can be loaded from a key log file
// (tlstrace); tshark already checks the TLS flows against the same truth.
func plainOnly(got [][]mqttSumm, flows []truthFlow) ([][]mqttSumm, []truthFlow) {
	var g [][]mqttSumm
	var f []truthFlow
	for i, fl := range flows {
		if fl.Layer == "plain" {
			g, f = append(g, got[i]), append(f, fl)
		}
	}
	return g, f
}

// TestDecodeFileMatchesTruth checks tracer.DecodeFile against the
// generator's ground truth for every committed capture, including those
// tshark gets wrong.
func TestDecodeFileMatchesTruth(t *testing.T) {
	for _, tf := range loadTruths(t) {
		t.Run(tf.Name, func(t *testing.T) {
			for _, p := range truthProblems(t, filepath.Join(pcapsDir, tf.Name+".pcapng"), tf) {
				t.Error(p)
			}
		})
	}
}

// truthProblems lists where tracer.DecodeFile's plaintext flows of pcap
// differ from the truth.
func truthProblems(t *testing.T, pcap string, tf truthFile) []string {
	t.Helper()
	got, flows := plainOnly(decodeFlows(t, pcap, tf.Flows), tf.Flows)
	if len(flows) == 0 {
		t.Fatalf("%s has no plaintext flow to compare", tf.Name)
	}
	return diffFlows("tracer.DecodeFile", got, flows)
}

// scriptStep is one write of a scripted exchange: who sends which packets.
type scriptStep struct {
	from tracer.Side
	ps   []packets.Packet
}

// dialScriptTLS starts a loopback TLS server that plays the server side of
// steps (reading the client's packets, writing its own), and dials it: it
// returns the raw client connection (deadline set), the client TLS config
// trusting the server (with kl as its key log writer) and the server's
// result. Both ends are bounded by 10 s deadlines.
func dialScriptTLS(t *testing.T, steps []scriptStep, kl io.Writer) (net.Conn, *tls.Config, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cert := testCert(t)
	errc := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{cert}})
		r := packets.NewReader(s, packets.DecodeOptions{})
		for _, st := range steps {
			for _, p := range st.ps {
				if st.from == tracer.Server {
					if err := packets.WritePacket(s, p); err != nil {
						errc <- err
						return
					}
				} else if _, err := r.ReadPacket(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	raw, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	pool.AddCert(leaf)
	return raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", KeyLogWriter: kl}, errc
}

// mqttScript is a small MQTT exchange for live recordings: a big PUBLISH
// (cut at the MSS), two MQTT packets in one write, QoS 1 both ways.
func mqttScript() (steps []scriptStep, want []mqttSumm) {
	big := make([]byte, 4000)
	for i := range big {
		big[i] = byte('A' + i%26)
	}
	add := func(from tracer.Side, ps ...packets.Packet) {
		steps = append(steps, scriptStep{from, ps})
		for _, p := range ps {
			dir := "c2s"
			if from == tracer.Server {
				dir = "s2c"
			}
			want = append(want, summarize(dir, p))
		}
	}
	add(tracer.Client, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 30, ClientID: []byte("live-1")})
	add(tracer.Server, &packets.Connack{})
	add(tracer.Client, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("$dps/registrations/res/#"), QoS: 1}}})
	add(tracer.Server, &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}})
	add(tracer.Client, &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"), Payload: big})
	add(tracer.Server, &packets.Puback{PacketID: 2}, &packets.Publish{QoS: 1, PacketID: 1, Topic: []byte("$dps/registrations/res/202/?$rid=1&retry-after=3"), Payload: []byte("{}")})
	add(tracer.Client, &packets.Puback{PacketID: 1}, &packets.Disconnect{})
	return steps, want
}

// TestOracleLiveTLS records a live MQTT exchange over loopback TLS at both
// layers (endpoints derived from the sockets) and checks tshark's view of
// both flows, with the key log file, against the script.
func TestOracleLiveTLS(t *testing.T) {
	tshark := requireTool(t, "tshark")
	t.Parallel()
	dir := t.TempDir()
	pcap, keylog := filepath.Join(dir, "live.pcapng"), filepath.Join(dir, "live.keylog")
	rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{KeyLogPath: keylog})
	if err != nil {
		t.Fatal(err)
	}
	steps, want := mqttScript()
	raw, tcfg, errc := dialScriptTLS(t, steps, rec.KeyLogWriter())
	local := raw.LocalAddr().(*net.TCPAddr).AddrPort()
	tc := tls.Client(rec.Wrap(raw, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.TLS}), tcfg)
	c := rec.Wrap(tc, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.Plain})
	r := packets.NewReader(c, packets.DecodeOptions{})
	for _, st := range steps {
		if st.from == tracer.Client {
			var b []byte
			for _, p := range st.ps {
				b, _ = p.Append(b)
			}
			if _, err := c.Write(b); err != nil { // several packets in one write
				t.Fatal(err)
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
	c.Close()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	flows := []truthFlow{
		{Client: local.String(), Server: "127.0.0.1:8883", Layer: "tls", Packets: want},
		{Client: local.String(), Server: "127.0.0.1:1883", Layer: "plain", Packets: want},
	}
	invalid, analysis := tsharkInvalid(t, tshark, pcap, keylog)
	if len(invalid)+len(analysis) > 0 {
		t.Errorf("tshark finds invalid frames %q, analysis flags %q", invalid, analysis)
	}
	compareFlows(t, "tshark", byFlow(t, tsharkMQTT(t, tshark, pcap, keylog), flows), flows)
	// The tracer decrypts the TLS flow with the capture's own DSBs only.
	compareFlows(t, "tracer.DecodeFile", decodeFlows(t, pcap, flows), flows)
}

// TestOracleIPv6 checks tshark's view of a synthetic IPv6 flow.
func TestOracleIPv6(t *testing.T) {
	tshark := requireTool(t, "tshark")
	t.Parallel()
	pcap := filepath.Join(t.TempDir(), "v6.pcapng")
	rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{Now: fakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	cl, sv := netip.MustParseAddrPort("[2001:db8::10]:50000"), netip.MustParseAddrPort("[2001:db8::20]:1883")
	f, err := rec.Flow(cl, sv, tracer.FlowOptions{Comment: "IPv6"})
	if err != nil {
		t.Fatal(err)
	}
	steps, want := mqttScript()
	for _, st := range steps {
		var b []byte
		for _, p := range st.ps {
			b, _ = p.Append(b)
		}
		if err := f.Send(st.from, b, tracer.SegOpts{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(f.Close(), rec.Close()); err != nil {
		t.Fatal(err)
	}
	flows := []truthFlow{{Client: cl.String(), Server: sv.String(), Layer: "plain", Packets: want}}
	invalid, analysis := tsharkInvalid(t, tshark, pcap, "")
	if len(invalid)+len(analysis) > 0 {
		t.Errorf("tshark finds invalid frames %q, analysis flags %q", invalid, analysis)
	}
	compareFlows(t, "tshark", byFlow(t, tsharkMQTT(t, tshark, pcap, ""), flows), flows)
	compareFlows(t, "tracer.DecodeFile", decodeFlows(t, pcap, flows), flows)
}

// TestOracleEmulator records the reference device client provisioning
// against the reference emulator, over MQTT/TLS and over WebSocket/TLS,
// through the transport's WrapRaw and WrapPlain hooks, and checks that
// tshark (decrypting from the DSBs) sees on both layers exactly the MQTT
// packets tracer.DecodeFile reads from the plaintext layer.
func TestOracleEmulator(t *testing.T) {
	tshark := requireTool(t, "tshark")
	t.Parallel()
	for _, scheme := range []string{"mqtts", "wss"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			e := emulatortest.Start(t, emulatortest.Options{})
			start := time.Now()
			pcap := filepath.Join(t.TempDir(), scheme+".pcapng")
			rec, err := tracer.CreateRecorder(pcap, tracer.RecorderOptions{Comment: "emulator " + scheme})
			if err != nil {
				t.Fatal(err)
			}
			addr, layer := "mqtts://"+e.MQTTAddr, tracer.TLS
			if scheme == "wss" {
				addr, layer = e.WSURL, tracer.WebSocketTLS
			}
			target, err := transport.ParseTarget(addr)
			if err != nil {
				t.Fatal(err)
			}
			tlsConf := e.ClientTLSConfig(nil).Clone()
			tlsConf.KeyLogWriter = rec.KeyLogWriter()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := device.Provision(ctx, device.Config{
				Target: target,
				Dial: transport.DialOptions{
					TLSConfig: tlsConf,
					WrapRaw: func(c net.Conn) net.Conn {
						return rec.Wrap(c, tracer.ConnOptions{Side: tracer.Client, Layer: layer, Comment: "device " + scheme})
					},
					WrapPlain: func(c net.Conn) net.Conn {
						return rec.Wrap(c, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.Plain})
					},
				},
				IDScope:        e.IDScope,
				RegistrationID: emulatortest.SymDeviceID,
				SymmetricKey:   e.SymmetricKey(emulatortest.SymDeviceID),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("provisioned in %v", time.Since(start))
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			if res.Status != "assigned" {
				t.Fatalf("provisioning status %q, want assigned", res.Status)
			}
			c, err := tracer.DecodeFile(pcap, tracer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var plain *tracer.Conversation
			for _, conv := range c.Conversations {
				if conv.Server.Port() == 1883 {
					plain = conv
				}
			}
			if plain == nil || len(plain.Packets) < 6 {
				t.Fatalf("DecodeFile found no plaintext conversation with a whole exchange")
			}
			var want []mqttSumm
			for _, p := range plain.Packets {
				dir := "c2s"
				if p.Dir != tracer.ClientToServer {
					dir = "s2c"
				}
				want = append(want, summarize(dir, p.Packet))
			}
			if !slices.ContainsFunc(want, func(s mqttSumm) bool {
				return s.Dir == "s2c" && strings.HasPrefix(s.Topic, "$dps/registrations/res/200/")
			}) {
				t.Errorf("plaintext packets %v lack the 200 answer", want)
			}
			flows := []truthFlow{
				{Client: plain.Client.String(), Server: netip.AddrPortFrom(plain.Server.Addr(), layer.Port()).String(), Layer: layer.String(), Packets: want},
				{Client: plain.Client.String(), Server: plain.Server.String(), Layer: "plain", Packets: want},
			}
			invalid, analysis := tsharkInvalid(t, tshark, pcap, "")
			if len(invalid)+len(analysis) > 0 {
				t.Errorf("tshark finds invalid frames %q, analysis flags %q", invalid, analysis)
			}
			compareFlows(t, "tshark", byFlow(t, tsharkMQTT(t, tshark, pcap, ""), flows), flows)
		})
	}
}
