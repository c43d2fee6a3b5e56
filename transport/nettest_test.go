package transport

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// TestWSConnNettest runs x/net's net.Conn conformance tests over a
// Dial'ed WSConn and its server-side twin.
func TestWSConnNettest(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		accepted := make(chan net.Conn, 1)
		done := make(chan struct{})
		h := NewWSHandler(WSOptions{ReadLimit: 64 << 20}, func(c net.Conn) {
			accepted <- c
			<-done
		})
		addr, shutdown := startHTTP(h)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c1, err = Dial(ctx, Target{Scheme: SchemeWS, Host: "127.0.0.1", Port: addr.Port, Path: "/"}, DialOptions{})
		if err != nil {
			close(done)
			shutdown()
			return nil, nil, nil, err
		}
		c2 = <-accepted
		stop = func() {
			c1.Close()
			close(done)
			shutdown()
		}
		return c1, c2, stop, nil
	})
}
