package tracer

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"
)

// maxRecord bounds the size of one pcap record or pcapng block; larger
// lengths are corruption, not data.
const maxRecord = 64 << 20

// ErrCorrupt is wrapped by every error about a corrupt capture file.
var ErrCorrupt = errors.New("corrupt capture file")

// CorruptError reports a capture file that cannot be read past Offset.
type CorruptError struct {
	// Offset is the byte offset of the record or block (or of the field
	// within the file header) that is broken.
	Offset int64
	// Where names the record or block: "pcap file header", "pcap record 3",
	// "pcapng block 5 (Enhanced Packet Block)".
	Where string
	Msg   string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("tracer: %s at byte offset %d: %s", e.Where, e.Offset, e.Msg)
}

// Unwrap returns ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// truncatedError is a last record cut short: a warning, not an error.
type truncatedError struct{ msg string }

func (e truncatedError) Error() string { return e.msg }

// source yields the frames of a capture file. The returned data is valid
// until the next call.
type source interface {
	next() (data []byte, ts time.Time, link uint32, err error)
	// secrets returns the TLS key log lines of pcapng Decryption Secrets
	// Blocks read so far.
	secrets() []byte
	// cut reports whether the frame next returned last was cut short by
	// the capture's snapshot length (fewer bytes captured than were on
	// the wire).
	cut() bool
}

// countReader counts the bytes read through it.
type countReader struct {
	r   *bufio.Reader
	n   int64
	buf []byte // storage for records larger than r's buffer
}

// full is io.ReadFull on the bufio.Reader, written out so that b does not
// escape (through the io.Reader interface) and callers can read into
// arrays on their stack.
func (c *countReader) full(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.r.Read(b[n:])
		n += m
		if err != nil && n < len(b) {
			c.n += int64(n)
			if err == io.EOF && n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	c.n += int64(n)
	return n, nil
}

// read reads the next n bytes and returns them and the count read; they
// are valid until the next read. A record that fits in the bufio.Reader's
// buffer is returned without a copy, as a slice of that buffer, and so is
// the short tail of a file that ends inside such a record; a larger one is
// read into c.buf, whose storage grows with the bytes read (from 64 KiB,
// by at most 1 MiB per step), so a corrupt length costs memory only for
// bytes the file really has.
func (c *countReader) read(n int) ([]byte, int, error) {
	if n <= c.r.Size() {
		b, err := c.r.Peek(n)
		if err == nil || err == io.EOF {
			// At the end of the file, Peek returns all that is left.
			m := len(b)
			c.r.Discard(m)
			c.n += int64(m)
			if err == io.EOF && m > 0 {
				err = io.ErrUnexpectedEOF // as full reports a short read
			}
			return b[:m:m], m, err
		}
		// Another error: read what there is below, to report it.
	}
	buf := c.buf[:0]
	defer func() { c.buf = buf[:0] }()
	if cap(buf) >= n {
		buf = buf[:n]
		m, err := c.full(buf)
		return buf, m, err
	}
	for len(buf) < n {
		chunk := min(n-len(buf), max(len(buf), 64<<10), 1<<20)
		buf = slices.Grow(buf, chunk)
		m, err := c.full(buf[len(buf) : len(buf)+chunk])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, len(buf), err
		}
	}
	return buf, n, nil
}

// openSource sniffs the magic number and returns a pcap or pcapng source.
func openSource(r io.Reader) (source, error) {
	// A 1 MiB buffer returns records up to 1 MiB without a copy; a reader
	// that knows how much it holds (a bytes.Reader: a capture in memory)
	// needs no more buffer than that, and a small capture then costs
	// memory for its own size, not 1 MiB.
	size := 1 << 20
	if l, ok := r.(interface{ Len() int }); ok {
		size = min(size, max(l.Len(), 16))
	}
	br := bufio.NewReaderSize(r, size)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, &CorruptError{Offset: 0, Where: "file header", Msg: fmt.Sprintf("file is %d bytes, too short for a pcap or pcapng magic number", len(magic))}
	}
	cr := &countReader{r: br}
	switch binary.BigEndian.Uint32(magic) {
	case 0x0a0d0d0a:
		return &ngSource{r: cr}, nil
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		return newPcapSource(cr)
	}
	return nil, &CorruptError{Offset: 0, Where: "file header", Msg: fmt.Sprintf("magic number %#08x is neither pcap nor pcapng", binary.BigEndian.Uint32(magic))}
}

// pcapSource reads the classic libpcap format.
type pcapSource struct {
	r       *countReader
	bo      binary.ByteOrder
	nanos   bool
	link    uint32
	n       int
	hdr     [16]byte
	lastCut bool
}

func newPcapSource(r *countReader) (*pcapSource, error) {
	var h [24]byte
	if n, err := r.full(h[:]); err != nil {
		return nil, &CorruptError{Offset: 0, Where: "pcap file header", Msg: fmt.Sprintf("file ends after %d of 24 bytes", n)}
	}
	s := &pcapSource{r: r}
	switch binary.BigEndian.Uint32(h[:]) {
	case 0xa1b2c3d4:
		s.bo = binary.BigEndian
	case 0xa1b23c4d:
		s.bo, s.nanos = binary.BigEndian, true
	case 0xd4c3b2a1:
		s.bo = binary.LittleEndian
	case 0x4d3cb2a1:
		s.bo, s.nanos = binary.LittleEndian, true
	}
	if v := s.bo.Uint16(h[4:]); v != 2 {
		return nil, &CorruptError{Offset: 4, Where: "pcap file header", Msg: fmt.Sprintf("major version %d, want 2", v)}
	}
	s.link = s.bo.Uint32(h[20:]) & 0x0fffffff
	return s, nil
}

func (s *pcapSource) secrets() []byte { return nil }

func (s *pcapSource) cut() bool { return s.lastCut }

func (s *pcapSource) next() ([]byte, time.Time, uint32, error) {
	off := s.r.n
	n, err := s.r.full(s.hdr[:])
	if err == io.EOF {
		return nil, time.Time{}, 0, io.EOF
	}
	s.n++
	if err != nil {
		return nil, time.Time{}, 0, truncatedError{fmt.Sprintf("pcap record %d at byte offset %d: truncated record header (%d of 16 bytes); ignored", s.n, off, n)}
	}
	sec, frac := s.bo.Uint32(s.hdr[0:]), s.bo.Uint32(s.hdr[4:])
	incl, orig := s.bo.Uint32(s.hdr[8:]), s.bo.Uint32(s.hdr[12:])
	if incl > maxRecord {
		return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: fmt.Sprintf("pcap record %d", s.n), Msg: fmt.Sprintf("captured length %d exceeds %d", incl, maxRecord)}
	}
	s.lastCut = orig > incl
	b, m, err := s.r.read(int(incl))
	if err != nil {
		return nil, time.Time{}, 0, truncatedError{fmt.Sprintf("pcap record %d at byte offset %d: truncated (%d of %d bytes); ignored", s.n, off, m, incl)}
	}
	var ts time.Time
	if s.nanos {
		ts = time.Unix(int64(sec), int64(frac)).UTC()
	} else {
		ts = time.Unix(int64(sec), int64(frac)*1000).UTC()
	}
	return b, ts, s.link, nil
}

// ngSource reads pcapng.
type ngSource struct {
	r      *countReader
	hdr    [8]byte // the block header being read (a field: no allocation)
	bo     binary.ByteOrder
	n      int // blocks read
	ifaces []ngIface
	keys   []byte
	// lastCut: the last frame was cut short by the snapshot length;
	// lastTime: its time (a Simple Packet Block has none: it takes the
	// time of the packet before it).
	lastCut  bool
	lastTime time.Time
}

type ngIface struct {
	link   uint32
	unit   float64 // seconds per tick (if_tsresol)
	pow10  int64   // ticks per second when a power of ten, else 0
	offset int64   // if_tsoffset, seconds
}

func (s *ngSource) secrets() []byte { return s.keys }

func (s *ngSource) cut() bool { return s.lastCut }

var ngBlockNames = map[uint32]string{
	0x0a0d0d0a: "Section Header Block",
	1:          "Interface Description Block",
	2:          "Packet Block",
	3:          "Simple Packet Block",
	5:          "Interface Statistics Block",
	6:          "Enhanced Packet Block",
	10:         "Decryption Secrets Block",
}

// ngWhere refers to block n of type t for errors; the name is formatted
// only when an error needs it, not for every block read.
func ngWhere(n int, t uint32) ngBlockRef { return ngBlockRef{n, t} }

type ngBlockRef struct {
	n int
	t uint32
}

func (r ngBlockRef) String() string { return fmt.Sprintf("pcapng block %d (%s)", r.n, ngName(r.t)) }

func ngName(t uint32) string {
	if n, ok := ngBlockNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %#x", t)
}

// plausibleEnd looks, in the bytes rest of a block whose length field
// claims more than the file holds (rest starts at block offset skip), for
// the real end of the block: a block length p whose trailing copy sits at
// p-4, followed by the header of a known block type with a sane length.
// It tells a corrupt length field from a file cut off inside its last
// block.
func (s *ngSource) plausibleEnd(rest []byte, skip int) (p int, next uint32, ok bool) {
	for p = 12; p-skip+8 <= len(rest); p += 4 {
		i := p - skip
		if i < 4 || s.bo.Uint32(rest[i-4:]) != uint32(p) {
			continue
		}
		typ, l := s.bo.Uint32(rest[i:]), s.bo.Uint32(rest[i+4:])
		if binary.BigEndian.Uint32(rest[i:]) == 0x0a0d0d0a {
			typ = 0x0a0d0d0a
		}
		if _, known := ngBlockNames[typ]; !known || l < 12 || l%4 != 0 || l > maxRecord {
			continue
		}
		return p, typ, true
	}
	return 0, 0, false
}

func (s *ngSource) next() ([]byte, time.Time, uint32, error) {
	for {
		off := s.r.n
		h := s.hdr[:]
		n, err := s.r.full(h)
		if err == io.EOF {
			return nil, time.Time{}, 0, io.EOF
		}
		s.n++
		if err != nil {
			if s.n == 1 {
				// The magic was sniffed, and nothing follows: a file cut
				// inside its section header holds no capture to warn about.
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: ngWhere(1, 0x0a0d0d0a).String(), Msg: fmt.Sprintf("file ends inside the section header (%d of 8 bytes)", n)}
			}
			return nil, time.Time{}, 0, truncatedError{fmt.Sprintf("pcapng block %d at byte offset %d: truncated block header (%d of 8 bytes); ignored", s.n, off, n)}
		}
		typ := binary.BigEndian.Uint32(h[:])
		if typ == 0x0a0d0d0a {
			// Byte order comes from the section header's magic.
			var bom [4]byte
			if _, err := s.r.full(bom[:]); err != nil {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: ngWhere(s.n, 0x0a0d0d0a).String(), Msg: "file ends inside the section header"}
			}
			switch binary.BigEndian.Uint32(bom[:]) {
			case 0x1a2b3c4d:
				s.bo = binary.BigEndian
			case 0x4d3c2b1a:
				s.bo = binary.LittleEndian
			default:
				return nil, time.Time{}, 0, &CorruptError{Offset: off + 8, Where: ngWhere(s.n, 0x0a0d0d0a).String(), Msg: fmt.Sprintf("byte-order magic %#08x, want 0x1a2b3c4d", binary.BigEndian.Uint32(bom[:]))}
			}
			s.ifaces = s.ifaces[:0]
		} else if s.bo == nil {
			return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: fmt.Sprintf("pcapng block %d", s.n), Msg: "block before the first Section Header Block"}
		} else {
			typ = s.bo.Uint32(h[:])
		}
		where := ngWhere(s.n, typ)
		total := s.bo.Uint32(h[4:])
		if total < 12 || total%4 != 0 || total > maxRecord {
			return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("bad block total length %d", total)}
		}
		bodyLen := int(total) - 12
		read := 0
		if typ == 0x0a0d0d0a {
			if total < 28 {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("bad block total length %d", total)}
			}
			read = 4
		}
		body, m, err := s.r.read(bodyLen - read + 4)
		if err != nil {
			if p, next, ok := s.plausibleEnd(body[:m], 8+read); ok {
				return nil, time.Time{}, 0, truncatedError{fmt.Sprintf("%s at byte offset %d: corrupt block total length %d (the file has only %d bytes left; the block seems to be %d bytes, followed by a plausible %s at byte offset %d); the rest of the file is not decoded", where, off, total, m+8+read, p, ngName(next), off+int64(p))}
			}
			if typ == 6 || typ == 3 || typ == 2 {
				return nil, time.Time{}, 0, truncatedError{fmt.Sprintf("%s at byte offset %d: truncated (%d of %d bytes); ignored", where, off, m+8+read, total)}
			}
			return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("file ends inside the block (%d of %d bytes)", m+8+read, total)}
		}
		if trail := s.bo.Uint32(body[len(body)-4:]); trail != total {
			return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("trailing block length %d differs from leading %d", trail, total)}
		}
		body = body[:len(body)-4]
		switch typ {
		case 0x0a0d0d0a:
			// The section header's major version follows its byte-order
			// magic; only 1 is defined (a reader must refuse others).
			if major := s.bo.Uint16(body); major != 1 {
				return nil, time.Time{}, 0, &CorruptError{Offset: off + 12, Where: where.String(), Msg: fmt.Sprintf("major version %d, want 1", major)}
			}
		case 1:
			if err := s.idb(body); err != nil {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: err.Error()}
			}
		case 6, 2:
			if len(body) < 20 {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("body of %d bytes, want at least 20", len(body))}
			}
			var ifi uint32
			if typ == 6 {
				ifi = s.bo.Uint32(body)
			} else {
				ifi = uint32(s.bo.Uint16(body))
			}
			hi, lo := s.bo.Uint32(body[4:]), s.bo.Uint32(body[8:])
			capLen := s.bo.Uint32(body[12:])
			if int(ifi) >= len(s.ifaces) {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("interface %d not described (%d interfaces)", ifi, len(s.ifaces))}
			}
			if int64(capLen) > int64(len(body)-20) {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: fmt.Sprintf("captured length %d exceeds the block body (%d bytes)", capLen, len(body)-20)}
			}
			in := s.ifaces[ifi]
			s.lastCut = s.bo.Uint32(body[16:]) > capLen // original length
			s.lastTime = in.time(uint64(hi)<<32 | uint64(lo))
			return body[20 : 20+capLen], s.lastTime, in.link, nil
		case 3:
			if len(body) < 4 {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: "body shorter than 4 bytes"}
			}
			if len(s.ifaces) == 0 {
				return nil, time.Time{}, 0, &CorruptError{Offset: off, Where: where.String(), Msg: "no interface described"}
			}
			orig := s.bo.Uint32(body)
			data := body[4:]
			if int64(orig) < int64(len(data)) {
				data = data[:orig]
			}
			// A Simple Packet Block is cut to the interface's snaplen
			// (the block's padding aside) when its original length is
			// longer than the data; it has no time of its own.
			s.lastCut = int64(orig) > int64(len(data))
			return data, s.lastTime, s.ifaces[0].link, nil
		case 10:
			if len(body) >= 8 && s.bo.Uint32(body) == 0x544c534b {
				l := s.bo.Uint32(body[4:])
				if int64(l) <= int64(len(body)-8) {
					s.keys = append(s.keys, body[8:8+l]...)
					if len(s.keys) > 0 && s.keys[len(s.keys)-1] != '\n' {
						s.keys = append(s.keys, '\n')
					}
				}
			}
		}
	}
}

// idb parses an Interface Description Block body.
func (s *ngSource) idb(b []byte) error {
	if len(b) < 8 {
		return fmt.Errorf("body of %d bytes, want at least 8", len(b))
	}
	in := ngIface{link: uint32(s.bo.Uint16(b)), unit: 1e-6, pow10: 1e6}
	opts := b[8:]
	for len(opts) >= 4 {
		code, l := s.bo.Uint16(opts), int(s.bo.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return fmt.Errorf("option %d of %d bytes runs past the block", code, l)
		}
		v := opts[4 : 4+l]
		switch {
		case code == 0:
			opts = nil
			continue
		case code == 9 && l >= 1:
			r := v[0]
			if r&0x80 == 0 {
				if r > 18 {
					return fmt.Errorf("if_tsresol 10^-%d out of range", r)
				}
				in.pow10 = int64(math.Pow10(int(r)))
				in.unit = 1 / float64(in.pow10)
			} else {
				in.pow10 = 0
				in.unit = math.Ldexp(1, -int(r&0x7f))
			}
		case code == 14 && l >= 8:
			in.offset = int64(s.bo.Uint64(v))
		}
		opts = opts[(4+l+3)&^3:]
	}
	s.ifaces = append(s.ifaces, in)
	return nil
}

func (in ngIface) time(t uint64) time.Time {
	if in.pow10 > 0 {
		sec := int64(t / uint64(in.pow10))
		rem := int64(t % uint64(in.pow10))
		if in.pow10 <= 1e9 {
			return time.Unix(in.offset+sec, rem*(1e9/in.pow10)).UTC()
		}
		return time.Unix(in.offset+sec, rem/(in.pow10/1e9)).UTC()
	}
	f := float64(t) * in.unit
	sec := math.Floor(f)
	return time.Unix(in.offset+int64(sec), int64((f-sec)*1e9)).UTC()
}
