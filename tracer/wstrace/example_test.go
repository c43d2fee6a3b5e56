package wstrace_test

import (
	"fmt"

	"github.com/dps-conform/dps-conform/tracer/wstrace"
)

func ExampleStream() {
	s := wstrace.NewStream()
	_, _ = s.Feed(wstrace.ClientToServer, []byte("GET /$iothub/websocket HTTP/1.1\r\nHost: dps.example\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"))
	_, _ = s.Feed(wstrace.ServerToClient, []byte("HTTP/1.1 101 Switching Protocols\r\n"+
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"))
	// The request head is 125 bytes; a masked binary frame "hi" (8 bytes)
	// from the client, then an unmasked one at offset 133.
	pl, err := s.Feed(wstrace.ClientToServer, []byte{0x82, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2, 0x82, 0x01, '!'})
	fmt.Printf("%q %v\n", pl, err)
	f := s.Facts()
	fmt.Println(f.Path, f.Host, f.Subprotocol, f.Status, f.Frames)
	// Output:
	// "hi!" wstrace: c2s offset 133: client frame unmasked (RFC 6455 §5.1)
	// /$iothub/websocket dps.example mqtt 101 [2 0]
}
