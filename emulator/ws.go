package emulator

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/dps-conform/dps-conform/transport"
)

// wsServer is the HTTPS server of MQTT over WebSocket (Part A §10): the
// upgrade is accepted on /$iothub/websocket, / and /mqtt with subprotocol
// mqtt or MQTT (transport's defaults), and frames are a byte stream.
//
// A request that is no upgrade is answered and its connection closed (no
// keep-alive): it is no session, MaxConnections does not count it, and
// with keep-alive it would wait for the next request without a deadline.
func (s *Server) wsServer() *http.Server {
	srv := &http.Server{
		Handler:           s.counted(http.HandlerFunc(s.serveWS)),
		ReadHeaderTimeout: s.limits.ConnectTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	srv.SetKeepAlivesEnabled(false)
	return srv
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
		s.serveSession(s.ctx, c, "wss", certs, time.Time{})
	}
	opts := transport.WSOptions{WrapPlain: s.cfg.WrapConn}
	if s.faults.has(FaultWSStrictPath) {
		opts.Paths = []string{transport.DefaultWSPath}
	}
	if s.faults.has(FaultWSStrictSubprotocol) {
		opts.Subprotocols = []string{"mqtt"}
	}
	if s.faults.has(FaultWSNoSubprotocol) {
		opts.OmitSubprotocol = true
		session := run
		run = func(c net.Conn) {
			s.log.Info("WebSocket upgraded without a subprotocol (fault ws-no-subprotocol)", "remote", r.RemoteAddr)
			session(c)
		}
	}
	if s.faults.has(FaultWSPacketPerMessage) {
		opts.PacketPerMessage = true
	}
	transport.NewWSHandler(opts, run).ServeHTTP(w, r)
}
