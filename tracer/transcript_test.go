package tracer

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"golang.org/x/tools/txtar"

	"github.com/dps-conform/dps-conform/packets"
)

func init() {
	// Other test files of the package may register -update too.
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files in testdata from the actual output")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// goldenScenarios build the captures of the transcript golden files
// (testdata/transcript/NAME.txtar).
var goldenScenarios = map[string]func(t *testing.T, g *genCapture){
	// A complete DPS registration: register, 202, an early poll, a poll on
	// time, 200 assigned.
	"dps-register": func(t *testing.T, g *genCapture) {
		c2s, s2c := dpsExchange(t)
		f := g.flow("10.1.0.5:51000", "10.1.0.1:8883")
		f.isn = [2]uint32{7, 9}
		f.handshake()
		for i := range c2s {
			f.send(ClientToServer, enc(t, c2s[i]))
			f.send(ServerToClient, enc(t, s2c[i]))
		}
		f.send(ClientToServer, enc(t, &packets.Puback{PacketID: 2}))
		g.now = g.now.Add(1500 * time.Millisecond)
		f.send(ClientToServer, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abcd")}))
		f.send(ServerToClient, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/res/202/?$rid=2&retry-after=3"), Payload: []byte(`{"operationId":"4.abcd","status":"assigning"}`)}))
		g.now = g.now.Add(3010 * time.Millisecond)
		f.send(ClientToServer, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId=4.abcd")}))
		f.send(ServerToClient, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/res/200/?$rid=3"), Payload: []byte(`{"operationId":"4.abcd","status":"assigned","registrationState":{"registrationId":"reg-1","assignedHub":"hub.azure-devices.net","deviceId":"reg-1","status":"assigned"}}`)}))
		f.send(ClientToServer, enc(t, &packets.Disconnect{}))
		f.fin(ClientToServer)
		f.fin(ServerToClient)
	},
	// Rule violations are reported, not fatal: a CONNECT with the reserved
	// flag set, a malformed packet skipped by its framed length, a gap.
	"violations": func(t *testing.T, g *genCapture) {
		f := g.flow("[2001:db8::5]:40000", "[2001:db8::1]:1883")
		f.handshake()
		f.send(ClientToServer, []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x03, 0, 30, 0, 1, 'x'})
		f.send(ServerToClient, enc(t, &packets.Connack{}))
		// PUBACK with a remaining length of 3: malformed.
		f.send(ClientToServer, []byte{0x40, 0x03, 0, 1, 0})
		f.send(ClientToServer, enc(t, &packets.Pingreq{}))
		f.skip(ClientToServer, 7)
		f.send(ClientToServer, enc(t, &packets.Pingreq{}))
		f.send(ServerToClient, enc(t, &packets.Pingresp{}))
	},
	// A capture started mid-connection: the first client bytes are the
	// tail of a packet and are skipped up to a plausible fixed header.
	"mid-stream": func(t *testing.T, g *genCapture) {
		f := g.flow("192.0.2.7:33333", "192.0.2.1:1883")
		f.next = [2]uint32{1, 1}
		pub := enc(t, &packets.Publish{QoS: 1, PacketID: 9, Topic: []byte("$dps/registrations/PUT/iotdps-register/?$rid=7"), Payload: []byte(`{"registrationId":"r"}`)})
		f.send(ClientToServer, append(pub[10:], enc(t, &packets.Pingreq{})...))
		f.send(ServerToClient, enc(t, &packets.Puback{PacketID: 9}, &packets.Pingresp{}))
		f.send(ClientToServer, pub)
	},
	// MQTT 5 is decoded with paho.golang and flagged.
	"mqtt5": func(t *testing.T, g *genCapture) {
		f := g.flow("10.9.0.2:50001", "10.9.0.1:1883")
		f.handshake()
		var b bytes.Buffer
		cp := pahopackets.NewControlPacket(pahopackets.CONNECT)
		cn := cp.Content.(*pahopackets.Connect)
		cn.ProtocolName, cn.ProtocolVersion, cn.ClientID, cn.CleanStart, cn.KeepAlive = "MQTT", 5, "v5-client", true, 30
		if _, err := cp.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		f.send(ClientToServer, b.Bytes())
		b.Reset()
		ca := pahopackets.NewControlPacket(pahopackets.CONNACK)
		if _, err := ca.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		f.send(ServerToClient, b.Bytes())
	},
}

func TestTranscriptGolden(t *testing.T) {
	for name, build := range goldenScenarios {
		t.Run(name, func(t *testing.T) {
			g := newGen(t, linkEthernet)
			build(t, g)
			capt, err := Decode(bytes.NewReader(g.pcapng()), Options{})
			if err != nil {
				t.Fatal(err)
			}
			var text, js, secret bytes.Buffer
			if err := WriteText(&text, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, capt, TranscriptOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := WriteText(&secret, capt, TranscriptOptions{ShowSecrets: true}); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(text.Bytes(), []byte("c2lnbmF0dXJl")) || bytes.Contains(js.Bytes(), []byte("c2lnbmF0dXJl")) {
				t.Errorf("signature not redacted:\n%s", text.String())
			}
			if name == "dps-register" && !bytes.Contains(secret.Bytes(), []byte("sig=c2lnbmF0dXJl")) {
				t.Errorf("--show-secrets did not show the signature:\n%s", secret.String())
			}
			path := filepath.Join("testdata", "transcript", name+".txtar")
			if updating() {
				ar := &txtar.Archive{
					Comment: []byte("Golden transcript of the " + name + " scenario (transcript_test.go).\nRegenerate with: go test ./tracer -run TestTranscriptGolden -update\n"),
					Files:   []txtar.File{{Name: "text", Data: text.Bytes()}, {Name: "json", Data: js.Bytes()}},
				}
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			ar, err := txtar.ParseFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			for _, f := range ar.Files {
				got := text.Bytes()
				if f.Name == "json" {
					got = js.Bytes()
				}
				if !bytes.Equal(got, f.Data) {
					t.Errorf("%s: %s differs from the golden file; got:\n%s", path, f.Name, got)
				}
			}
		})
	}
}
