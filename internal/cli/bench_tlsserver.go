package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

const benchTLSServerUsage = `Usage:
  dps-conform bench tls-server --cert FILE --key FILE

The bare TLS 1.2 server of 'bench provision' (the handshake ceiling), run as
its child process: it accepts full handshakes only (session tickets off),
reads until the client closes, and serves until interrupted. It prints one
JSON line when listening: {"event":"ready","addr":"127.0.0.1:PORT"}.
`

func benchTLSServerCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet("bench tls-server", benchTLSServerUsage)
	var certFile, keyFile string
	fs.StringVar(&certFile, "cert", "", "server certificate chain PEM `FILE` (required)")
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
	go func() { defer close(done); serveHandshakes(ctx, l) }()
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

// serveHandshakes accepts on l until it is closed: each connection gets its
// handshake, then is read until the client closes it (30 s at most).
func serveHandshakes(ctx context.Context, l net.Listener) {
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
			if err := c.(*tls.Conn).Handshake(); err != nil {
				return
			}
			var b [64]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					return
				}
			}
		}()
	}
}
