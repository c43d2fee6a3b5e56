package testnet_test

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/internal/testnet"
)

// TestSilent: the port accepts connections and says nothing on them until
// the test ends; then the connections it held are closed.
func TestSilent(t *testing.T) {
	var c net.Conn
	t.Run("held", func(t *testing.T) {
		addr := testnet.Silent(t)
		var err error
		if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read %d bytes, %v; want nothing until the deadline", n, err)
		}
	})
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the test: read %d bytes, %v; want the connection closed", n, err)
	}
}
