package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

// TestLeanRegistration runs the storm's lean load generator against the
// reference emulator: a device of the fixture's group is assigned; a wrong
// key, a wrong id scope and a server that closes at once are errors that say
// what went wrong.
func TestLeanRegistration(t *testing.T) {
	// Registered first, so it runs after the emulator's own cleanup.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	e := emulatortest.Start(t, emulatortest.Options{})
	conf := transport.TLS12Only(e.ClientTLSConfig(nil))
	closer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	go func() {
		for {
			c, err := closer.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, tc := range []struct {
		name, addr, scope, key string
		want                   string // "" for success
	}{
		{"assigned", e.MQTTAddr, e.IDScope, e.SymmetricKey("lean-1"), ""},
		{"wrong key", e.MQTTAddr, e.IDScope, e.SymmetricKey("someone-else"), "answered 401"},
		{"wrong id scope", e.MQTTAddr, "0neWRONG000", e.SymmetricKey("lean-1"), "answered 401"},
		{"server closes", closer.Addr().String(), e.IDScope, e.SymmetricKey("lean-1"), "TLS handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := leanRegistration{addr: tc.addr, conf: conf, idScope: tc.scope, regID: "lean-1", key: tc.key, deadline: 20 * time.Second}
			polls, err := l.run(context.Background(), &net.Dialer{Timeout: 5 * time.Second})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("run: %v", err)
			case tc.want == "" && polls < 1:
				t.Errorf("assigned after %d polls, want at least one (the emulator answers 202 first)", polls)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if reg, ok, err := e.Registry.Registration(context.Background(), "lean-1"); err != nil || !ok || reg.AssignedHub == "" {
		t.Errorf("the emulator did not record lean-1: %+v %v %v", reg, ok, err)
	}
}

// TestRespondDPS checks the bare responder answers the lean client's whole
// flow, and that a request topic that is not DPS's ends the connection.
func TestRespondDPS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	pki, err := transport.LoadOrCreateServerPKI(dir, nil, transport.ECDSAP256, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	l, err := listenHandshakes(pki.Certificate)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); serveConns(ctx, l, respondDPS) }()
	defer func() { cancel(); l.Close(); <-done }()
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA)
	conf := transport.TLS12Only(&tls.Config{RootCAs: roots, ServerName: "localhost"})
	r := leanRegistration{addr: l.Addr().String(), conf: conf, idScope: "0neBENCH000", regID: "resp-1", key: "AAAA", deadline: 20 * time.Second}
	polls, err := r.run(ctx, &net.Dialer{Timeout: 5 * time.Second})
	if err != nil || polls != 1 {
		t.Fatalf("run = %d polls, %v; want 1 poll (202 then 200), no error", polls, err)
	}

	// A PUBLISH on a topic that is not a DPS request ends the connection.
	c, err := tls.Dial("tcp", l.Addr().String(), conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cp, err := benchConnect("0neBENCH000", "resp-2", "AAAA", 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []packets.Packet{cp, &packets.Publish{QoS: 1, PacketID: 1, Topic: []byte("devices/resp-2/messages/events/"), Payload: []byte("{}")}} {
		if err := packets.WritePacket(c, p); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	if p, err := packets.ReadPacket(br, packets.DecodeOptions{}); err != nil {
		t.Fatalf("CONNACK: %v", err)
	} else if _, ok := p.(*packets.Connack); !ok {
		t.Fatalf("answer to CONNECT: %v, want CONNACK", p)
	}
	if p, err := packets.ReadPacket(br, packets.DecodeOptions{}); !errors.Is(err, io.EOF) {
		t.Errorf("after a PUBLISH to a non-DPS topic: %v, %v; want the connection closed (EOF)", p, err)
	}
}

// TestBenchProvisionTarget runs bench provision against an emulator it did
// not start (--target): the reference device client by default, no
// responder, and no warm-up (registrations on a target are its owner's
// quota); the registrations are recorded by that emulator.
func TestBenchProvisionTarget(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	e := emulatortest.Start(t, emulatortest.Options{})
	var res provisionBenchResult
	runBench(t, benchProvisionCmd, []string{"--target", "mqtts://" + e.MQTTAddr, "--id-scope", e.IDScope,
		"--group-key", emulatortest.SymGroupKey, "--ca", e.CAFile, "--devices", "2", "--registrations", "6", "--rounds", "2", "--idle", "0"}, &res)
	if res.Storm.Done != 6 || res.Storm.Failed != 0 || res.Handshakes.Done != 6 {
		t.Errorf("registrations %d (failed %d: %s), handshakes %d; want 6, 0, 6", res.Storm.Done, res.Storm.Failed, res.Storm.FirstErr, res.Handshakes.Done)
	}
	if res.WarmUp != 0 || res.Responder != nil || len(res.Rounds) != 2 {
		t.Errorf("warm-up %d, responder %v, %d rounds; want 0, none, 2", res.WarmUp, res.Responder, len(res.Rounds))
	}
}

// TestLeanRegistrationRetryAfter: against an emulator answering
// retry-after=1, the lean client waits it out and polls once (polling early
// would be answered "assigning" again and count more polls); against one
// answering retry-after=60, a context cancelled during the wait ends the
// registration with its cause (the wait outlasts any scheduling delay).
func TestLeanRegistrationRetryAfter(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	e := emulatortest.Start(t, emulatortest.Options{RetryAfter: time.Second})
	conf := transport.TLS12Only(e.ClientTLSConfig(nil))
	d := &net.Dialer{Timeout: 5 * time.Second}

	l := leanRegistration{addr: e.MQTTAddr, conf: conf, idScope: e.IDScope, regID: "lean-wait", key: e.SymmetricKey("lean-wait"), deadline: 20 * time.Second}
	polls, err := l.run(context.Background(), d)
	if err != nil || polls != 1 {
		t.Fatalf("run: %d polls, %v; want 1 poll after the retry-after", polls, err)
	}

	slow := emulatortest.Start(t, emulatortest.Options{RetryAfter: time.Minute})
	cause := errors.New("bench interrupted")
	ctx, cancel := context.WithCancelCause(context.Background())
	l = leanRegistration{addr: slow.MQTTAddr, conf: transport.TLS12Only(slow.ClientTLSConfig(nil)), idScope: slow.IDScope,
		regID: "lean-cancel", key: slow.SymmetricKey("lean-cancel"), deadline: 2 * time.Minute}
	go func() {
		// Cancel once the emulator has the registration: the client is
		// reading the answer or waiting out its minute.
		for range 2000 {
			if _, ok, _ := slow.Registry.Registration(context.Background(), "lean-cancel"); ok {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel(cause)
	}()
	// Cancelling must end the wait, not only fail what follows it: a run
	// still going 20 s after the cancel is waiting out the minute.
	done := make(chan error, 1)
	go func() {
		_, err := l.run(ctx, d)
		done <- err
	}()
	<-ctx.Done()
	select {
	case err := <-done:
		if !errors.Is(err, cause) {
			t.Fatalf("run: %v, want the context's cause", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not end after its context was cancelled: it waits out the retry-after regardless")
	}
}

// TestLeanAwait: the lean client's wait for an answer refuses what a
// server (or mosquitto echoing) must not send, naming it, and acknowledges
// a QoS 1 answer with the next write.
func TestLeanAwait(t *testing.T) {
	pub := func(topic, body string) *packets.Publish {
		return &packets.Publish{QoS: 1, PacketID: 9, Topic: []byte(topic), Payload: []byte(body)}
	}
	assigning := `{"operationId":"op-1","status":"assigning"}`
	for _, tc := range []struct {
		name string
		echo bool
		in   []packets.Packet
		want string // "" for success
	}{
		{"answer", false, []packets.Packet{&packets.Puback{PacketID: 1}, pub(dps.ResponseTopic(202, "1", 0), assigning)}, ""},
		{"echo under the device", true, []packets.Packet{pub(dps.ResponsePrefix+"dev/"+strings.TrimPrefix(dps.ResponseTopic(202, "1", 0), dps.ResponsePrefix), assigning)}, ""},
		{"echo not under the device", true, []packets.Packet{pub(dps.ResponseTopic(202, "1", 0), assigning)}, `not under $dps/registrations/res/dev/`},
		{"another $rid", false, []packets.Packet{pub(dps.ResponseTopic(202, "2", 0), assigning)}, "answer for $rid=2 while waiting for 1"},
		{"not a response topic", false, []packets.Packet{pub("devices/dev/messages", assigning)}, "devices/dev/messages"},
		{"error answer", false, []packets.Packet{pub(dps.ResponseTopic(401, "1", -1), `{"errorCode":401002,"message":"Unauthorized"}`)}, "answered 401 (errorCode 401002: Unauthorized)"},
		{"body not JSON", false, []packets.Packet{pub(dps.ResponseTopic(202, "1", 0), `nope`)}, "answer 202 to $rid=1"},
		{"only acknowledgements", false, slices.Repeat([]packets.Packet{&packets.Puback{PacketID: 1}}, 8), "no answer to $rid=1 in 8 packets"},
		{"stream ends", false, nil, "waiting for the answer to $rid=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b []byte
			for _, p := range tc.in {
				b, _ = p.Append(b)
			}
			l := leanRegistration{regID: "dev", echo: tc.echo}
			var out []byte
			resp, op, err := l.await(packets.NewReader(bufio.NewReader(bytes.NewReader(b)), packets.DecodeOptions{}), "1", &out)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil || resp.Status != 202 || op.OperationID != "op-1" {
				t.Fatalf("await: %+v %+v %v", resp, op, err)
			}
			if want, _ := (&packets.Puback{PacketID: 9}).Append(nil); !bytes.Equal(out, want) {
				t.Errorf("held for the next write: % x, want the answer's PUBACK % x", out, want)
			}
		})
	}
}

// TestBenchServersSameTLS checks that every server of bench provision
// negotiates the same TLS with the bench's client: TLS 1.2, the same
// cipher suite and key-exchange group, never a resumption. The ceiling's
// handshake must be the storm's, and mosquitto's (OpenSSL, which follows
// the client's order of suites unless told otherwise) must be too, or the
// comparison weighs different key schedules and record ciphers.
func TestBenchServersSameTLS(t *testing.T) {
	bin, _, _ := findMosquitto("auto", mosquittoSbin)
	if bin == "" {
		requireBenchPeer(t, "mosquitto")
	}
	for _, kt := range []transport.KeyType{transport.ECDSAP256, transport.RSA2048} {
		t.Run(kt.String(), func(t *testing.T) { checkServersSameTLS(t, kt, bin) })
	}
}

func checkServersSameTLS(t *testing.T, kt transport.KeyType, bin string) {
	ctx := context.Background()
	b := &provisionBench{f: benchProvisionFlags{server: "inproc"}, kt: kt, dir: t.TempDir(), mosquittoBin: bin}
	if err := b.makePKI(); err != nil {
		t.Fatal(err)
	}
	conf := transport.TLS12Only(&tls.Config{RootCAs: b.roots, ServerName: "localhost"})
	ceil, err := b.startTLSServer(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	defer ceil.stop()
	resp, err := b.startTLSServer(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.stop()
	em, err := b.startEmulator(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer em.stop()
	mq, err := b.startMosquitto(ctx, &provisionBenchResult{})
	if err != nil {
		t.Fatal(err)
	}
	defer mq.stop()
	type params struct {
		version, suite uint16
		curve          tls.CurveID
	}
	var want params
	for _, s := range []struct {
		name string
		srv  *benchServer
	}{{"ceiling", ceil}, {"emulator", em}, {"responder", resp}, {"mosquitto", mq}} {
		for i := range 2 { // the second would resume if anything cached a session
			raw, err := net.Dial("tcp", s.srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			c := tls.Client(raw, conf)
			if err := c.Handshake(); err != nil {
				raw.Close()
				t.Fatalf("%s: %v", s.name, err)
			}
			st := c.ConnectionState()
			raw.Close()
			got := params{st.Version, st.CipherSuite, st.CurveID}
			if st.DidResume {
				t.Errorf("%s: connection %d resumed a session, want a full handshake", s.name, i)
			}
			if s.name == "ceiling" && i == 0 {
				want = got
				if got.version != tls.VersionTLS12 {
					t.Fatalf("ceiling: version %x, want TLS 1.2", got.version)
				}
				continue
			}
			if got != want {
				t.Errorf("%s: TLS %x, %s, %v; the ceiling negotiated TLS %x, %s, %v", s.name,
					got.version, tls.CipherSuiteName(got.suite), got.curve, want.version, tls.CipherSuiteName(want.suite), want.curve)
			}
		}
	}
}
