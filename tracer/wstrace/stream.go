// Package wstrace decodes one WebSocket connection (RFC 6455) from
// reassembled TCP bytes of both directions: the HTTP upgrade, frames,
// masking, fragmentation, control frames and permessage-deflate (RFC 7692).
package wstrace

import "fmt"

// Dir is the direction of bytes in a TCP connection.
type Dir uint8

// Directions of a connection.
const (
	ClientToServer Dir = 0
	ServerToClient Dir = 1
)

// String returns "c2s" or "s2c".
func (d Dir) String() string {
	switch d {
	case ClientToServer:
		return "c2s"
	case ServerToClient:
		return "s2c"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// Facts is what a Stream learned about a WebSocket connection so far.
type Facts struct {
	// Path (request URI with query) and Host of the upgrade request.
	Path, Host string
	// OfferedSubprotocols lists Sec-WebSocket-Protocol of the request;
	// Subprotocol is the one the server chose.
	OfferedSubprotocols []string
	Subprotocol         string
	// Status is the HTTP status of the upgrade response (101 on success).
	Status int
	// OfferedExtensions and Extensions are the Sec-WebSocket-Extensions
	// headers of the request and response.
	OfferedExtensions string
	Extensions        string
	// Deflate reports that permessage-deflate was negotiated.
	Deflate bool
	// Frames counts frames per direction (index Dir).
	Frames [2]int
	// Pings and Pongs count ping and pong frames of both directions.
	Pings, Pongs int
	// Close is the first close frame seen, nil if none.
	Close *Close
	// Problems lists non-fatal problems (at most 64).
	Problems []Problem
}

// Close is the first close frame seen.
type Close struct {
	Dir    Dir
	Code   uint16
	Reason string
}

// Problem is a non-fatal decoding problem at a stream offset of Dir.
type Problem struct {
	Dir    Dir
	Offset int64
	Msg    string
}

// String formats the problem as "c2s offset N: msg".
func (p Problem) String() string {
	return fmt.Sprintf("%s offset %d: %s", p.Dir, p.Offset, p.Msg)
}

// Error is the error type returned by Stream.Feed for a non-fatal problem.
type Error struct{ Problem }

// Error implements error.
func (e *Error) Error() string { return "wstrace: " + e.Problem.String() }
