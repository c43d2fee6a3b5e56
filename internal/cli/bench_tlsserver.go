package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/transport"
)

const benchTLSServerUsage = `Usage:
  dps-conform bench tls-server --cert FILE --key FILE [--mqtt]

The bare TLS 1.2 server of 'bench provision' (the handshake ceiling), run as
its child process: it accepts full handshakes only (session tickets off),
reads until the client closes, and serves until interrupted. It prints one
JSON line when listening: {"event":"ready","addr":"127.0.0.1:PORT"}.

With --mqtt it is the bare MQTT responder of 'bench provision' instead: after
the handshake it answers the DPS flow with canned packets and no DPS work
(no attestation, registry or allocation): CONNACK 0, SUBACK QoS 1, PUBACK and
202 assigning (retry-after 0) to a register request, PUBACK and 200 assigned
to a poll.
`

func benchTLSServerCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("bench tls-server", benchTLSServerUsage)
	var certFile, keyFile string
	var mqtt bool
	fs.StringVar(&certFile, "cert", "", "server certificate chain PEM `FILE` (required)")
	fs.BoolVar(&mqtt, "mqtt", false, "answer the DPS flow with canned MQTT packets (the bare responder) instead of only handshaking")
	fs.StringVar(&keyFile, "key", "", "server private key PEM `FILE` (required)")
	if done, err := parseFlags(env, fs, args); done || err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("unexpected argument %q (bench tls-server takes only flags)", fs.Arg(0))
	}
	if certFile == "" || keyFile == "" {
		return usageErrorf("--cert and --key are required")
	}
	cert, err := transport.LoadServerCertificate(certFile, keyFile)
	if err != nil {
		return &UsageError{Err: fmt.Errorf("--cert/--key: %w", err)}
	}
	l, err := listenHandshakes(cert)
	if err != nil {
		return envErrorf("%v", err)
	}
	line, _ := json.Marshal(struct {
		Event string `json:"event"`
		Addr  string `json:"addr"`
	}{"ready", l.Addr().String()})
	if _, err := fmt.Fprintf(env.Stdout, "%s\n", line); err != nil {
		l.Close()
		return envErrorf("writing the ready line: %v", err)
	}
	done := make(chan struct{})
	go func() { defer close(done); serveConns(ctx, l, tlsServerHandler(mqtt)) }()
	<-ctx.Done()
	l.Close()
	<-done
	return nil
}

// listenHandshakes listens on a loopback ephemeral port for TLS 1.2 with
// the DPS suites and no session resumption.
func listenHandshakes(cert tls.Certificate) (net.Listener, error) {
	conf := transport.TLS12Only(&tls.Config{Certificates: []tls.Certificate{cert}, SessionTicketsDisabled: true})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bare TLS server: %w", err)
	}
	return tls.NewListener(l, conf), nil
}

// serveConns accepts on l until it is closed and runs serve on each
// connection in its own goroutine (30 s at most), then closes it.
func serveConns(ctx context.Context, l net.Listener, serve func(*tls.Conn)) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	defer func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		if ctx.Err() != nil {
			c.Close()
			return
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			serve(c.(*tls.Conn))
		}()
	}
}

// tlsServerHandler is what 'bench tls-server' does with a connection: the
// handshake only, or with mqtt the bare responder.
func tlsServerHandler(mqtt bool) func(*tls.Conn) {
	if mqtt {
		return respondDPS
	}
	return handshakeOnly
}

// handshakeOnly completes the handshake, then reads until the client
// closes.
func handshakeOnly(c *tls.Conn) {
	if err := c.Handshake(); err != nil {
		return
	}
	var b [64]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// Canned bodies of the bare responder.
const (
	responderOperationID = "4.0000000000000000.00000000-0000-0000-0000-000000000000"
	responderAssigning   = `{"operationId":"` + responderOperationID + `","status":"assigning"}`
)

// cannedAssigned is the canned body of the final answer to regID: status
// assigned with a full registrationState.
func cannedAssigned(regID string) ([]byte, error) {
	return json.Marshal(dps.RegistrationOperationStatus{OperationID: responderOperationID, Status: dps.StatusAssigned,
		RegistrationState: &dps.DeviceRegistrationResult{RegistrationID: regID, AssignedHub: "bench-hub.azure-devices.net",
			DeviceID: regID, Status: dps.StatusAssigned, Substatus: dps.SubstatusInitialAssignment}})
}

// respondDPS is the bare MQTT responder: the DPS flow answered with canned
// packets, as a floor under what any DPS server must do per registration
// (the same round trips, TLS records and MQTT framing, and none of the DPS
// work). The answers are shaped like the emulator's: QoS 1 responses, the
// PUBACK and the answer of one request in one write.
func respondDPS(c *tls.Conn) {
	if err := c.Handshake(); err != nil {
		return
	}
	r := packets.NewReader(bufio.NewReaderSize(c, 4096), packets.DecodeOptions{})
	var (
		out      []byte
		clientID string
		pid      uint16
	)
	publish := func(status int, rid string, body []byte) {
		pid++
		if pid == 0 {
			pid = 1
		}
		p := packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(dps.ResponseTopic(status, rid, 0)), Payload: body}
		out, _ = p.Append(out)
	}
	for {
		p, err := r.ReadPacket()
		if err != nil {
			return
		}
		out = out[:0]
		switch p := p.(type) {
		case *packets.Connect:
			clientID = string(p.ClientID)
			out, _ = (&packets.Connack{}).Append(out)
		case *packets.Subscribe:
			codes := make([]packets.SubackCode, len(p.Subscriptions))
			for i, s := range p.Subscriptions {
				codes[i] = packets.SubackCode(min(s.QoS, 1))
			}
			out, _ = (&packets.Suback{PacketID: p.PacketID, ReturnCodes: codes}).Append(out)
		case *packets.Publish:
			if p.QoS > 0 {
				out, _ = (&packets.Puback{PacketID: p.PacketID}).Append(out)
			}
			req, err := dps.ParseRequestTopic(string(p.Topic))
			if err != nil {
				return
			}
			if req.Kind == dps.Register {
				publish(202, req.RID, []byte(responderAssigning))
				break
			}
			body, err := cannedAssigned(clientID)
			if err != nil {
				return
			}
			publish(200, req.RID, body)
		case *packets.Pingreq:
			out, _ = (&packets.Pingresp{}).Append(out)
		case *packets.Disconnect:
			return
		}
		if len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}
