package interop

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/internal/testproc"
	"github.com/dps-conform/dps-conform/reports"
	"github.com/dps-conform/dps-conform/transport"
)

// mosquittoTLSFiles issues a server certificate for 127.0.0.1 from a fresh
// CA and writes it where mosquitto can read it; it returns the files and the
// CA pool.
func mosquittoTLSFiles(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	ca, err := transport.NewCA("interop test CA", transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"}, transport.ECDSAP256, time.Now().Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = writeClientPEM(t, srv)
	// mosquitto started as root drops to the mosquitto user before it
	// reads the certificate: make the files (test-only keys) and the
	// temporary directories above them readable.
	dir := filepath.Dir(certFile)
	for _, f := range []string{certFile, keyFile, dir, filepath.Dir(dir)} {
		mode := os.FileMode(0o644)
		if f == dir || f == filepath.Dir(dir) {
			mode = 0o755
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return certFile, keyFile, roots
}

// mosquittoVerdicts is what the service suite says of mosquitto 2.0 with its
// default TLS configuration: a general-purpose MQTT 3.1.1 broker that is not
// DPS. A key is a spec's text; specs not listed must pass. Each failure is
// the suite catching a documented DPS behaviour a plain broker lacks.
var mosquittoVerdicts = map[string]string{
	"CONNECT accepts CleanSession=0 with session-present 0 and carries no state":                                                                     "skipped",
	"CONNECT accepts and assigns a registration id holding '.', '_', ':' and letters of both cases":                                                  "failed",
	"CONNECT refuses CleanSession=0 with a refusal CONNACK (0x02 expected) and a close, or a close alone":                                            "failed",
	"CONNECT refuses a ClientId that differs from the username's registration id with CONNACK 0x02 and a close":                                      "failed",
	"CONNECT refuses a genuine MQTT 5 CONNECT (built with paho.golang) with CONNACK 0x01 and a close":                                                "failed",
	"CONNECT refuses a username that is an IoT Hub username with CONNACK 0x04 and a close":                                                           "failed",
	"CONNECT refuses a username with 'registration' for 'registrations' with CONNACK 0x04 and a close":                                               "failed",
	"CONNECT refuses a username with an extra path segment with CONNACK 0x04 and a close":                                                            "failed",
	"CONNECT refuses a username without api-version with CONNACK 0x04 and a close":                                                                   "failed",
	"MQTT over WebSocket provisions over WSS on /$iothub/websocket and selects the mqtt subprotocol":                                                 "skipped",
	"MQTT over WebSocket provisions over WSS on the path / (.NET)":                                                                                   "skipped",
	"MQTT over WebSocket provisions over WSS on the path /mqtt (Java)":                                                                               "skipped",
	"MQTT over WebSocket provisions over WSS with the subprotocol MQTT (C)":                                                                          "skipped",
	"MQTT over WebSocket provisions over WSS with its packets cut across frames: CONNECT one field per frame, packets coalesced, headers cut":        "skipped",
	"SUBSCRIBE delivers answers at QoS 1 after granting a QoS 2 subscription":                                                                        "failed",
	"SUBSCRIBE grants QoS 1 to a SUBSCRIBE asking for QoS 2":                                                                                         "failed",
	"SUBSCRIBE refuses the filter \"#\"":                                                                                                             "failed",
	"SUBSCRIBE refuses the filter \"$dps/#\"":                                                                                                        "failed",
	"SUBSCRIBE refuses the filter \"$dps/registrations/res/+\"":                                                                                      "failed",
	"SUBSCRIBE refuses the filter \"$dps/registrations/res/202/#\"":                                                                                  "failed",
	"SUBSCRIBE refuses the filter \"devices/dev/messages/devicebound/#\"":                                                                            "failed",
	"TLS refuses a TLS 1.3 handshake":                                                                                                                "failed",
	"authentication accepts a SAS token with a raw sr (Node, Java)":                                                                                  "failed",
	"authentication accepts a SAS token with an upper-case percent-encoded sr (Python, .NET)":                                                        "failed",
	"authentication accepts a SAS token with no skn (Python, embedded C)":                                                                            "failed",
	"authentication accepts a SAS token with an empty skn (Java)":                                                                                    "failed",
	"CONNECT answers a register body naming the device's registration id in other letter case as one naming it as is":                                "failed",
	"authentication accepts a SAS token with the Node field order sr, sig, skn, se":                                                                  "failed",
	"authentication accepts and assigns an X.509 device that sends no password":                                                                      "skipped",
	"authentication accepts and assigns a device whose SAS token is signed with its individual enrollment's secondary key":                           "skipped", // no individual enrollment given
	"authentication accepts and assigns a group device whose SAS token is signed with the key derived from the group's secondary key":                "failed",
	"authentication accepts a SAS token that expired 2 minutes ago (5 minutes of clock skew)":                                                        "failed",
	"authentication answers a SAS token for another device with 401 and errorCode 401000":                                                            "failed",
	"authentication answers a SAS token with a bad signature with 401 and errorCode 401000":                                                          "failed",
	"authentication answers an X.509 device whose certificate chains to no enrollment with 401 and errorCode 401002":                                 "skipped", // no X.509 identity given
	"authentication answers a SAS token with skn=iothubowner with 401 and errorCode 401000":                                                          "failed",
	"authentication answers a SAS token without se with 401 and errorCode 401000":                                                                    "failed",
	"authentication answers a SAS token without sig with 401 and errorCode 401000":                                                                   "failed",
	"authentication answers a SAS token without sr with 401 and errorCode 401000":                                                                    "failed",
	"authentication answers a device of an id scope it does not serve with 401":                                                                      "failed",
	"authentication answers an expired SAS token with 401 and errorCode 401000":                                                                      "failed",
	"authentication closes the connection after answering 401":                                                                                       "failed",
	"malformed packets closes the connection after pingreq/flags-set":                                                                                "failed",
	"malformed packets closes the connection after pingreq/remaining-length-1":                                                                       "failed",
	"malformed packets closes the connection after puback/flags-set":                                                                                 "failed",
	"malformed packets closes the connection after puback/remaining-length-3":                                                                        "failed",
	"malformed packets closes the connection after publish/dup-on-qos0":                                                                              "failed",
	"polling answers a poll for an unknown operation id with 404":                                                                                    "failed",
	"polling answers polls 202 with retry-after until the final 200 assigned":                                                                        "failed",
	"keep-alive answers PINGREQ with PINGRESP, before and during a registration":                                                                     "failed", // mosquitto answers no register
	"polling answers polls whatever body SDKs send (none, a space, the registration JSON)":                                                           "failed",
	"polling ends the registration of a disabled enrollment with status disabled":                                                                    "skipped",
	"polling ends with a complete registrationState":                                                                                                 "failed",
	"polling sends error answers with the documented error body":                                                                                     "failed",
	"polling throttles more than 5 polls in 10 s with 429 and retry-after":                                                                           "failed",
	"registration accepts the register bodies SDKs send":                                                                                             "failed",
	"registration acknowledges a QoS 1 register request before answering it":                                                                         "failed",
	"registration answers a register body naming another registration id with 400":                                                                   "failed",
	"registration answers 409 to a register while the device's registration is in progress":                                                          "failed",
	"registration answers registers beyond the per-minute registration budget with 429 and retry-after":                                              "failed",
	"registration answers register with 202, a retry-after and an operation id":                                                                      "failed",
	"registration closes the connection after a PUBLISH to an undocumented topic":                                                                    "failed",
	"registration closes the connection after a message over 96 KB":                                                                                  "failed",
	"registration echoes a UUID (Node, Python) $rid byte for byte":                                                                                   "failed",
	"registration echoes a constant (embedded C) $rid byte for byte":                                                                                 "failed",
	"registration echoes a numeric (a counter) $rid byte for byte":                                                                                   "failed",
	"registration writes answer topics with $rid first and a lower-case retry-after after it":                                                        "failed",
	"registration serves register and poll requests at QoS 0 on a QoS 0 subscription (as C, Java and FreeRTOS publish, FreeRTOS and NetX subscribe)": "failed",
}

// TestSuiteAgainstMosquitto runs the whole service suite against a real
// broker that is not DPS: the specs it must fail fail with clear messages,
// the rest pass, and the suite neither hangs nor crashes.
func TestSuiteAgainstMosquitto(t *testing.T) {
	// In a child process, alongside the Node SDK tests (which need ports
	// 8883 and 443, so they run one at a time in this one).
	if testproc.Offload(t) {
		return
	}
	certFile, keyFile, roots := mosquittoTLSFiles(t)
	port := startMosquitto(t, "suite.conf", map[string]string{"CERTFILE": certFile, "KEYFILE": keyFile})
	mqtt := transport.Target{Scheme: "mqtts", Host: "127.0.0.1", Port: port}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := conformance.Run(ctx, conformance.Config{
		Target: conformance.Target{
			Name: "mosquitto", MQTT: mqtt, RootCAs: roots, IDScope: emulatortest.IDScope, Local: true,
			RegistrationBudget: 10, // a DPS instance would throttle the 11th register
			Credentials:        conformance.Credentials{GroupKey: emulatortest.SymGroupKey, GroupSecondaryKey: emulatortest.SymGroupSecondaryKey},
		},
		OutDir:      t.TempDir(),
		ReadTimeout: time.Second, CloseWait: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Verdicts) < 90 {
		t.Errorf("%d verdicts: the suite did not run to its end", len(res.Verdicts))
	}
	seen := map[string]bool{}
	for _, v := range res.Verdicts {
		seen[v.Text] = true
		want := mosquittoVerdicts[v.Text]
		if want == "" {
			want = "passed"
		}
		if v.State != want {
			t.Errorf("%s %q: %s, want %s\n%s", v.ID, v.Text, v.State, want, v.Message)
		}
		if v.Failed() && (strings.TrimSpace(v.Message) == "" || !strings.Contains(v.Message, v.ID) && !strings.Contains(v.Message, "no answer") && !strings.Contains(v.Message, "Expected")) {
			t.Errorf("%s %q failed without a clear message: %q", v.ID, v.Text, v.Message)
		}
	}
	for text := range mosquittoVerdicts {
		if !seen[text] {
			t.Errorf("recorded verdict for %q, but no such spec ran", text)
		}
	}
	// The suite's verdict, as dps-conform run prints it (its report's
	// headline and the MUST failures it lists): mosquitto is NON-CONFORMANT.
	// The spec states above do not show this by themselves.
	rep := reports.Build(reports.Input{
		Ginkgo: res.Report, Catalog: res.Catalog, Role: conformance.RoleService,
		Profile: conformance.ProfileDPS2019, Target: reports.Target{Name: "mosquitto"},
	})
	var reported []string
	for _, rq := range rep.Requirements {
		if rq.Level == string(conformance.MUST) && rq.Verdict == reports.Fail {
			reported = append(reported, rq.ID)
		}
	}
	slices.Sort(reported)
	must := res.Failed(conformance.MUST)
	if rep.Summary.Verdict != reports.HeadlineNonConformant || len(must) == 0 || !slices.Equal(must, reported) {
		t.Errorf("suite verdict %s, MUST requirements failed %v, report lists %v: want %s with the same MUST requirements, at least one",
			rep.Summary.Verdict, must, reported, reports.HeadlineNonConformant)
	}
}
