package wstrace

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Bounds keeping memory per Stream bounded on hostile input.
const (
	maxHTTPHeader = 16 << 10 // upgrade request or response head
	maxCompressed = 1 << 20  // compressed bytes of one message buffered
	maxInflated   = 4 << 20  // inflated bytes of one message
	maxProblems   = 64
	maxControl    = 125
	deflateWindow = 32 << 10
)

// Frame opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

type phase uint8

const (
	phaseHTTP   phase = iota // reading the upgrade request or response head
	phaseFrames              // reading frames
	phaseDone                // given up: bytes are ignored
)

// dirState is the decoding state of one direction.
type dirState struct {
	phase phase
	base  int64 // stream offset of the next byte
	head  []byte

	hdr      []byte // partial frame header
	frameOff int64  // offset of the current frame
	// closed: this direction sent a Close; dataAfterClose: a data frame
	// after it was reported (once).
	closed, dataAfterClose bool
	opcode                 byte
	fin                    bool
	masked                 bool
	mask                   [4]byte
	maskPos                int
	left                   uint64 // payload bytes of the current frame still to come
	inFrame                bool
	control                []byte // control frame payload (at most 125 bytes kept)
	dropping               bool   // payload of the current frame is discarded

	inMessage  bool // a fragmented data message is in progress
	compressed bool // the current message has RSV1 (permessage-deflate)
	lost       bool // the current compressed message lost data: drop it
	comp       []byte
	dict       []byte // sliding window for context takeover
	noTakeover bool
	broken     bool // inflate context lost: compressed messages cannot be decoded
}

// Stream decodes one WebSocket connection. It is not safe for concurrent use.
type Stream struct {
	facts Facts
	dir   [2]dirState
	out   []byte
	errs  []error
	fr    io.ReadCloser
	br    bytes.Reader
}

// NewStream returns a Stream expecting the HTTP upgrade request (c2s) and
// response (s2c) first.
func NewStream() *Stream { return &Stream{} }

// Facts returns what was learned so far, owned by the Stream.
func (s *Stream) Facts() *Facts { return &s.facts }

func (s *Stream) problem(d Dir, off int64, format string, args ...any) {
	p := Problem{Dir: d, Offset: off, Msg: fmt.Sprintf(format, args...)}
	if len(s.facts.Problems) < maxProblems {
		s.facts.Problems = append(s.facts.Problems, p)
	}
	if len(s.errs) < maxProblems {
		s.errs = append(s.errs, &Error{p})
	}
}

// LooksLikeUpgrade reports whether b starts with a "GET " request line
// with a plausible path (origin form "/..." or absolute "http...") and an
// HTTP/1.x version.
func LooksLikeUpgrade(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("GET "))
	if !ok || len(rest) == 0 || (rest[0] != '/' && rest[0] != 'h') {
		return false
	}
	i := bytes.IndexByte(rest, ' ')
	if i <= 0 || i > 8<<10 {
		return false
	}
	for _, c := range rest[:i] {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return bytes.HasPrefix(rest[i:], []byte(" HTTP/1."))
}

// Feed consumes the next bytes of direction d and returns message payload
// bytes (text and binary, inflated when permessage-deflate is in use)
// completed by b, in frame order; the result aliases an internal buffer
// valid until the next Feed. A non-nil error reports non-fatal problems
// (*Error, several joined with errors.Join); decoding continues.
func (s *Stream) Feed(d Dir, b []byte) (payload []byte, err error) {
	s.out = s.out[:0]
	s.errs = s.errs[:0]
	if d > ServerToClient {
		return nil, fmt.Errorf("wstrace: invalid direction %d", d)
	}
	ds := &s.dir[d]
	for len(b) > 0 {
		switch ds.phase {
		case phaseHTTP:
			b = s.httpHead(d, ds, b)
		case phaseFrames:
			b = s.frames(d, ds, b)
		default:
			ds.base += int64(len(b))
			b = nil
		}
	}
	if len(s.out) > 0 {
		payload = s.out
	}
	switch len(s.errs) {
	case 0:
	case 1:
		err = s.errs[0]
	default:
		err = errors.Join(s.errs...)
	}
	return payload, err
}

// httpHead accumulates the request or response head up to the blank line.
func (s *Stream) httpHead(d Dir, ds *dirState, b []byte) []byte {
	start := len(ds.head)
	// Search from 3 bytes back so a "\r\n\r\n" split across Feeds is found.
	from := max(0, start-3)
	ds.head = append(ds.head, b[:min(len(b), maxHTTPHeader+4-start)]...)
	i := bytes.Index(ds.head[from:], []byte("\r\n\r\n"))
	if i < 0 {
		if len(ds.head) > maxHTTPHeader {
			s.problem(d, ds.base, "HTTP head exceeds %d bytes without an empty line: giving up %s", maxHTTPHeader, d)
			ds.phase = phaseDone
			ds.base += int64(len(ds.head))
			ds.head = nil
			return b[min(len(b), maxHTTPHeader+4-start):]
		}
		return nil
	}
	end := from + i + 4
	used := end - start
	head := ds.head[:end]
	off := ds.base
	ds.base += int64(end)
	ds.head = nil
	ds.phase = phaseFrames
	if d == ClientToServer {
		s.request(d, off, head)
	} else {
		s.response(d, off, head)
	}
	return b[used:]
}

func (s *Stream) request(d Dir, off int64, head []byte) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		s.problem(d, off, "malformed upgrade request: %v", err)
		return
	}
	if req.Method != http.MethodGet {
		s.problem(d, off, "upgrade request method %q, want GET (RFC 6455 §4.1)", req.Method)
	}
	if !headerHasToken(req.Header, "Upgrade", "websocket") {
		s.problem(d, off, "upgrade request without \"Upgrade: websocket\" (RFC 6455 §4.1)")
	}
	s.facts.Path = req.URL.RequestURI()
	s.facts.Host = req.Host
	s.facts.OfferedSubprotocols = headerList(req.Header, "Sec-Websocket-Protocol")
	s.facts.OfferedExtensions = strings.Join(req.Header.Values("Sec-Websocket-Extensions"), ", ")
}

func (s *Stream) response(d Dir, off int64, head []byte) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head)), nil)
	if err != nil {
		s.problem(d, off, "malformed upgrade response: %v", err)
		return
	}
	s.facts.Status = resp.StatusCode
	if resp.StatusCode != http.StatusSwitchingProtocols {
		s.problem(d, off, "upgrade refused with status %d: no WebSocket frames follow", resp.StatusCode)
		s.dir[ServerToClient].phase = phaseDone
		s.dir[ClientToServer].phase = phaseDone
		return
	}
	s.facts.Subprotocol = resp.Header.Get("Sec-Websocket-Protocol")
	s.facts.Extensions = strings.Join(resp.Header.Values("Sec-Websocket-Extensions"), ", ")
	for _, ext := range strings.Split(s.facts.Extensions, ",") {
		params := strings.Split(ext, ";")
		if strings.TrimSpace(params[0]) != "permessage-deflate" {
			continue
		}
		s.facts.Deflate = true
		for _, p := range params[1:] {
			switch strings.TrimSpace(p) {
			case "server_no_context_takeover":
				s.dir[ServerToClient].noTakeover = true
			case "client_no_context_takeover":
				s.dir[ClientToServer].noTakeover = true
			}
		}
		break
	}
}

func headerList(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range headerList(h, name) {
		if strings.EqualFold(v, token) {
			return true
		}
	}
	return false
}

// frames decodes frame headers and payloads from b.
func (s *Stream) frames(d Dir, ds *dirState, b []byte) []byte {
	if !ds.inFrame {
		return s.frameHeader(d, ds, b)
	}
	n := int(min(uint64(len(b)), ds.left))
	p := b[:n]
	ds.left -= uint64(n)
	ds.base += int64(n)
	b = b[n:]
	s.payload(d, ds, p)
	if ds.left == 0 {
		ds.inFrame = false
		s.endFrame(d, ds)
	}
	return b
}

// frameHeader accumulates and checks one frame header (RFC 6455 §5.2).
func (s *Stream) frameHeader(d Dir, ds *dirState, b []byte) []byte {
	if len(ds.hdr) == 0 {
		ds.frameOff = ds.base
	}
	if len(ds.hdr) < 2 {
		k := min(2-len(ds.hdr), len(b))
		ds.hdr = append(ds.hdr, b[:k]...)
		ds.base += int64(k)
		b = b[k:]
		if len(ds.hdr) < 2 {
			return b
		}
	}
	need := headerLen(ds.hdr)
	k := min(need-len(ds.hdr), len(b))
	ds.hdr = append(ds.hdr, b[:k]...)
	ds.base += int64(k)
	b = b[k:]
	if len(ds.hdr) < need {
		return b
	}
	h := ds.hdr
	ds.hdr = ds.hdr[:0]
	off := ds.frameOff
	s.facts.Frames[d]++
	fin, rsv, op := h[0]&0x80 != 0, h[0]&0x70, h[0]&0x0f
	masked := h[1]&0x80 != 0
	var n uint64
	switch l := h[1] & 0x7f; l {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
		if n < 126 {
			s.problem(d, off, "payload length %d not minimally encoded (RFC 6455 §5.2)", n)
		}
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
		if n>>63 != 0 {
			s.problem(d, off, "64-bit payload length has the most significant bit set (RFC 6455 §5.2): giving up %s", d)
			ds.phase = phaseDone
			return b
		}
		if n <= 0xffff {
			s.problem(d, off, "payload length %d not minimally encoded (RFC 6455 §5.2)", n)
		}
	default:
		n = uint64(l)
	}
	if masked {
		copy(ds.mask[:], h[len(h)-4:])
	}
	ds.fin, ds.opcode, ds.masked, ds.maskPos = fin, op, masked, 0
	ds.left, ds.inFrame, ds.dropping = n, n > 0, false
	ds.control = ds.control[:0]
	if d == ClientToServer && !masked {
		s.problem(d, off, "client frame unmasked (RFC 6455 §5.1)")
	}
	if d == ServerToClient && masked {
		s.problem(d, off, "server frame masked (RFC 6455 §5.1)")
	}
	isData := op == opText || op == opBinary
	if ds.closed && (isData || op == opContinuation) && !ds.dataAfterClose {
		s.problem(d, off, "%s frame after this side's Close (RFC 6455 §5.5.1: no data frames after a Close)", opName(op))
		ds.dataAfterClose = true
	}
	rsvOK := byte(0)
	if isData && s.facts.Deflate {
		rsvOK = 0x40 // RSV1: compressed message (RFC 7692 §6)
	}
	if rsv&^rsvOK != 0 {
		s.problem(d, off, "reserved bits set (RSV 0x%x) on %s frame", rsv>>4, opName(op))
	}
	switch {
	case op >= opClose:
		if op > opPong {
			s.problem(d, off, "reserved opcode 0x%x (RFC 6455 §5.2)", op)
			ds.dropping = true
			break
		}
		if !fin {
			s.problem(d, off, "control frame fragmented (RFC 6455 §5.5)")
		}
		if n > maxControl {
			s.problem(d, off, "control frame payload of %d bytes exceeds 125 (RFC 6455 §5.5)", n)
		}
	case op == opContinuation:
		if !ds.inMessage {
			s.problem(d, off, "continuation frame without a started message (RFC 6455 §5.4)")
			ds.dropping = true
		}
	case isData:
		if ds.inMessage {
			s.problem(d, off, "%s frame before the fragmented message ended (RFC 6455 §5.4)", opName(op))
			s.finishMessage(d, ds, off, false)
		}
		ds.inMessage = true
		ds.compressed = rsv&0x40 != 0 && s.facts.Deflate
		ds.lost = false
		ds.comp = ds.comp[:0]
	default:
		s.problem(d, off, "reserved opcode 0x%x (RFC 6455 §5.2)", op)
		ds.dropping = true
	}
	if !ds.inFrame {
		s.endFrame(d, ds)
	}
	return b
}

func headerLen(h []byte) int {
	n := 2
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h[1]&0x80 != 0 {
		n += 4
	}
	return n
}

// unmask unmasks p in place, eight bytes at a time where possible.
func (ds *dirState) unmask(p []byte) {
	if !ds.masked {
		return
	}
	pos := ds.maskPos
	i := 0
	if len(p) >= 16 {
		var k [8]byte
		for j := range k {
			k[j] = ds.mask[(pos+j)&3]
		}
		key := binary.LittleEndian.Uint64(k[:])
		for ; i+8 <= len(p); i += 8 {
			binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^key)
		}
	}
	for ; i < len(p); i++ {
		p[i] ^= ds.mask[(pos+i)&3]
	}
	ds.maskPos = (pos + len(p)) & 3
}

// payload handles payload bytes p of the current frame.
func (s *Stream) payload(d Dir, ds *dirState, p []byte) {
	if ds.dropping {
		return
	}
	if ds.opcode >= opClose {
		k := min(len(p), maxControl-len(ds.control))
		start := len(ds.control)
		ds.control = append(ds.control, p[:k]...)
		ds.unmask(ds.control[start:])
		ds.maskPos = (ds.maskPos + len(p) - k) & 3
		return
	}
	if ds.compressed {
		if ds.lost {
			return
		}
		if len(ds.comp)+len(p) > maxCompressed {
			s.problem(d, ds.frameOff, "compressed message exceeds %d bytes: dropped", maxCompressed)
			ds.lost = true
			ds.broken = !ds.noTakeover
			ds.comp = ds.comp[:0]
			return
		}
		start := len(ds.comp)
		ds.comp = append(ds.comp, p...)
		ds.unmask(ds.comp[start:])
		return
	}
	start := len(s.out)
	s.out = append(s.out, p...)
	ds.unmask(s.out[start:])
}

// endFrame finishes the current frame.
func (s *Stream) endFrame(d Dir, ds *dirState) {
	off := ds.frameOff
	switch {
	case ds.dropping:
	case ds.opcode == opPing:
		s.facts.Pings++
	case ds.opcode == opPong:
		s.facts.Pongs++
	case ds.opcode == opClose:
		c := &Close{Dir: d}
		switch {
		case len(ds.control) == 1:
			s.problem(d, off, "close frame payload of 1 byte (RFC 6455 §5.5.1)")
		case len(ds.control) >= 2:
			c.Code = binary.BigEndian.Uint16(ds.control)
			c.Reason = string(ds.control[2:])
			// RFC 6455 §7.4: 1005, 1006 and 1015 MUST NOT be sent,
			// codes below 1000 are not used, 1004 and 1016-2999 are
			// reserved; the reason is UTF-8 (§5.5.1).
			if cd := c.Code; cd < 1000 || cd >= 1004 && cd <= 1006 || cd == 1015 || cd >= 1016 && cd <= 2999 {
				s.problem(d, off, "close code %d may not be sent (RFC 6455 §7.4)", cd)
			}
			if !utf8.ValidString(c.Reason) {
				s.problem(d, off, "close reason is not UTF-8 (RFC 6455 §5.5.1)")
			}
		}
		ds.closed = true
		if s.facts.Close == nil {
			s.facts.Close = c
		}
	case ds.opcode < opClose && ds.fin:
		s.finishMessage(d, ds, off, true)
	}
}

// finishMessage ends the data message in progress, inflating it if
// compressed.
func (s *Stream) finishMessage(d Dir, ds *dirState, off int64, complete bool) {
	ds.inMessage = false
	if !ds.compressed {
		return
	}
	ds.compressed = false
	if ds.lost || !complete {
		ds.comp = ds.comp[:0]
		if !ds.noTakeover {
			ds.broken = true
		}
		return
	}
	if ds.broken {
		s.problem(d, off, "compressed message not inflated: deflate context lost earlier in %s", d)
		ds.comp = ds.comp[:0]
		return
	}
	// RFC 7692 §7.2.2: append 0x00 0x00 0xff 0xff; the extra final empty
	// stored block makes the inflater end cleanly.
	ds.comp = append(ds.comp, 0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff)
	var dict []byte
	if !ds.noTakeover {
		dict = ds.dict
	}
	s.br.Reset(ds.comp)
	if s.fr == nil {
		s.fr = flate.NewReaderDict(&s.br, dict)
	} else if err := s.fr.(flate.Resetter).Reset(&s.br, dict); err != nil {
		s.problem(d, off, "inflate: %v", err)
		return
	}
	start := len(s.out)
	n, err := io.Copy(appendWriter{&s.out}, io.LimitReader(s.fr, maxInflated+1))
	ds.comp = ds.comp[:0]
	if err != nil {
		s.problem(d, off, "inflate failed (RFC 7692 §7.2.2): %v", err)
		s.out = s.out[:start]
		if !ds.noTakeover {
			ds.broken = true
		}
		return
	}
	if n > maxInflated {
		s.problem(d, off, "inflated message exceeds %d bytes: dropped", maxInflated)
		s.out = s.out[:start]
		if !ds.noTakeover {
			ds.broken = true
		}
		return
	}
	if !ds.noTakeover {
		ds.dict = append(ds.dict, s.out[start:]...)
		if len(ds.dict) > deflateWindow {
			ds.dict = append(ds.dict[:0], ds.dict[len(ds.dict)-deflateWindow:]...)
		}
	}
}

type appendWriter struct{ b *[]byte }

func (w appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// Gap reports that n bytes of direction d were lost. A gap inside the
// payload of an uncompressed frame keeps framing (the lost payload is
// missing from the output); a gap inside a compressed message drops that
// message (and, with context takeover, later compressed messages of d);
// any other gap gives up direction d. Each case is recorded as a Problem.
func (s *Stream) Gap(d Dir, n int) {
	if d > ServerToClient || n <= 0 {
		return
	}
	ds := &s.dir[d]
	off := ds.base
	ds.base += int64(n)
	add := func(msg string) {
		if len(s.facts.Problems) < maxProblems {
			s.facts.Problems = append(s.facts.Problems, Problem{Dir: d, Offset: off, Msg: msg})
		}
	}
	if ds.phase == phaseFrames && ds.inFrame && len(ds.hdr) == 0 && uint64(n) <= ds.left {
		ds.left -= uint64(n)
		ds.maskPos = (ds.maskPos + n) & 3
		msg := fmt.Sprintf("gap of %d bytes inside a frame payload: %d payload bytes lost", n, n)
		if ds.compressed && !ds.lost {
			ds.lost = true
			msg += "; compressed message dropped"
		}
		add(msg)
		if ds.left == 0 {
			// The gap ended with the frame: the next one starts here.
			ds.inFrame = false
			s.endFrame(d, ds)
		}
		return
	}
	if ds.phase != phaseDone {
		add(fmt.Sprintf("gap of %d bytes: frame boundaries lost, giving up %s", n, d))
	}
	ds.phase = phaseDone
}

func opName(op byte) string {
	switch op {
	case opContinuation:
		return "continuation"
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opClose:
		return "close"
	case opPing:
		return "ping"
	case opPong:
		return "pong"
	}
	return fmt.Sprintf("opcode 0x%x", op)
}
