package transport

import "crypto/tls"

// DPSCipherSuites returns the TLS 1.2 cipher suites DPS recommends (source:
// D-TLS, https://learn.microsoft.com/azure/iot-dps/tls-support, listed in
// /work/shared/DPS-PROTOCOL.md) that crypto/tls implements, strongest first:
// the four ECDHE AES-GCM suites, then the two ECDHE AES-CBC-SHA256 "legacy"
// suites. The CBC-SHA384 suites DPS also lists are not implemented by Go.
func DPSCipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	}
}

// TLS12Only returns a clone of base (or a new config when base is nil)
// restricted to TLS 1.2 with DPSCipherSuites, the policy of a DPS resource
// whose minTlsVersion is 1.2.
func TLS12Only(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.MinVersion = tls.VersionTLS12
	c.MaxVersion = tls.VersionTLS12
	c.CipherSuites = DPSCipherSuites()
	return c
}
