package transport

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
)

// DefaultWSPaths are the request paths NewWSHandler accepts by default: the
// Azure IoT path and the two the C# and Java SDKs fall back to
// (DPS-PROTOCOL.md §7).
func DefaultWSPaths() []string { return []string{DefaultWSPath, "/", "/mqtt"} }

// DefaultSubprotocols are the subprotocols NewWSHandler accepts by default:
// "mqtt" (MQTT 3.1.1 §6.0, most clients) and "MQTT" (the Azure IoT C SDK).
func DefaultSubprotocols() []string { return []string{"mqtt", "MQTT"} }

// DefaultWSReadLimit is the default largest WebSocket message a server
// connection accepts (1 MiB).
const DefaultWSReadLimit = 1 << 20

// WSOptions configures NewWSHandler. The zero value is usable.
type WSOptions struct {
	// Paths are the request paths that accept the upgrade (exact match);
	// default DefaultWSPaths. Any other path gets 404.
	Paths []string
	// Subprotocols are accepted, case-sensitively; default
	// DefaultSubprotocols. The first one the client offers wins. A client
	// offering none of them is refused with 400 and a body saying why.
	Subprotocols []string
	// OmitSubprotocol is a fault mode for tests: a request offering one of
	// Subprotocols is still required and accepted, but the 101 answer
	// carries no Sec-WebSocket-Protocol (no subprotocol selected, against
	// RFC 6455 §4.2.2 and [MQTT-6.0.0-4]). All other checks and options
	// apply as usual.
	OmitSubprotocol bool
	// PacketPerMessage is a fault mode for tests: the server reads each
	// binary message as exactly one whole MQTT control packet, and a
	// message holding part of a packet, or more than one, ends the stream
	// with ErrNotOnePacket and closes the connection with 1002 — against
	// [MQTT-6.0.0-2], which has the receiver treat messages as a byte
	// stream (the Node SDK sends each field of a packet in its own frame).
	PacketPerMessage bool
	// EnableCompression negotiates permessage-deflate (RFC 7692, no context
	// takeover) when the client offers it; otherwise the offer is declined
	// by leaving it out of the response.
	EnableCompression bool
	// WrapPlain wraps each connection's MQTT byte stream before accept sees it.
	WrapPlain func(net.Conn) net.Conn
	// CheckOrigin decides on the Origin header; nil allows all.
	CheckOrigin func(*http.Request) bool
	// ReadLimit is the largest message accepted, in bytes; default
	// DefaultWSReadLimit. A larger message closes the connection with 1009.
	ReadLimit int64
}

// NewWSHandler returns an http.Handler that upgrades requests on o.Paths to
// WebSocket and calls accept, in the handler goroutine, with a net.Conn
// carrying the MQTT byte stream (a *WSConn, possibly wrapped by o.WrapPlain).
// When accept returns, the connection is closed (if accept has not done so)
// and the handler returns. Requests that are not acceptable get a plain-text
// error body: 404 for other paths, 400 for a missing or unknown subprotocol
// or a request that is not a WebSocket upgrade, 403 for a refused Origin.
func NewWSHandler(o WSOptions, accept func(net.Conn)) http.Handler {
	h := &wsHandler{opt: o, accept: accept}
	if len(h.opt.Paths) == 0 {
		h.opt.Paths = DefaultWSPaths()
	}
	if len(h.opt.Subprotocols) == 0 {
		h.opt.Subprotocols = DefaultSubprotocols()
	}
	if h.opt.ReadLimit <= 0 {
		h.opt.ReadLimit = DefaultWSReadLimit
	}
	if h.opt.CheckOrigin == nil {
		h.opt.CheckOrigin = func(*http.Request) bool { return true }
	}
	return h
}

type wsHandler struct {
	opt    WSOptions
	accept func(net.Conn)
}

func (h *wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !slices.Contains(h.opt.Paths, r.URL.Path) {
		http.Error(w, fmt.Sprintf("no MQTT WebSocket endpoint at %q; use one of %s",
			r.URL.Path, strings.Join(h.opt.Paths, ", ")), http.StatusNotFound)
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "expected a WebSocket upgrade request (Connection: Upgrade, Upgrade: websocket)",
			http.StatusBadRequest)
		return
	}
	offered := websocket.Subprotocols(r)
	chosen := ""
	for _, p := range offered {
		if slices.Contains(h.opt.Subprotocols, p) {
			chosen = p
			break
		}
	}
	if chosen == "" {
		got := "none"
		if len(offered) > 0 {
			got = strings.Join(offered, ", ")
		}
		// MQTT 3.1.1 §6.0: the client MUST include "mqtt" in the list of
		// WebSocket Sub Protocols it offers.
		http.Error(w, fmt.Sprintf("WebSocket subprotocol required: offer one of %s (offered: %s) [MQTT-6.0.0-3]",
			strings.Join(h.opt.Subprotocols, ", "), got), http.StatusBadRequest)
		return
	}
	var selected []string // nil selects none: no Sec-WebSocket-Protocol
	if !h.opt.OmitSubprotocol {
		selected = []string{chosen}
	}
	up := websocket.Upgrader{
		Subprotocols:      selected,
		EnableCompression: h.opt.EnableCompression,
		CheckOrigin:       h.opt.CheckOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			// As gorilla's default does: RFC 6455 §4.4 asks a refusal of
			// the version to name the one the server speaks.
			w.Header().Set("Sec-WebSocket-Version", "13")
			if status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", http.MethodGet) // RFC 9110 §15.5.6
			}
			http.Error(w, reason.Error(), status)
		},
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrader has replied with the reason
	}
	ws.SetReadLimit(h.opt.ReadLimit)
	wc := newWSConn(ws, h.opt.PacketPerMessage)
	var c net.Conn = wc
	if h.opt.WrapPlain != nil {
		c = h.opt.WrapPlain(c)
	}
	defer wc.Close()
	h.accept(c)
}
