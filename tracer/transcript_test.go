package tracer

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"golang.org/x/tools/txtar"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
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
		// The SAS signature must be redacted in MQTT 5 CONNECTs too.
		cn.UsernameFlag, cn.Username = true, "0ne00000001/registrations/v5-client/api-version=2019-03-31"
		cn.PasswordFlag, cn.Password = true, []byte("SharedAccessSignature sr=0ne00000001%2fregistrations%2fv5-client&sig=c2VjcmV0LXNpZw%3d%3d&se=1700000000&skn=registration")
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

// TestJSONFields checks what the JSON transcript must not lose: every
// SUBSCRIBE filter with its QoS, UNSUBSCRIBE topics, a conversation object
// for a TLS flow that could not be decrypted, and fixed-precision times.
func TestJSONFields(t *testing.T) {
	g := newGen(t, linkEthernet)
	f := g.flow("10.0.0.1:50000", "10.0.0.2:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("c")}))
	f.send(ClientToServer, enc(t, &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte("a/#"), QoS: 1}, {Filter: []byte("b/+"), QoS: 0}}}))
	f.send(ClientToServer, enc(t, &packets.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("a/#"), []byte("b/+")}}))
	capt, err := Decode(bytes.NewReader(g.pcapng()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	capt.Conversations = append(capt.Conversations, &Conversation{ID: 2, Transport: "mqtts",
		Client: netip.MustParseAddrPort("10.0.0.1:50001"), Server: netip.MustParseAddrPort("10.0.0.2:8883"),
		TLS: &tlstrace.Facts{ServerHello: true, Version: 0x0304}})
	capt.Conversations = append(capt.Conversations, &Conversation{ID: 3, Transport: "mqtts",
		Client: netip.MustParseAddrPort("10.0.0.1:50002"), Server: netip.MustParseAddrPort("10.0.0.2:8883"),
		TLS: &tlstrace.Facts{ServerHello: true, Version: 0x0303, Alerts: []tlstrace.Alert{{Dir: tlstrace.ClientToServer, Level: 2, Description: 42}}}})
	var js bytes.Buffer
	if err := WriteJSON(&js, capt, TranscriptOptions{}); err != nil {
		t.Fatal(err)
	}
	out := js.String()
	for _, want := range []string{
		`"type":"SUBSCRIBE","topic":"a/#","qos":1,"filters":[{"topic":"a/#","qos":1},{"topic":"b/+","qos":0}]`,
		`"type":"UNSUBSCRIBE","topic":"a/#","topics":["a/#","b/+"],"packetId":2`,
		`{"ts":"0001-01-01T00:00:00.000000Z","flow":2,"type":"conversation","client":"10.0.0.1:50001","server":"10.0.0.2:8883","transport":"mqtts","tls":{"version":"TLS 1.3","keyLogFound":false,"decrypted":false},"packets":0}`,
		`"tls":{"version":"TLS 1.2","keyLogFound":false,"decrypted":false,"alerts":["client fatal bad_certificate"]}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("JSON lacks %s\n%s", want, out)
		}
	}
	ts := regexp.MustCompile(`"ts":"[^"]*"`).FindAllString(out, -1)
	for _, s := range ts {
		if !regexp.MustCompile(`^"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"$`).MatchString(s) {
			t.Errorf("timestamp %s is not RFC 3339 with 6 fractional digits", s)
		}
	}
}

// TestTextDPSErrors checks the text transcript of a failed registration:
// the error body of a 4xx answer, and the "?rid=" typo flagged as a DPS
// finding that --check does not count.
func TestTextDPSErrors(t *testing.T) {
	g := newGen(t, linkEthernet)
	f := g.flow("10.0.0.1:50000", "10.0.0.2:1883")
	f.handshake()
	f.send(ClientToServer, enc(t, &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, ClientID: []byte("c")}))
	f.send(ClientToServer, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/PUT/iotdps-register/?rid=1"), Payload: []byte("{}")}))
	f.send(ServerToClient, enc(t, &packets.Publish{Topic: []byte("$dps/registrations/res/401/?$rid=1"),
		Payload: []byte(`{"errorCode":401002,"trackingId":"t","message":"Invalid certificate.","timestampUtc":"x"}`)}))
	capt, err := Decode(bytes.NewReader(g.pcapng()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := WriteText(&text, capt, TranscriptOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		` PUBLISH 401 $rid=1 errorCode=401002 message="Invalid certificate." qos=0`,
		"\n  ! [DPS] request topic has \"rid\" without \"$\": DPS expects \"?$rid=\" (DPS-level finding, not counted by --check)\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if n := CountViolations(capt); n != 0 {
		t.Errorf("CountViolations = %d, want 0 (DPS findings are not decode violations)", n)
	}
}

// TestTLSSummary checks the conversation line of a TLS flow: the alerts
// with their sender, and "encrypted(no keys)" only when protected records
// were seen that no key decrypted.
func TestTLSSummary(t *testing.T) {
	bad := tlstrace.Alert{Dir: tlstrace.ClientToServer, Level: 2, Description: 42}
	for _, tc := range []struct {
		name string
		f    tlstrace.Facts
		want string
	}{
		{"handshake refused by the client", tlstrace.Facts{Version: 0x0303, Alerts: []tlstrace.Alert{bad}},
			"tls TLS1.2 alert(client fatal bad_certificate) no-encrypted-records"},
		{"records without keys", tlstrace.Facts{Version: 0x0303, Protected: true, Problems: []tlstrace.Problem{{Msg: "no key log entry", Undecrypted: true}}},
			"tls TLS1.2 encrypted(no keys)"},
		{"a peer's error is not missing keys", tlstrace.Facts{Problems: []tlstrace.Problem{{Msg: "record too long"}}},
			"tls no-encrypted-records"},
		{"protected records, no problem listed (no key log at all)", tlstrace.Facts{Protected: true},
			"tls encrypted(no keys)"},
		{"decrypted, closed by the server", tlstrace.Facts{Decrypted: true, Alerts: []tlstrace.Alert{{Dir: tlstrace.ServerToClient, Level: 1}}},
			"tls alert(server warning close_notify) decrypted"},
		{"many alerts", tlstrace.Facts{Alerts: []tlstrace.Alert{bad, bad, bad, bad, bad, bad}},
			"tls alert(client fatal bad_certificate) alert(client fatal bad_certificate) alert(client fatal bad_certificate) alert(client fatal bad_certificate) +2 alerts no-encrypted-records"},
	} {
		if got := tlsSummary(&tc.f); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
