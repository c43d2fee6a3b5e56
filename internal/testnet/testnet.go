// Package testnet is test support: loopback peers that misbehave on
// purpose, for the tests of what the project does when a peer does not
// answer.
package testnet

import (
	"net"
	"sync"
	"testing"
)

// Silent listens on 127.0.0.1 on an ephemeral port, accepts every TCP
// connection and never reads from or writes to it: a port with nothing
// behind it, or a TLS port that never answers the ClientHello. It returns
// the address (host:port). The listener and the connections it holds are
// closed when t and its subtests are done.
func Silent(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return ln.Addr().String()
}
