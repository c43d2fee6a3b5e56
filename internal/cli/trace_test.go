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
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dps-conform/dps-conform/internal/cli"
	"github.com/dps-conform/dps-conform/internal/pcapngtest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// TestTraceScripts runs testdata/trace/*.txtar with capture files generated
// into the work directory by writeTraceCaptures (binary files do not belong
// in txtar archives):
//
//	dps.pcapng        a DPS registration over plaintext MQTT on port 1883
//	violation.pcapng  a CONNECT with the reserved flag set, on port 1884
//	badbom.pcapng     a section header with a wrong byte-order magic
//	badlen.pcapng     a block whose total length is not a multiple of 4
//	short.pcap        a pcap file header cut after 10 bytes
//	truncated.pcap    dps.pcapng's first frames as pcap, last record cut short
//	unknownport.pcapng  MQTT without a CONNECT on port 7000 (not recognised)
//	tlscut.pcapng     a connection to port 8883 that carries no data
//	corruptlen.pcapng dps.pcapng with its fourth block's length corrupted
//	midstream.pcapng  dps.pcapng's exchange captured from the middle of the
//	                  CONNECT on (no handshake, the CONNECT's first segment)
//	midsub.pcapng     dps.pcapng's exchange captured from the SUBSCRIBE on
//	midpub.pcapng     dps.pcapng's exchange captured from the register PUBLISH on
//	midconnect.pcapng dps.pcapng's exchange without the TCP handshake
//	lost.pcapng       dps.pcapng without the frame of the SUBSCRIBE (the
//	                  server acknowledged it; the capture lost it)
//	lostbad.pcapng    lost.pcapng with a CONNECT breaking MQTT-3.1.2-3
func TestTraceScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/trace",
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			return writeTraceCaptures(env.WorkDir)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitcode,
		},
	})
}

func encodeAll(ps ...packets.Packet) []byte {
	var b []byte
	for _, p := range ps {
		var err error
		if b, err = p.Append(b); err != nil {
			panic(err)
		}
	}
	return b
}

// recordFlow writes a pcapng with one flow; send gets the flow to fill.
func recordFlow(path string, client, server string, send func(f *tracer.Flow) error) error {
	return recordFlowOpts(path, client, server, tracer.FlowOptions{}, send)
}

// recordFlowOpts is recordFlow with the flow started with o.
func recordFlowOpts(path string, client, server string, o tracer.FlowOptions, send func(f *tracer.Flow) error) error {
	var buf bytes.Buffer
	ts := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	r, err := tracer.NewRecorder(&buf, tracer.RecorderOptions{Now: func() time.Time {
		ts = ts.Add(10 * time.Millisecond)
		return ts
	}})
	if err != nil {
		return err
	}
	f, err := r.Flow(netip.MustParseAddrPort(client), netip.MustParseAddrPort(server), o)
	if err != nil {
		return err
	}
	if err := send(f); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := r.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func writeTraceCaptures(dir string) error {
	connect := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: []byte("reg-1"),
		Username: []byte("0ne00000001/registrations/reg-1/api-version=2019-03-31"),
		Password: []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2freg-1&sig=c2VjcmV0LXNpZw%3d%3d&se=1700000000&skn=registration")}
	steps := []struct {
		side tracer.Side
		data []byte
	}{
		{tracer.Client, encodeAll(connect)},
		{tracer.Server, encodeAll(&packets.Connack{})},
		// QoS 0 granted as asked, so answers at QoS 0 (Part A §6, §9), as
		// FreeRTOS subscribes.
		{tracer.Client, encodeAll(&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("$dps/registrations/res/#"), QoS: 0}}})},
		{tracer.Server, encodeAll(&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{0}})},
		{tracer.Client, encodeAll(&packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=1"), Payload: []byte(`{"registrationId":"reg-1"}`)})},
		{tracer.Server, encodeAll(&packets.Puback{PacketID: 2}, &packets.Publish{Topic: []byte("$dps/registrations/res/202/?$rid=1&retry-after=3"), Payload: []byte(`{"operationId":"4.abcd","status":"assigning"}`)})},
		{tracer.Client, encodeAll(&packets.Publish{Topic: []byte("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abcd")})},
	}
	dpsPath := filepath.Join(dir, "dps.pcapng")
	if err := recordFlow(dpsPath, "192.0.2.10:50123", "192.0.2.1:1883", func(f *tracer.Flow) error {
		for _, s := range steps {
			if err := f.Send(s.side, s.data, tracer.SegOpts{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := recordFlow(filepath.Join(dir, "violation.pcapng"), "192.0.2.10:50124", "192.0.2.1:1884", func(f *tracer.Flow) error {
		return f.Send(tracer.Client, []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 30, 0, 1, 'x'}, tracer.SegOpts{})
	}); err != nil {
		return err
	}
	// midstream.pcapng: the same exchange, captured from the CONNECT's
	// second segment on: the tracer skips its tail to resynchronise.
	if err := recordFlowOpts(filepath.Join(dir, "midstream.pcapng"), "192.0.2.10:50127", "192.0.2.1:1883", tracer.FlowOptions{MidStream: true}, func(f *tracer.Flow) error {
		for i, s := range steps {
			if i == 0 {
				s.data = s.data[40:]
			}
			if err := f.Send(s.side, s.data, tracer.SegOpts{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	// midsub.pcapng, midpub.pcapng: the same exchange, captured from the
	// SUBSCRIBE or the register PUBLISH on, at a packet boundary (no byte
	// skipped, but the CONNECT never seen); midconnect.pcapng: all of it
	// but the TCP handshake.
	for _, m := range []struct {
		name, client string
		from         int
	}{{"midsub", "192.0.2.10:50129", 2}, {"midpub", "192.0.2.10:50130", 4}, {"midconnect", "192.0.2.10:50131", 0}} {
		if err := recordFlowOpts(filepath.Join(dir, m.name+".pcapng"), m.client, "192.0.2.1:1883", tracer.FlowOptions{MidStream: true}, func(f *tracer.Flow) error {
			for _, s := range steps[m.from:] {
				if err := f.Send(s.side, s.data, tracer.SegOpts{}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	// lost.pcapng: dps.pcapng without frame 8, the SUBSCRIBE, which the
	// server's ACK (frame 9) acknowledges. lostbad.pcapng: the same loss
	// in an exchange whose CONNECT has the reserved flag set.
	if err := dropFrame(dpsPath, filepath.Join(dir, "lost.pcapng"), 8); err != nil {
		return err
	}
	badPath := filepath.Join(dir, "bad.pcapng")
	if err := recordFlow(badPath, "192.0.2.10:50128", "192.0.2.1:1883", func(f *tracer.Flow) error {
		for i, s := range steps {
			if i == 0 {
				s.data = bytes.Clone(s.data)
				s.data[10] |= 0x01 // connect flags (after a 2-byte remaining length): reserved bit
			}
			if err := f.Send(s.side, s.data, tracer.SegOpts{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := dropFrame(badPath, filepath.Join(dir, "lostbad.pcapng"), 8); err != nil {
		return err
	}
	// unknownport.pcapng: MQTT on port 7000 that does not start with a
	// CONNECT, so it is not sniffed.
	if err := recordFlow(filepath.Join(dir, "unknownport.pcapng"), "192.0.2.10:50125", "192.0.2.1:7000", func(f *tracer.Flow) error {
		return f.Send(tracer.Client, encodeAll(&packets.Publish{Topic: []byte("a/b"), Payload: []byte("x")}), tracer.SegOpts{})
	}); err != nil {
		return err
	}
	// tlscut.pcapng: a connection to 8883 whose capture ends before the
	// ClientHello (the TCP handshake and FINs only).
	if err := recordFlow(filepath.Join(dir, "tlscut.pcapng"), "192.0.2.10:50126", "192.0.2.1:8883", func(f *tracer.Flow) error {
		return nil
	}); err != nil {
		return err
	}
	// corruptlen.pcapng: dps.pcapng with the length field of its fourth
	// block (the second frame) corrupted.
	ng, err := os.ReadFile(dpsPath)
	if err != nil {
		return err
	}
	off := 0
	for range 3 {
		off += int(binary.LittleEndian.Uint32(ng[off+4:]))
	}
	binary.LittleEndian.PutUint32(ng[off+4:], 16711772)
	if err := os.WriteFile(filepath.Join(dir, "corruptlen.pcapng"), ng, 0o644); err != nil {
		return err
	}
	badbom := []byte{0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 'A', 'B', 'C', 'D'}
	badlen := []byte{0x0a, 0x0d, 0x0d, 0x0a, 30, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0}
	short := []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0}
	for name, b := range map[string][]byte{"badbom.pcapng": badbom, "badlen.pcapng": badlen, "short.pcap": short} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	// truncated.pcap: a pcap of three Ethernet frames (SYN, SYN-ACK, ACK
	// of any flow will do: the header parse is what matters) whose last
	// record is cut short.
	var p bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], 1)
	p.Write(h)
	frame := make([]byte, 60)
	for i := 0; i < 3; i++ {
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r[0:], 1700000000)
		binary.LittleEndian.PutUint32(r[8:], 60)
		binary.LittleEndian.PutUint32(r[12:], 60)
		p.Write(r)
		if i < 2 {
			p.Write(frame)
		} else {
			p.Write(frame[:25])
		}
	}
	return os.WriteFile(filepath.Join(dir, "truncated.pcap"), p.Bytes(), 0o644)
}

// dropFrame writes to dst the pcapng src without its frame-th Enhanced
// Packet Block (from 1): a segment the capture lost.
func dropFrame(src, dst string, frame int) error {
	orig, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	out, err := pcapngtest.EditBlocks(orig, func(typ uint32, epbs int, b []byte) []byte {
		if typ == 6 && epbs == frame {
			return nil
		}
		return b
	})
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// TestReadmeTraceSample keeps the transcript shown in README.md ("Reading a
// capture") what trace prints for the shared capture it names.
func TestReadmeTraceSample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), []string{"trace", "../../testdata/pcaps/register-tls.pcapng", "--keylog", "../../testdata/pcaps/register-tls.keylog"}, &out, &errb)
	if code != 0 {
		t.Fatalf("trace: exit %d: %s", code, errb.String())
	}
	first, _, _ := strings.Cut(out.String(), "\nconversation 2 ")
	if !bytes.Contains(readme, []byte("```\n"+strings.TrimSpace(first)+"\n```")) {
		t.Errorf("README.md's trace sample is not what trace prints now; paste this:\n%s", first)
	}
}
