package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// serverName is the TLS server name of the live captures.
const serverName = "gen-dps.example"

// liveTimeout bounds every live exchange.
const liveTimeout = 20 * time.Second

// tlsConfigs are a server and a client configuration around one
// self-signed Ed25519 certificate made from a fixed seed.
func tlsConfigs(c *capture) (server, client *tls.Config, err error) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x42}, ed25519.SeedSize))
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2026),
		Subject:               pkix.Name{CommonName: serverName},
		DNSNames:              []string{serverName},
		NotBefore:             time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	now := func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
	server = &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}},
		SessionTicketsDisabled: true,
		MinVersion:             tls.VersionTLS12,
		Time:                   now,
		NextProtos:             []string{"http/1.1"},
	}
	client = &tls.Config{
		RootCAs: pool, ServerName: serverName, Time: now, MinVersion: tls.VersionTLS12,
		KeyLogWriter: c.rec.KeyLogWriter(),
	}
	return server, client, nil
}

// packetConn sends and receives whole MQTT packets.
type packetConn interface {
	writePacket(b []byte) error
	readPacket() (packets.Packet, []byte, error)
}

// streamConn is MQTT over a byte stream.
type streamConn struct {
	w io.Writer
	r *packets.Reader
}

func (s *streamConn) writePacket(b []byte) error { _, err := s.w.Write(b); return err }

func (s *streamConn) readPacket() (packets.Packet, []byte, error) {
	p, err := s.r.ReadPacket()
	if err != nil {
		return nil, nil, err
	}
	b, err := encode(p)
	return p, b, err
}

// wsConn is MQTT over WebSocket binary messages, one packet per message.
type wsConn struct{ c *websocket.Conn }

func (w wsConn) writePacket(b []byte) error { return w.c.WriteMessage(websocket.BinaryMessage, b) }

func (w wsConn) readPacket() (packets.Packet, []byte, error) {
	typ, b, err := w.c.ReadMessage()
	if err != nil {
		return nil, nil, err
	}
	if typ != websocket.BinaryMessage {
		return nil, nil, fmt.Errorf("websocket message type %d, want binary", typ)
	}
	p, n, err := packets.Decode(b, packets.DecodeOptions{})
	if err != nil {
		return nil, nil, err
	}
	if n != len(b) {
		return nil, nil, fmt.Errorf("websocket message of %d bytes holds a %d-byte packet", len(b), n)
	}
	return p, b, nil
}

// runSteps plays the script as side me over pc; observe, when not nil,
// sees every packet in order (bytes and direction).
func runSteps(c *capture, me tracer.Side, pc packetConn, steps []step, observe func(from tracer.Side, p packets.Packet, b []byte) error) error {
	for i, st := range steps {
		if st.from == me {
			if me == tracer.Client {
				c.clock.advance(st.wait)
			}
			b, err := encode(st.p)
			if err != nil {
				return err
			}
			if err := pc.writePacket(b); err != nil {
				return fmt.Errorf("step %d: writing %v: %w", i, st.p.Type(), err)
			}
			if observe != nil {
				if err := observe(st.from, st.p, b); err != nil {
					return err
				}
			}
			continue
		}
		p, b, err := pc.readPacket()
		if err != nil {
			return fmt.Errorf("step %d: reading %v: %w", i, st.p.Type(), err)
		}
		if err := mustEqualType(p, st.p); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if observe != nil {
			if err := observe(st.from, p, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Endpoints of the live captures.
var (
	liveClient = netip.AddrPortFrom(deviceAddr, 50001)
)

// buildRegisterTLS plays the conformant exchange over real TLS across
// net.Pipe, recording the client end twice: the TLS bytes (8883) and the
// plaintext MQTT (1883).
func buildRegisterTLS(c *capture) error {
	steps, err := conformantSteps()
	if err != nil {
		return err
	}
	scfg, ccfg, err := tlsConfigs(c)
	if err != nil {
		return err
	}
	tlsEP, plainEP := netip.AddrPortFrom(serverAddr, 8883), netip.AddrPortFrom(serverAddr, 1883)
	tlsIdx := c.truthFlow(liveClient.String(), tlsEP.String(), "tls")
	plainIdx := c.truthFlow(liveClient.String(), plainEP.String(), "plain")
	cl, sv := net.Pipe()
	deadline := time.Now().Add(liveTimeout)
	cl.SetDeadline(deadline)
	sv.SetDeadline(deadline)
	raw := c.rec.Wrap(cl, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.TLS, Client: liveClient, Server: tlsEP,
		Comment: "MQTT over TLS, recorded at the device; decrypt with the DSB or register-tls.keylog"})
	var wg sync.WaitGroup
	var serr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		ts := tls.Server(sv, scfg)
		defer ts.Close()
		serr = runSteps(c, tracer.Server, &streamConn{w: ts, r: packets.NewReader(ts, packets.DecodeOptions{})}, steps, nil)
		if serr == nil {
			// Wait for the device to close after DISCONNECT.
			_, serr = io.Copy(io.Discard, ts)
		}
	}()
	cerr := func() error {
		tc := tls.Client(raw, ccfg)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		plain := c.rec.Wrap(tc, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.Plain, Client: liveClient, Server: plainEP,
			Comment: "plaintext view of the TLS connection on 8883"})
		defer plain.Close()
		pc := &streamConn{w: plain, r: packets.NewReader(plain, packets.DecodeOptions{})}
		return runSteps(c, tracer.Client, pc, steps, func(from tracer.Side, p packets.Packet, _ []byte) error {
			c.note(from, p, tlsIdx, plainIdx)
			return nil
		})
	}()
	if cerr != nil {
		cl.Close()
	}
	wg.Wait()
	return errors.Join(cerr, serr)
}

// oneConnListener is a net.Listener that accepts one connection.
type oneConnListener struct {
	once sync.Once
	c    net.Conn
	done chan struct{}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

func (l *oneConnListener) Addr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 20), Port: 443}
}

// buildRegisterWSS plays the conformant exchange over WebSocket over TLS
// (gorilla/websocket, subprotocol "mqtt"), recording the TLS bytes at the
// device (443) and a synthetic plaintext MQTT view (1883).
func buildRegisterWSS(c *capture) error {
	steps, err := conformantSteps()
	if err != nil {
		return err
	}
	scfg, ccfg, err := tlsConfigs(c)
	if err != nil {
		return err
	}
	wssEP := netip.AddrPortFrom(serverAddr, 443)
	wssIdx := c.truthFlow(liveClient.String(), wssEP.String(), "websocket-tls")
	cl, sv := net.Pipe()
	deadline := time.Now().Add(liveTimeout)
	cl.SetDeadline(deadline)
	sv.SetDeadline(deadline)
	raw := c.rec.Wrap(cl, tracer.ConnOptions{Side: tracer.Client, Layer: tracer.WebSocketTLS, Client: liveClient, Server: wssEP,
		Comment: "MQTT over WebSocket over TLS, recorded at the device; decrypt with the DSB or register-wss.keylog"})

	ln := &oneConnListener{c: tls.Server(sv, scfg), done: make(chan struct{})}
	var serr error
	handled := make(chan struct{})
	srv := &http.Server{
		ReadHeaderTimeout: liveTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(handled)
			up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
			ws, err := up.Upgrade(w, r, nil)
			if err != nil {
				serr = err
				return
			}
			defer ws.Close()
			serr = runSteps(c, tracer.Server, wsConn{ws}, steps, nil)
			if serr == nil {
				// Wait for the device's close frame.
				if _, _, err := ws.ReadMessage(); err != nil && !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
					serr = err
				}
			}
		}),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	cerr := func() error {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		d := websocket.Dialer{
			Subprotocols: []string{"mqtt"},
			NetDialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				tc := tls.Client(raw, ccfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					return nil, err
				}
				return tc, nil
			},
		}
		ws, _, err := d.DialContext(ctx, "wss://"+serverName+"/$iothub/websocket", nil)
		if err != nil {
			return err
		}
		defer ws.Close()
		plain, err := c.flow(liveClient.Port(), tracer.FlowOptions{Comment: "plaintext MQTT view of the WebSocket connection on 443"})
		if err != nil {
			return err
		}
		if err := runSteps(c, tracer.Client, wsConn{ws}, steps, func(from tracer.Side, p packets.Packet, b []byte) error {
			c.note(from, p, wssIdx, plain.idx)
			return plain.f.Send(from, b, tracer.SegOpts{})
		}); err != nil {
			return err
		}
		if err := plain.f.Close(); err != nil {
			return err
		}
		msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		return ws.WriteControl(websocket.CloseMessage, msg, deadline)
	}()
	if cerr != nil {
		cl.Close()
	} else {
		select {
		case <-handled:
		case <-time.After(liveTimeout):
			cerr = errors.New("websocket server did not finish")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	ln.Close()
	cl.Close()
	wg.Wait()
	return errors.Join(cerr, serr)
}
