package conformance_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/internal/testnet"
	"github.com/dps-conform/dps-conform/transport"
)

// TestCheckReachableCancelled: an interrupt while the reachability check
// waits on a silent endpoint (TCP accepted, no TLS answer) returns the
// context's error at once, not nil (which would let the suite start) nor
// an UnreachableError blaming the target.
func TestCheckReachableCancelled(t *testing.T) {
	silent, err := transport.ParseTarget("mqtts://" + testnet.Silent(t)) // TCP accepted, no TLS answer
	if err != nil {
		t.Fatal(err)
	}
	tg := conformance.Target{Name: "silent", MQTT: silent, Local: true}
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
