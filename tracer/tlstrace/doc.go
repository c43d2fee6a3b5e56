// Package tlstrace decodes one TLS connection from reassembled TCP bytes of
// both directions: handshake metadata without keys (offered and chosen
// version, cipher suites, SNI, ALPN, certificates, alerts) and, with an NSS
// key log, decryption of TLS 1.2 AEAD suites and TLS 1.3.
package tlstrace

const (
	maxPlaintext  = 1 << 14
	maxCiphertext = maxPlaintext + 2048
)
