package tlstrace

import (
	"crypto/aes"
	stdcipher "crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// cipher is the read state of one direction: an AEAD, its fixed IV and the
// record sequence number.
type cipher struct {
	aead     stdcipher.AEAD
	iv       []byte // 4-byte salt (TLS 1.2 GCM) or 12-byte IV
	explicit bool   // TLS 1.2 GCM: 8-byte explicit nonce per record
	seq      uint64
	nonce    [12]byte
	aad      [13]byte
}

var errAuth = errors.New("decryption failed (authentication tag mismatch: wrong key or corrupted record)")

// open decrypts record r (header included). For TLS 1.3 it strips padding
// and returns the inner content type; otherwise the record type.
func (c *cipher) open(dst, r []byte, tls13 bool) (pt []byte, typ byte, err error) {
	typ = r[0]
	body := r[recordHeaderLen:]
	var aad []byte
	switch {
	case tls13:
		copy(c.nonce[:], c.iv)
		xorSeq(c.nonce[:], c.seq)
		aad = r[:recordHeaderLen]
	case c.explicit:
		if len(body) < 8+c.aead.Overhead() {
			return nil, 0, fmt.Errorf("encrypted record too short (%d bytes)", len(body))
		}
		copy(c.nonce[:4], c.iv)
		copy(c.nonce[4:], body[:8])
		body = body[8:]
		aad = c.aad12(r, len(body)-c.aead.Overhead())
	default:
		if len(body) < c.aead.Overhead() {
			return nil, 0, fmt.Errorf("encrypted record too short (%d bytes)", len(body))
		}
		copy(c.nonce[:], c.iv)
		xorSeq(c.nonce[:], c.seq)
		aad = c.aad12(r, len(body)-c.aead.Overhead())
	}
	pt, err = c.aead.Open(dst, c.nonce[:], body, aad)
	if err != nil {
		return nil, 0, errAuth
	}
	c.seq++
	if tls13 {
		i := len(pt) - 1
		for i >= 0 && pt[i] == 0 {
			i--
		}
		if i < 0 {
			return nil, 0, errors.New("decrypted TLS 1.3 record has no content type")
		}
		return pt[:i], pt[i], nil
	}
	return pt, typ, nil
}

func (c *cipher) aad12(r []byte, n int) []byte {
	binary.BigEndian.PutUint64(c.aad[:8], c.seq)
	c.aad[8], c.aad[9], c.aad[10] = r[0], r[1], r[2]
	binary.BigEndian.PutUint16(c.aad[11:], uint16(n))
	return c.aad[:]
}

func xorSeq(nonce []byte, seq uint64) {
	for i := 0; i < 8; i++ {
		nonce[len(nonce)-1-i] ^= byte(seq >> (8 * i))
	}
}

func newAEAD(chacha bool, key []byte) (stdcipher.AEAD, error) {
	if chacha {
		return chacha20poly1305.New(key)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return stdcipher.NewGCM(b)
}

// suite12 describes a TLS 1.2 AEAD suite.
type suite12 struct {
	keyLen int
	chacha bool
	sha384 bool
}

var suites12 = map[uint16]suite12{
	0xc02f: {16, false, false}, // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
	0xc02b: {16, false, false}, // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	0xc030: {32, false, true},  // TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
	0xc02c: {32, false, true},  // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
	0xcca8: {32, true, false},  // TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
	0xcca9: {32, true, false},  // TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	0xccaa: {32, true, false},  // TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256
	0x009c: {16, false, false}, // TLS_RSA_WITH_AES_128_GCM_SHA256
	0x009d: {32, false, true},  // TLS_RSA_WITH_AES_256_GCM_SHA384
	0x009e: {16, false, false}, // TLS_DHE_RSA_WITH_AES_128_GCM_SHA256
	0x009f: {32, false, true},  // TLS_DHE_RSA_WITH_AES_256_GCM_SHA384
}

// keys12 derives the client and server write ciphers of a TLS 1.2 suite
// from the master secret (RFC 5246 §6.3, RFC 5288, RFC 7905).
func keys12(suite uint16, master, clientRandom, serverRandom []byte) (client, server *cipher, err error) {
	st, ok := suites12[suite]
	if !ok {
		return nil, nil, fmt.Errorf("cipher suite %s not supported for decryption", SuiteName(suite))
	}
	ivLen := 4
	if st.chacha {
		ivLen = 12
	}
	h := sha256.New
	if st.sha384 {
		h = sha512.New384
	}
	seed := append(append([]byte(nil), serverRandom...), clientRandom...)
	kb := prf12(h, master, "key expansion", seed, 2*st.keyLen+2*ivLen)
	ck, sk := kb[:st.keyLen], kb[st.keyLen:2*st.keyLen]
	civ, siv := kb[2*st.keyLen:2*st.keyLen+ivLen], kb[2*st.keyLen+ivLen:]
	ca, err := newAEAD(st.chacha, ck)
	if err != nil {
		return nil, nil, err
	}
	sa, err := newAEAD(st.chacha, sk)
	if err != nil {
		return nil, nil, err
	}
	return &cipher{aead: ca, iv: civ, explicit: !st.chacha}, &cipher{aead: sa, iv: siv, explicit: !st.chacha}, nil
}

// prf12 is the TLS 1.2 PRF P_hash(secret, label + seed) (RFC 5246 §5).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	mac.Write(ls)
	a := mac.Sum(nil)
	var out []byte
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n]
}

// suite13 describes a TLS 1.3 suite.
type suite13 struct {
	keyLen int
	chacha bool
	sha384 bool
}

func (s *Stream) suite13() *suite13 {
	switch s.facts.Suite {
	case 0x1301:
		return &suite13{16, false, false}
	case 0x1302:
		return &suite13{32, false, true}
	case 0x1303:
		return &suite13{32, true, false}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func (st *suite13) expandLabel(secret []byte, label string, n int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = append(info, byte(n>>8), byte(n), byte(len(full)))
	info = append(info, full...)
	info = append(info, 0)
	if st.sha384 {
		return hkdf.Expand(sha512.New384, secret, string(info), n)
	}
	return hkdf.Expand(sha256.New, secret, string(info), n)
}

func (st *suite13) cipher(secret []byte) (*cipher, error) {
	if st == nil {
		return nil, errors.New("unsupported TLS 1.3 cipher suite")
	}
	key, err := st.expandLabel(secret, "key", st.keyLen)
	if err != nil {
		return nil, err
	}
	iv, err := st.expandLabel(secret, "iv", 12)
	if err != nil {
		return nil, err
	}
	a, err := newAEAD(st.chacha, key)
	if err != nil {
		return nil, err
	}
	return &cipher{aead: a, iv: iv}, nil
}

// nextSecret derives the traffic secret after a KeyUpdate (RFC 8446 §7.2).
func (st *suite13) nextSecret(secret []byte) ([]byte, error) {
	if st == nil {
		return nil, errors.New("unsupported TLS 1.3 cipher suite")
	}
	return st.expandLabel(secret, "traffic upd", len(secret))
}
