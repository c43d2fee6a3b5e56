package tlsprobe

import (
	"encoding/binary"
	"fmt"
	"net"
)

// MalformedError is a server's plaintext handshake that breaks TLS: what
// is wrong, and where, as a byte offset in the stream the server sent
// (from its first byte, record headers included). Err is crypto/tls's
// error for the same bytes, which names neither (a null chain reads
// "received unexpected handshake message of type *tls.certificateMsg
// when waiting for *tls.certificateMsg").
type MalformedError struct {
	// Offset is where What starts in the server's stream.
	Offset int
	// What is the record or message at fault ("Certificate message",
	// "record").
	What string
	// Msg says what is wrong with it, naming the field and its byte.
	Msg string
	Err error
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("malformed server handshake: %s at byte %d: %s (crypto/tls: %v)", e.What, e.Offset, e.Msg, e.Err)
}

func (e *MalformedError) Unwrap() error { return e.Err }

var _ error = (*MalformedError)(nil)

// maxRecorded bounds what a handshake keeps of the server's stream for
// diagnose: a plaintext TLS 1.2 flight with a chain of a few
// certificates fits.
const maxRecorded = 64 << 10

// recordingConn keeps the first maxRecorded bytes read from Conn.
type recordingConn struct {
	net.Conn
	got []byte
	// ended reports that a Read failed (EOF, a reset): the server's
	// stream ended where got does. Otherwise crypto/tls stopped reading,
	// and the server may have sent more than got holds.
	ended bool
}

func (c *recordingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if room := maxRecorded - len(c.got); room > 0 && n > 0 {
		c.got = append(c.got, b[:min(n, room)]...)
	}
	if err != nil {
		c.ended = true
	}
	return n, err
}

// Record content types and the server's handshake message types (RFC
// 5246 §6.2.1, §7.4; RFC 6066 §8 for CertificateStatus).
const (
	recordHandshake = 22
	msgCertificate  = 11
)

var serverMessages = map[byte]string{
	0: "HelloRequest", 2: "ServerHello", 4: "NewSessionTicket", 11: "Certificate",
	12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone", 22: "CertificateStatus",
}

// maxMessage is the largest handshake message taken as plausible
// (crypto/tls takes a Certificate message of up to 256 KiB).
const maxMessage = 1 << 18

// diagnose explains a failed handshake by the plaintext part of the
// server's stream b (its handshake records up to its ChangeCipherSpec,
// an alert or application data): the first record or handshake message
// that breaks TLS, as a MalformedError wrapping err; nil when that part
// is well formed (a refusal by alert, say). A record or message cut by
// the end of b is a finding only when streamEnded reports that the server's
// stream ended there; not when b was cut at maxRecorded, nor when
// crypto/tls stopped reading (it gives up on a ServerHello it refuses
// with the rest of the flight perhaps still arriving, and what it read
// ends wherever a read did). Handshake messages are reassembled across
// records, as TLS allows.
func diagnose(b []byte, streamEnded bool, err error) *MalformedError {
	bad := func(off int, what, format string, args ...any) *MalformedError {
		return &MalformedError{Offset: off, What: what, Msg: fmt.Sprintf(format, args...), Err: err}
	}
	var hs []byte // the handshake records' fragments, joined
	type seg struct{ at, off int }
	var segs []seg // hs[at] is byte off of b
	at := func(i int) int {
		s := segs[0]
		for _, t := range segs {
			if t.at <= i {
				s = t
			}
		}
		return s.off + i - s.at
	}
	pos := 0    // the start of the next message in hs
	ended := -1 // the offset of a record cut short by the stream's end
	whole := streamEnded && len(b) < maxRecorded
	off := 0
records:
	for off < len(b) {
		if len(b)-off < 5 {
			if whole {
				return bad(off, "record", "the server's stream ended after %d of the 5 bytes of its header", len(b)-off)
			}
			break
		}
		typ, n := b[off], int(binary.BigEndian.Uint16(b[off+3:]))
		if typ != recordHandshake {
			break // a ChangeCipherSpec (encrypted from here), an alert, …
		}
		frag := b[off+5 : min(off+5+n, len(b))]
		// A fragment that starts a message with its own length again
		// (2 bytes: the n-2 after them), where no message could start.
		if pos == len(hs) && n >= 6 && len(frag) >= 6 && int(binary.BigEndian.Uint16(frag)) == n-2 && !plausible(frag) {
			return bad(off, "record", "its %d-byte fragment starts with a second copy of its length, %d (the bytes after it), at byte %d, where a handshake message should start: a doubled length prefix",
				n, n-2, off+5)
		}
		segs = append(segs, seg{len(hs), off + 5})
		hs = append(hs, frag...)
		if len(frag) < n {
			ended = off
			break records
		}
		off += 5 + n
		for len(hs)-pos >= 4 {
			l := int(hs[pos+1])<<16 | int(hs[pos+2])<<8 | int(hs[pos+3])
			if len(hs)-pos-4 < l {
				break // continued in the next record
			}
			if m := checkMessage(hs[pos:pos+4+l], at(pos), func(i int) int { return at(pos + i) }, bad); m != nil {
				return m
			}
			pos += 4 + l
		}
	}
	if !whole {
		return nil
	}
	// A message the stream ended in.
	if len(hs)-pos >= 4 {
		l := int(hs[pos+1])<<16 | int(hs[pos+2])<<8 | int(hs[pos+3])
		if off >= len(b) || ended >= 0 {
			return bad(at(pos), name(hs[pos])+" message", "its header announces a %d-byte body; the server's stream ended after %d of them", l, len(hs)-pos-4)
		}
	}
	if k := len(hs) - pos; k > 0 && k < 4 && ended < 0 && off >= len(b) {
		return bad(at(pos), name(hs[pos])+" message", "the server's stream ended after %d of the 4 bytes of its header", k)
	}
	if ended >= 0 {
		n := int(binary.BigEndian.Uint16(b[ended+3:]))
		return bad(ended, "record", "its header announces a %d-byte fragment; the server's stream ended after %d of them", n, len(b)-ended-5)
	}
	return nil
}

// plausible reports whether b can start a server's handshake message: a
// known type and a length crypto/tls would read.
func plausible(b []byte) bool {
	_, ok := serverMessages[b[0]]
	return ok && int(b[1])<<16|int(b[2])<<8|int(b[3]) <= maxMessage
}

func name(typ byte) string {
	if n, ok := serverMessages[typ]; ok {
		return n
	}
	return fmt.Sprintf("handshake message type %d", typ)
}

func u24(b []byte) int { return int(b[0])<<16 | int(b[1])<<8 | int(b[2]) }

// checkMessage judges one whole handshake message m (header included)
// that starts at byte off of the server's stream; at(i) is the stream
// offset of m[i].
func checkMessage(m []byte, off int, at func(int) int, bad func(int, string, string, ...any) *MalformedError) *MalformedError {
	what := name(m[0]) + " message"
	body := m[4:]
	if _, ok := serverMessages[m[0]]; !ok {
		return bad(off, what, "a server sends no handshake message of type %d", m[0])
	}
	if m[0] != msgCertificate {
		// A body that starts with its own length again (3 bytes: the
		// bytes after them). Only a Certificate's body starts with a
		// length (its certificate_list's), one 3 bytes shorter.
		if len(body) >= 3 && u24(body) == len(body)-3 {
			return bad(off, what, "its %d-byte body starts with a second copy of its length, %d (the bytes after it), at byte %d: a doubled length prefix", len(body), len(body)-3, at(4))
		}
		return nil
	}
	// RFC 5246 §7.4.2: opaque ASN.1Cert<1..2^24-1>;
	// ASN.1Cert certificate_list<0..2^24-1>.
	if len(body) < 3 {
		return bad(off, what, "its %d-byte body is shorter than the 3-byte length of certificate_list", len(body))
	}
	list := u24(body)
	switch {
	case list == 0:
		return bad(off, what, "certificate_list is empty (its length, 0, at byte %d): the server presented no certificate (a null chain), where the server's certificate must come first", at(4))
	case list != len(body)-3:
		return bad(off, what, "the length of certificate_list, %d at byte %d, is not the %d bytes after it in the message", list, at(4), len(body)-3)
	}
	for i, p := 0, 3; p < len(body); i++ {
		if len(body)-p < 3 {
			return bad(off, what, "certificate %d at byte %d: %d bytes left, fewer than its 3-byte length", i, at(4+p), len(body)-p)
		}
		n := u24(body[p:])
		der := body[p+3 : min(p+3+n, len(body))]
		switch {
		case n == 0:
			return bad(off, what, "certificate %d at byte %d is empty (an ASN.1Cert is 1 to 2^24-1 bytes)", i, at(4+p))
		case len(der) < n:
			return bad(off, what, "certificate %d at byte %d: its length, %d, overruns certificate_list by %d bytes", i, at(4+p), n, n-len(der))
		case der[0] != 0x30:
			if k := nestedList(der); k > 1 {
				return bad(off, what, "certificate %d at byte %d (%d bytes) is no DER but a certificate_list again, of %d certificates with their 3-byte lengths: a doubled length prefix of certificate_list", i, at(4+p), n, k)
			} else if k == 1 {
				return bad(off, what, "certificate %d at byte %d (%d bytes) is no DER: it starts with another 3-byte length, %d at byte %d, of the DER after it: a doubled length prefix (of the certificate, or of a certificate_list of one)", i, at(4+p), n, n-3, at(4+p+3))
			}
			return bad(off, what, "certificate %d at byte %d does not start with a DER SEQUENCE (0x30) but 0x%02x at byte %d", i, at(4+p), der[0], at(4+p+3))
		}
		p += 3 + n
	}
	return nil
}

// nestedList returns how many certificates b holds when it is a
// certificate_list's content (3-byte lengths, each of a DER SEQUENCE,
// exactly filling b); 0 when it is not.
func nestedList(b []byte) int {
	k := 0
	for p := 0; p < len(b); k++ {
		if len(b)-p < 4 {
			return 0
		}
		n := u24(b[p:])
		if n == 0 || len(b)-p-3 < n || b[p+3] != 0x30 {
			return 0
		}
		p += 3 + n
	}
	return k
}
