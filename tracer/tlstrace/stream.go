package tlstrace

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Record content types.
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
	typeHeartbeat        = 24
)

// Bounds keeping memory per Stream bounded on hostile input.
const (
	recordHeaderLen = 5
	maxHandshake    = 1 << 20 // largest handshake message reassembled
	maxProblems     = 64
	maxAlerts       = 64
)

// dirState is the decoding state of one direction.
type dirState struct {
	base   int64  // stream offset of the first unprocessed byte
	buf    []byte // partial record (header included), at most one record
	resync bool   // framing lost: looking for a plausible header

	encrypted bool    // TLS 1.2: ChangeCipherSpec seen in this direction
	cip       *cipher // current read cipher, nil if unknown
	stopped   bool    // decryption stopped (gap, auth failure)
	sawProt   bool    // a protected record was seen in this direction
	appWanted bool    // TLS 1.3: Finished seen, traffic secret 0 not yet logged

	hs     []byte // partial handshake message
	hsSkip int    // bytes of an oversized handshake message still to skip

	scratch []byte
}

// Stream decodes one TLS connection from reassembled TCP bytes of both
// directions. It is not safe for concurrent use.
type Stream struct {
	kl    *KeyLog
	facts Facts
	dir   [2]dirState

	clientRandom, serverRandom []byte
	tls13                      bool
	sec                        *secrets
	pending                    [2]*cipher // TLS 1.2 ciphers to install on ChangeCipherSpec
	appSecret                  [2][]byte  // TLS 1.3 traffic secrets installed after Finished
	curSecret                  [2][]byte  // TLS 1.3 current traffic secret (for KeyUpdate)
	// keysWanted: the ServerHello is known but the key log had no usable
	// entry yet; the lookup is retried when a protected record needs it,
	// since a capture's embedded key log may come after the ServerHello.
	keysWanted bool

	out  []byte
	errs []error
}

// NewStream returns a Stream that decrypts with secrets from kl; kl may be
// nil, then only handshake metadata is decoded and the missing key log is
// not reported as a problem.
func NewStream(kl *KeyLog) *Stream { return &Stream{kl: kl} }

// Facts returns what was learned so far. The result is owned by the Stream
// and updated by later calls.
func (s *Stream) Facts() *Facts { return &s.facts }

// LooksLikeTLS reports whether b is a plausible start of a TLS stream: a
// handshake record header 0x16 0x03 0x00..0x04 with a sane length.
func LooksLikeTLS(b []byte) bool {
	if len(b) < recordHeaderLen || !StartsHandshakeRecord(b) {
		return false
	}
	n := int(b[3])<<8 | int(b[4])
	return n > 0 && n <= maxCiphertext
}

// StartsHandshakeRecord reports whether b starts like a TLS handshake
// record header: content type 0x16 and version 0x0300..0x0304, whatever
// the length that follows (b holds at least 3 bytes).
func StartsHandshakeRecord(b []byte) bool {
	return len(b) >= 3 && b[0] == typeHandshake && b[1] == 3 && b[2] <= 4
}

// plausibleHeader reports whether h (5 bytes) can be a record header.
func plausibleHeader(h []byte) bool {
	if h[0] < typeChangeCipherSpec || h[0] > typeHeartbeat || h[1] != 3 || h[2] > 4 {
		return false
	}
	n := int(h[3])<<8 | int(h[4])
	return n <= maxCiphertext && (n > 0 || h[0] == typeApplicationData)
}

func (s *Stream) problem(d Dir, off int64, format string, args ...any) {
	s.addProblem(Problem{Dir: d, Offset: off, Msg: fmt.Sprintf(format, args...)})
}

// undecrypted records why d cannot be decrypted: missing keys or a suite
// this package does not decrypt, not an error of the peers (see
// Problem.Undecrypted).
func (s *Stream) undecrypted(d Dir, off int64, format string, args ...any) {
	s.addProblem(Problem{Dir: d, Offset: off, Msg: fmt.Sprintf(format, args...), Undecrypted: true})
}

func (s *Stream) addProblem(p Problem) {
	if len(s.facts.Problems) < maxProblems {
		s.facts.Problems = append(s.facts.Problems, p)
	}
	if len(s.errs) < maxProblems {
		s.errs = append(s.errs, &Error{p})
	}
}

// Feed consumes the next bytes of direction d. It returns application data
// decrypted from records completed by b (nil if none; it aliases an
// internal buffer valid until the next Feed). A non-nil error reports
// non-fatal problems (*Error, several joined with errors.Join); decoding
// continues where possible.
func (s *Stream) Feed(d Dir, b []byte) (plaintext []byte, err error) {
	s.out = s.out[:0]
	s.errs = s.errs[:0]
	if d > ServerToClient {
		return nil, fmt.Errorf("tlstrace: invalid direction %d", d)
	}
	ds := &s.dir[d]
	for len(b) > 0 {
		if ds.resync {
			b = s.resync(ds, b)
			continue
		}
		if len(ds.buf) == 0 && len(b) >= recordHeaderLen {
			// Fast path: whole records straight from b.
			if !plausibleHeader(b) {
				s.badHeader(d, ds, b[:recordHeaderLen])
				ds.base++
				b = b[1:]
				continue
			}
			n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
			if len(b) >= n {
				s.record(d, ds, b[:n])
				ds.base += int64(n)
				b = b[n:]
				continue
			}
		}
		// Slow path: accumulate in ds.buf.
		if len(ds.buf) < recordHeaderLen {
			k := min(recordHeaderLen-len(ds.buf), len(b))
			ds.buf = append(ds.buf, b[:k]...)
			b = b[k:]
			if len(ds.buf) < recordHeaderLen {
				break
			}
			if !plausibleHeader(ds.buf) {
				s.badHeader(d, ds, ds.buf)
				// Rescan the header bytes after the first one.
				rest := append([]byte(nil), ds.buf[1:]...)
				ds.buf = ds.buf[:0]
				ds.base++
				ds.resync = true
				rest = s.resync(ds, rest)
				if len(rest) > 0 {
					// Plausible header found inside the old header bytes.
					ds.buf = append(ds.buf, rest...)
				}
				continue
			}
		}
		n := recordHeaderLen + (int(ds.buf[3])<<8 | int(ds.buf[4]))
		k := min(n-len(ds.buf), len(b))
		ds.buf = append(ds.buf, b[:k]...)
		b = b[k:]
		if len(ds.buf) == n {
			s.record(d, ds, ds.buf)
			ds.base += int64(n)
			ds.buf = ds.buf[:0]
		}
	}
	if len(s.out) > 0 {
		plaintext = s.out
	}
	switch len(s.errs) {
	case 0:
	case 1:
		err = s.errs[0]
	default:
		err = errors.Join(s.errs...)
	}
	return plaintext, err
}

func (s *Stream) badHeader(d Dir, ds *dirState, h []byte) {
	s.problem(d, ds.base, "malformed record header % x (type %d, version 0x%02x%02x, length %d): resyncing", h, h[0], h[1], h[2], int(h[3])<<8|int(h[4]))
	ds.resync = true
	ds.hs = ds.hs[:0]
	ds.hsSkip = 0
}

// resync drops bytes of b (and of ds.buf, which holds fewer than 5 bytes)
// until a plausible record header starts; it returns the unconsumed rest.
func (s *Stream) resync(ds *dirState, b []byte) []byte {
	for len(ds.buf) > 0 && len(b) > 0 {
		k := min(recordHeaderLen-len(ds.buf), len(b))
		ds.buf = append(ds.buf, b[:k]...)
		b = b[k:]
		if len(ds.buf) < recordHeaderLen {
			return b
		}
		if plausibleHeader(ds.buf) {
			// Hand the header back to the caller through b.
			h := append([]byte(nil), ds.buf...)
			ds.buf = ds.buf[:0]
			ds.resync = false
			return append(h, b...)
		}
		ds.buf = append(ds.buf[:0], ds.buf[1:]...)
		ds.base++
	}
	if len(ds.buf) > 0 {
		return b
	}
	for i := 0; i+recordHeaderLen <= len(b); i++ {
		if plausibleHeader(b[i:]) {
			ds.base += int64(i)
			ds.resync = false
			return b[i:]
		}
	}
	k := max(0, len(b)-(recordHeaderLen-1))
	ds.base += int64(k)
	ds.buf = append(ds.buf[:0], b[k:]...)
	return nil
}

// Gap reports that n bytes of direction d were lost: record framing resyncs
// on the next plausible record header and decryption of d stops, since
// record sequence numbers are lost.
func (s *Stream) Gap(d Dir, n int) {
	if d > ServerToClient || n <= 0 {
		return
	}
	ds := &s.dir[d]
	ds.base += int64(len(ds.buf))
	off := ds.base
	ds.base += int64(n)
	ds.buf = ds.buf[:0]
	ds.hs = ds.hs[:0]
	ds.hsSkip = 0
	ds.resync = true
	msg := fmt.Sprintf("gap of %d bytes: record framing lost, resyncing", n)
	// A TLS 1.2 gap before ChangeCipherSpec loses no sequence numbers.
	if s.tls13 || ds.encrypted {
		if ds.cip != nil && !ds.stopped {
			msg += "; decryption stopped (sequence numbers lost)"
			s.facts.Stopped[d] = true
		}
		ds.stopped = true
	}
	if len(s.facts.Problems) < maxProblems {
		s.facts.Problems = append(s.facts.Problems, Problem{Dir: d, Offset: off, Msg: msg})
	}
}

// record processes one complete record r (header included) at ds.base.
func (s *Stream) record(d Dir, ds *dirState, r []byte) {
	typ := r[0]
	body := r[recordHeaderLen:]
	off := ds.base
	protected := (s.tls13 && typ == typeApplicationData) || (!s.tls13 && ds.encrypted && typ != typeChangeCipherSpec)
	// Larger records than 2^14+2048 bytes never get here (resync).
	switch {
	case !protected && len(body) > 1<<14:
		s.problem(d, off, "plaintext record of %d bytes exceeds 2^14 (RFC 5246 §6.2.1, RFC 8446 §5.1)", len(body))
	case protected && s.tls13 && len(body) > 1<<14+256:
		s.problem(d, off, "TLS 1.3 record of %d bytes exceeds 2^14+256 (RFC 8446 §5.2)", len(body))
	}
	if protected {
		if ds.cip == nil && s.keysWanted && !ds.sawProt && !ds.stopped {
			// First protected record of d and no keys yet: the key log
			// may have grown since the ServerHello (a DSB after it).
			s.setupKeys(d, off, true)
			if !s.tls13 {
				ds.cip = s.pending[d]
			}
		}
		if ds.cip == nil && ds.appWanted && !ds.stopped {
			// The traffic secret may have been logged after the Finished;
			// if it still is not, the rest of d stays encrypted: say so.
			ds.appWanted = false
			if sec0 := s.sec.secret0(d); sec0 != nil {
				s.install13(d, sec0, off, "traffic secret 0")
			} else {
				s.undecrypted(d, off, "key log has no traffic secret 0 for %s: decryption of %s stops", d, d)
				ds.stopped = true
			}
		}
		ds.sawProt = true
		s.facts.Protected = true
		if ds.cip == nil || ds.stopped {
			return
		}
		pt, inner, err := ds.cip.open(ds.scratch[:0], r, s.tls13)
		if err != nil {
			s.problem(d, off, "record of %d bytes: %v; decryption of %s stopped", len(r), err, d)
			ds.stopped = true
			s.facts.Stopped[d] = true
			return
		}
		ds.scratch = pt[:0]
		s.facts.Decrypted = true
		s.content(d, ds, inner, pt, off, true)
		return
	}
	switch typ {
	case typeChangeCipherSpec:
		if !s.tls13 && !ds.encrypted {
			if s.keysWanted {
				s.setupKeys(d, off, false)
			}
			ds.encrypted = true
			ds.cip = s.pending[d]
			if len(ds.hs) > 0 || ds.hsSkip > 0 {
				s.problem(d, off, "ChangeCipherSpec inside a handshake message")
				ds.hs, ds.hsSkip = ds.hs[:0], 0
			}
		}
	default:
		s.content(d, ds, typ, body, off, false)
	}
}

// content handles a record's plaintext of type typ.
func (s *Stream) content(d Dir, ds *dirState, typ byte, pt []byte, off int64, enc bool) {
	switch typ {
	case typeApplicationData:
		if enc {
			s.out = append(s.out, pt...)
		}
	case typeAlert:
		// TLS 1.2 may coalesce alerts in one record (RFC 5246 §6.2.1);
		// TLS 1.3 must not (RFC 8446 §5.1).
		if len(pt) != 2 && (s.tls13 || len(pt) == 0 || len(pt)%2 != 0) {
			s.problem(d, off, "alert record with %d bytes, want 2", len(pt))
			return
		}
		for ; len(pt) >= 2 && len(s.facts.Alerts) < maxAlerts; pt = pt[2:] {
			s.facts.Alerts = append(s.facts.Alerts, Alert{Dir: d, Level: pt[0], Description: pt[1], Encrypted: enc})
		}
	case typeHandshake:
		s.handshakeBytes(d, ds, pt, off)
	case typeChangeCipherSpec, typeHeartbeat:
	default:
		s.problem(d, off, "unknown content type %d", typ)
	}
}

// handshakeBytes reassembles handshake messages across records.
func (s *Stream) handshakeBytes(d Dir, ds *dirState, b []byte, off int64) {
	for len(b) > 0 {
		if ds.hsSkip > 0 {
			k := min(ds.hsSkip, len(b))
			ds.hsSkip -= k
			b = b[k:]
			continue
		}
		if len(ds.hs) < 4 {
			k := min(4-len(ds.hs), len(b))
			ds.hs = append(ds.hs, b[:k]...)
			b = b[k:]
			if len(ds.hs) < 4 {
				return
			}
		}
		n := int(ds.hs[1])<<16 | int(ds.hs[2])<<8 | int(ds.hs[3])
		if n > maxHandshake {
			s.problem(d, off, "handshake message type %d of %d bytes exceeds %d: skipped", ds.hs[0], n, maxHandshake)
			ds.hs = ds.hs[:0]
			ds.hsSkip = n
			continue
		}
		k := min(4+n-len(ds.hs), len(b))
		ds.hs = append(ds.hs, b[:k]...)
		b = b[k:]
		if len(ds.hs) == 4+n {
			s.handshake(d, ds.hs[0], ds.hs[4:], off)
			ds.hs = ds.hs[:0]
		}
	}
}

// Handshake message types.
const (
	hsClientHello        = 1
	hsServerHello        = 2
	hsNewSessionTicket   = 4
	hsEncryptedExtension = 8
	hsCertificate        = 11
	hsClientKeyExchange  = 16
	hsFinished           = 20
	hsKeyUpdate          = 24
)

// helloRetryRandom is the ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

func (s *Stream) handshake(d Dir, typ byte, m []byte, off int64) {
	switch {
	case typ == hsClientHello && d == ClientToServer:
		if err := s.clientHello(m); err != nil {
			s.problem(d, off, "ClientHello: %v", err)
		}
	case typ == hsServerHello && d == ServerToClient:
		if err := s.serverHello(m, off); err != nil {
			s.problem(d, off, "ServerHello: %v", err)
		}
	case typ == hsEncryptedExtension && d == ServerToClient:
		s.encryptedExtensions(m)
	case typ == hsCertificate:
		certs, err := parseCertificate(m, s.tls13)
		if err != nil {
			s.problem(d, off, "Certificate: %v", err)
			return
		}
		if d == ServerToClient {
			s.facts.ServerCertificates = certs
		} else {
			s.facts.ClientCertificate = len(certs) > 0
			s.facts.ClientCertificateKnown = true
			s.facts.ClientCertificates = certs
		}
	case typ == hsClientKeyExchange && d == ClientToServer:
		s.facts.ClientCertificateKnown = true
	case typ == hsFinished && s.tls13:
		if d == ClientToServer && !s.facts.ClientCertificateKnown {
			s.facts.ClientCertificateKnown = true
		}
		if s.sec != nil {
			// Secrets logged after the ServerHello (a client logs its
			// traffic secrets after the server's Finished).
			s.appSecret = [2][]byte{s.sec.cts0, s.sec.sts0}
			if s.appSecret[d] == nil && s.dir[d].cip != nil {
				// Not logged yet: retried at the next protected record.
				s.dir[d].cip = nil
				s.dir[d].appWanted = true
				return
			}
		}
		s.install13(d, s.appSecret[d], off, "traffic secret 0")
	case typ == hsKeyUpdate && s.tls13:
		if s.curSecret[d] != nil {
			next, err := s.suite13().nextSecret(s.curSecret[d])
			if err == nil {
				s.install13(d, next, off, "updated traffic secret")
			}
		}
	}
}

// install13 switches d to the TLS 1.3 traffic secret sec.
func (s *Stream) install13(d Dir, sec []byte, off int64, what string) {
	ds := &s.dir[d]
	if sec == nil {
		if ds.cip != nil {
			s.undecrypted(d, off, "key log has no %s for %s: decryption of %s stops", what, d, d)
		}
		ds.cip = nil
		return
	}
	c, err := s.suite13().cipher(sec)
	if err != nil {
		s.problem(d, off, "%s: %v", what, err)
		ds.cip = nil
		return
	}
	ds.cip = c
	s.curSecret[d] = sec
}

func (s *Stream) clientHello(m []byte) error {
	r := reader(m)
	ver, ok := r.u16()
	random, ok2 := r.bytes(32)
	_, ok3 := r.vec8()
	suites, ok4 := r.vec16()
	_, ok5 := r.vec8()
	if !ok || !ok2 || !ok3 || !ok4 || !ok5 || len(suites)%2 != 0 {
		return errors.New("truncated or malformed before extensions")
	}
	s.facts.ClientHello = true
	s.clientRandom = append([]byte(nil), random...)
	s.facts.OfferedSuites = s.facts.OfferedSuites[:0]
	for i := 0; i+1 < len(suites); i += 2 {
		s.facts.OfferedSuites = append(s.facts.OfferedSuites, uint16(suites[i])<<8|uint16(suites[i+1]))
	}
	s.facts.OfferedVersions = []uint16{ver}
	s.facts.SNI = ""
	s.facts.ALPN = nil
	if len(r) == 0 {
		return nil
	}
	exts, ok := r.vec16()
	if !ok {
		return errors.New("malformed extensions length")
	}
	return forExtensions(exts, func(typ uint16, e reader) error {
		switch typ {
		case 0: // server_name
			list, ok := e.vec16()
			for ok && len(list) > 0 {
				var nt byte
				var name []byte
				nt, ok = list.u8()
				name, ok2 := list.vec16()
				ok = ok && ok2
				if ok && nt == 0 {
					s.facts.SNI = string(name)
					return nil
				}
			}
			if !ok {
				return errors.New("malformed server_name extension")
			}
		case 16: // ALPN
			list, ok := e.vec16()
			for ok && len(list) > 0 {
				var p []byte
				p, ok = list.vec8()
				if ok {
					s.facts.ALPN = append(s.facts.ALPN, string(p))
				}
			}
			if !ok {
				return errors.New("malformed application_layer_protocol_negotiation extension")
			}
		case 43: // supported_versions
			list, ok := e.vec8()
			if !ok || len(list)%2 != 0 {
				return errors.New("malformed supported_versions extension")
			}
			s.facts.OfferedVersions = s.facts.OfferedVersions[:0]
			for i := 0; i+1 < len(list); i += 2 {
				s.facts.OfferedVersions = append(s.facts.OfferedVersions, uint16(list[i])<<8|uint16(list[i+1]))
			}
		}
		return nil
	})
}

func (s *Stream) serverHello(m []byte, off int64) error {
	r := reader(m)
	ver, ok := r.u16()
	random, ok2 := r.bytes(32)
	_, ok3 := r.vec8()
	suite, ok4 := r.u16()
	_, ok5 := r.u8()
	if !ok || !ok2 || !ok3 || !ok4 || !ok5 {
		return errors.New("truncated or malformed before extensions")
	}
	if len(r) > 0 {
		exts, ok := r.vec16()
		if !ok {
			return errors.New("malformed extensions length")
		}
		err := forExtensions(exts, func(typ uint16, e reader) error {
			switch typ {
			case 43: // supported_versions
				v, ok := e.u16()
				if !ok {
					return errors.New("malformed supported_versions extension")
				}
				ver = v
			case 16: // ALPN (TLS 1.2; TLS 1.3 has it in EncryptedExtensions)
				list, _ := e.vec16()
				if p, ok := list.vec8(); ok {
					s.facts.ALPNSelected = string(p)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	s.facts.ServerHello = true
	s.facts.Version = ver
	s.facts.Suite = suite
	if string(random) == string(helloRetryRandom) {
		// HelloRetryRequest: the real ServerHello follows. Only TLS 1.3
		// has one, so the ChangeCipherSpecs sent for middlebox
		// compatibility (RFC 8446 D.4) must not start TLS 1.2 protection:
		// the second ClientHello and the ServerHello are in the clear.
		s.tls13 = true
		return nil
	}
	s.serverRandom = append([]byte(nil), random...)
	s.tls13 = ver == 0x0304
	s.keysWanted = s.kl != nil
	s.setupKeys(ServerToClient, off, false)
	return nil
}

func (s *Stream) encryptedExtensions(m []byte) {
	r := reader(m)
	exts, ok := r.vec16()
	if !ok {
		return
	}
	_ = forExtensions(exts, func(typ uint16, e reader) error {
		if typ == 16 {
			list, _ := e.vec16()
			if p, ok := list.vec8(); ok {
				s.facts.ALPNSelected = string(p)
			}
		}
		return nil
	})
}

// setupKeys looks up the key log once the ServerHello is known, and again
// at the first protected record while the keys are missing. Missing keys
// are reported only when report is set (decryption is needed now); the
// lookup is not retried after that.
func (s *Stream) setupKeys(d Dir, off int64, report bool) {
	if s.kl == nil || !s.keysWanted {
		return
	}
	sec := s.kl.lookup(s.clientRandom)
	if sec == nil || (s.tls13 && sec.chts == nil && sec.shts == nil && sec.cts0 == nil && sec.sts0 == nil) ||
		(!s.tls13 && sec.master == nil) {
		if report {
			s.keysWanted = false
			s.undecrypted(d, off, "no key log entry for client random %s", hex.EncodeToString(s.clientRandom))
		}
		return
	}
	s.keysWanted = false
	s.sec = sec
	if s.tls13 {
		st := s.suite13()
		if st == nil {
			s.undecrypted(d, off, "cipher suite %s not supported for decryption", SuiteName(s.facts.Suite))
			return
		}
		if sec.chts == nil && sec.shts == nil && sec.cts0 == nil && sec.sts0 == nil {
			s.undecrypted(d, off, "no TLS 1.3 traffic secrets in key log for client random %s", hex.EncodeToString(s.clientRandom))
			return
		}
		s.facts.KeyLogFound = true
		s.appSecret = [2][]byte{sec.cts0, sec.sts0}
		for i, hs := range [2][]byte{sec.chts, sec.shts} {
			if hs == nil {
				s.undecrypted(Dir(i), off, "key log has no %s handshake traffic secret", Dir(i))
				continue
			}
			s.install13(Dir(i), hs, off, "handshake traffic secret")
		}
		return
	}
	if sec.master == nil {
		s.undecrypted(d, off, "no CLIENT_RANDOM master secret in key log for client random %s", hex.EncodeToString(s.clientRandom))
		return
	}
	s.facts.KeyLogFound = true
	c, sc, err := keys12(s.facts.Suite, sec.master, s.clientRandom, s.serverRandom)
	if err != nil {
		s.undecrypted(d, off, "%v", err)
		return
	}
	s.pending = [2]*cipher{c, sc}
}

func parseCertificate(m []byte, tls13 bool) ([][]byte, error) {
	r := reader(m)
	if tls13 {
		if _, ok := r.vec8(); !ok {
			return nil, errors.New("malformed certificate_request_context")
		}
	}
	list, ok := r.vec24()
	if !ok {
		return nil, errors.New("malformed certificate_list length")
	}
	var certs [][]byte
	for len(list) > 0 {
		c, ok := list.vec24()
		if !ok {
			return nil, errors.New("malformed certificate entry")
		}
		if tls13 {
			if _, ok := list.vec16(); !ok {
				return nil, errors.New("malformed certificate entry extensions")
			}
		}
		certs = append(certs, append([]byte(nil), c...))
	}
	return certs, nil
}

func forExtensions(exts reader, f func(uint16, reader) error) error {
	for len(exts) > 0 {
		typ, ok := exts.u16()
		body, ok2 := exts.vec16()
		if !ok || !ok2 {
			return errors.New("malformed extension")
		}
		if err := f(typ, body); err != nil {
			return err
		}
	}
	return nil
}

// reader is a cursor over handshake bytes; every method reports success.
type reader []byte

func (r *reader) bytes(n int) ([]byte, bool) {
	if n < 0 || len(*r) < n {
		*r = nil
		return nil, false
	}
	b := (*r)[:n]
	*r = (*r)[n:]
	return b, true
}

func (r *reader) u8() (byte, bool) {
	b, ok := r.bytes(1)
	if !ok {
		return 0, false
	}
	return b[0], true
}

func (r *reader) u16() (uint16, bool) {
	b, ok := r.bytes(2)
	if !ok {
		return 0, false
	}
	return uint16(b[0])<<8 | uint16(b[1]), true
}

func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok {
		return nil, false
	}
	b, ok := r.bytes(int(n))
	return b, ok
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok {
		return nil, false
	}
	b, ok := r.bytes(int(n))
	return b, ok
}

func (r *reader) vec24() (reader, bool) {
	b, ok := r.bytes(3)
	if !ok {
		return nil, false
	}
	v, ok := r.bytes(int(b[0])<<16 | int(b[1])<<8 | int(b[2]))
	return v, ok
}
