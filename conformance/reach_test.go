package conformance_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/transport"
)

// TestCheckReachableCancelled: an interrupt while the reachability check
// waits on a silent endpoint (TCP accepted, no TLS answer) returns the
// context's error at once, not nil (which would let the suite start) nor
// an UnreachableError blaming the target.
func TestCheckReachableCancelled(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			held <- c // read nothing, answer nothing
		}
	}()
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	tg := conformance.Target{Name: "silent", MQTT: transport.Target{Scheme: "mqtts", Host: "127.0.0.1", Port: port}, Local: true}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { done <- tg.CheckReachable(ctx, time.Minute) }()
	select {
	case err := <-done:
		var ue *conformance.UnreachableError
		if !errors.Is(err, context.Canceled) || errors.As(err, &ue) {
			t.Fatalf("CheckReachable interrupted: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CheckReachable did not return within 10 s of the interrupt")
	}
}
