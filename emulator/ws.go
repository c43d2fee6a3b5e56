package emulator

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"slices"

	"github.com/gorilla/websocket"

	"github.com/dps-conform/dps-conform/transport"
)

// wsServer is the HTTPS server of MQTT over WebSocket (Part A §10): the
// upgrade is accepted on /$iothub/websocket, / and /mqtt with subprotocol
// mqtt or MQTT (transport's defaults), and frames are a byte stream.
func (s *Server) wsServer() *http.Server {
	return &http.Server{
		Handler:           s.counted(http.HandlerFunc(s.serveWS)),
		ReadHeaderTimeout: s.limits.ConnectTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
}

// wsListener wraps l with the raw hook and TLS.
func (s *Server) wsListener(l net.Listener) net.Listener {
	if s.cfg.WrapRaw != nil {
		l = transport.WrapListener(l, s.cfg.WrapRaw)
	}
	return tls.NewListener(l, s.tlsConf)
}

// serveWS upgrades one request and runs the session in the handler
// goroutine; the peer certificates come from the request's TLS state.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	var certs = r.TLS.PeerCertificates
	run := func(c net.Conn) {
		if !s.track(c) {
			return
		}
		defer s.untrack(c)
		s.serveSession(s.ctx, c, "wss", certs)
	}
	opts := transport.WSOptions{WrapPlain: s.cfg.WrapConn}
	if s.faults.has(FaultWSStrictPath) {
		opts.Paths = []string{transport.DefaultWSPath}
	}
	if s.faults.has(FaultWSStrictSubprotocol) {
		opts.Subprotocols = []string{"mqtt"}
	}
	if s.faults.has(FaultWSNoSubprotocol) && s.upgradeWithoutSubprotocol(w, r, opts, run) {
		return
	}
	transport.NewWSHandler(opts, run).ServeHTTP(w, r)
}

// upgradeWithoutSubprotocol serves the ws-no-subprotocol fault: a request
// the handler would accept is upgraded without selecting a subprotocol (no
// Sec-WebSocket-Protocol in the 101 answer). It reports false, having
// written nothing, for requests the handler must refuse.
func (s *Server) upgradeWithoutSubprotocol(w http.ResponseWriter, r *http.Request, o transport.WSOptions, run func(net.Conn)) bool {
	paths, subs := o.Paths, o.Subprotocols
	if len(paths) == 0 {
		paths = transport.DefaultWSPaths()
	}
	if len(subs) == 0 {
		subs = transport.DefaultSubprotocols()
	}
	if !slices.Contains(paths, r.URL.Path) || !websocket.IsWebSocketUpgrade(r) ||
		!slices.ContainsFunc(websocket.Subprotocols(r), func(p string) bool { return slices.Contains(subs, p) }) {
		return false
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return true // the Upgrader has answered
	}
	ws.SetReadLimit(transport.DefaultWSReadLimit)
	wc := transport.NewWSConn(ws)
	defer wc.Close()
	s.log.Info("WebSocket upgraded without a subprotocol (fault ws-no-subprotocol)", "remote", r.RemoteAddr)
	run(s.wrapConn(wc))
	return true
}
