// Package transport carries bytes between dps-conform and a peer: TCP, TLS 1.2
// and MQTT-over-WebSocket, on both the client (Dial) and the server side
// (NewWSHandler, WrapListener), plus the TLS policy DPS documents and the small
// PKI the emulator and the tests need.
//
// Everything above this package sees a plain net.Conn carrying the MQTT byte
// stream. Two hooks expose the layers underneath: DialOptions.WrapRaw sees the
// bytes as they cross the wire (TLS records, WebSocket frames) and
// DialOptions.WrapPlain sees the MQTT stream after TLS and WebSocket are
// removed. The tracer's recorder plugs into either.
//
// WebSocket framing (RFC 6455) is done by github.com/gorilla/websocket; this
// package only adapts it to net.Conn (see WSConn) and applies the MQTT rules of
// MQTT 3.1.1 §6.0 (binary frames only, subprotocol "mqtt").
package transport
