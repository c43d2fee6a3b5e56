package emulator

import (
	"crypto/tls"
	"slices"

	"github.com/dps-conform/dps-conform/transport"
)

// legacyCBCSuites are the ECDHE CBC-SHA suites TLS 1.0 and 1.1 clients need;
// only the accept-tls10 fault enables them.
var legacyCBCSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// serverTLSConfig applies the TLS policy to the caller's base config. Both
// profiles are TLS 1.2 only with the suites DPS recommends (D-TLS: "Currently,
// DPS only supports TLS 1.2"; Part A §1). The client certificate is requested
// but not verified here: the register step judges it (Part A §3).
func serverTLSConfig(base *tls.Config, f faultSet) *tls.Config {
	c := transport.TLS12Only(base)
	c.ClientAuth = tls.RequestClientCert
	// WebSocket upgrades need HTTP/1.1; never offer h2.
	c.NextProtos = slices.DeleteFunc(slices.Clone(c.NextProtos), func(p string) bool { return p == "h2" })
	if f.has(FaultAcceptTLS13) {
		c.MaxVersion = tls.VersionTLS13
	}
	if f.has(FaultRefuseTLS12) {
		c.MinVersion, c.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	}
	if f.has(FaultAcceptTLS10) {
		c.MinVersion = tls.VersionTLS10
		for _, s := range legacyCBCSuites {
			if !slices.Contains(c.CipherSuites, s) {
				c.CipherSuites = append(c.CipherSuites, s)
			}
		}
	}
	return c
}
