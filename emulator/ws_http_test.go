package emulator_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/emulator/emulatortest"
)

// TestWSPortPlainHTTPCloses: a request on the WebSocket port that is no
// upgrade is answered and its connection closed, not kept alive without a
// deadline: such connections are not sessions, so MaxConnections does not
// count them, and ten of them once stayed open indefinitely.
func TestWSPortPlainHTTPCloses(t *testing.T) {
	e := emulatortest.Start(t, emulatortest.Options{})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", e.WSAddr, &tls.Config{RootCAs: e.CAPool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /nope HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// The server closes: the next read ends (EOF), well before our deadline.
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the server sent more after the response")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection was kept open after a request that is no upgrade")
	}
}
