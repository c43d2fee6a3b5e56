package packets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// ReadPacket reads one packet from r. The packet owns its memory. It returns
// io.EOF if r ends before the first byte, and an error wrapping
// io.ErrUnexpectedEOF (naming the packet type and how much was read) if r
// ends inside a packet. A packet larger than opt.MaxPacketSize is refused
// before its body is read.
//
// ReadPacket reads the fixed header one byte at a time; wrap unbuffered
// readers in a Reader (or bufio.Reader) for speed.
func ReadPacket(r io.Reader, opt DecodeOptions) (Packet, error) {
	var hdr [5]byte
	n := 0
	for {
		if _, err := io.ReadFull(r, hdr[n:n+1]); err != nil {
			if n == 0 {
				return nil, err
			}
			return nil, truncated(hdr[0], n, 0, err)
		}
		n++
		if n >= 2 && (hdr[n-1]&0x80 == 0 || n == 5) {
			break
		}
	}
	total, err := PacketLength(hdr[:n])
	if err != nil {
		return nil, err
	}
	if opt.MaxPacketSize > 0 && total > opt.MaxPacketSize {
		return nil, tooLarge(hdr[0], total, opt.MaxPacketSize)
	}
	buf, err := readGrowing(r, append(make([]byte, 0, min(total, growStep)), hdr[:n]...), total)
	if err != nil {
		return nil, truncated(hdr[0], n, total, err)
	}
	p, _, err := Decode(buf, opt)
	return p, err
}

// growStep is the most a reader allocates ahead of the bytes that arrived.
const growStep = 64 << 10

// readGrowing appends bytes from r to b until it holds total bytes, growing
// b as they arrive (by at most growStep or its length at a time) rather
// than to total at once: a remaining length of 268,435,455 costs memory
// only as its bytes are sent.
func readGrowing(r io.Reader, b []byte, total int) ([]byte, error) {
	for len(b) < total {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(total-len(b), max(len(b), growStep)))
		}
		n, err := io.ReadFull(r, b[len(b):min(total, cap(b))])
		b = b[:len(b)+n]
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

func truncated(first byte, got, total int, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if total == 0 {
		return fmt.Errorf("mqtt: %v fixed header truncated after %d bytes: %w", Type(first>>4), got, err)
	}
	return fmt.Errorf("mqtt: %v of %d bytes truncated: %w", Type(first>>4), total, err)
}

func tooLarge(first byte, total, limit int) error {
	return &ProtocolError{Clause: "MQTT-2.2.3", Type: Type(first >> 4), Offset: 1,
		Msg: fmt.Sprintf("packet of %d bytes exceeds the limit of %d", total, limit), Err: ErrTooLarge}
}

// Reader reads packets from a stream with a reused buffer and Decoder, so
// reading allocates nothing in the steady state. The packet returned by
// ReadPacket is valid until the next call (its fields alias the buffer).
type Reader struct {
	br  *bufio.Reader
	dec Decoder
	buf []byte
}

// NewReader returns a Reader on r. If r is a *bufio.Reader it is used as is;
// otherwise r is wrapped in one of 64 KiB.
func NewReader(r io.Reader, opt DecodeOptions) *Reader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	return &Reader{br: br, dec: Decoder{Options: opt}}
}

// ReadPacket reads the next packet. Errors are as for the package-level
// ReadPacket.
func (r *Reader) ReadPacket() (Packet, error) {
	// Peek the fixed header: 2 to 5 bytes, as far as the continuation bits
	// of the remaining length go (PacketLength then reports a 5th one).
	var hdr []byte
	var err error
	for n := 2; n <= 5; n++ {
		if hdr, err = r.br.Peek(n); err != nil {
			return nil, r.peekErr(hdr, 0, err)
		}
		if hdr[n-1]&0x80 == 0 {
			break
		}
	}
	total, err := PacketLength(hdr)
	if err != nil {
		return nil, err
	}
	if lim := r.dec.Options.MaxPacketSize; lim > 0 && total > lim {
		return nil, tooLarge(hdr[0], total, lim)
	}
	var b []byte
	if total <= r.br.Size() {
		// Zero copy: decode straight from bufio's buffer, then discard.
		if b, err = r.br.Peek(total); err != nil {
			return nil, r.peekErr(b, total, err)
		}
	} else {
		first := hdr[0]
		if b, err = readGrowing(r.br, r.buf[:0], total); err != nil {
			r.buf = b[:0]
			return nil, truncated(first, 0, total, err)
		}
		r.buf = b[:0]
	}
	p, _, err := r.dec.Decode(b)
	if total <= r.br.Size() {
		_, _ = r.br.Discard(total)
	}
	return p, err
}

// Release drops the buffer r keeps for packets larger than its bufio
// buffer (up to the largest packet read so far), so that an idle
// connection does not hold it. The packet ReadPacket returned last may
// alias that buffer: it must no longer be used.
func (r *Reader) Release() { r.buf = nil }

func (r *Reader) peekErr(got []byte, total int, err error) error {
	if len(got) == 0 && errors.Is(err, io.EOF) {
		return io.EOF
	}
	if len(got) == 0 {
		return err
	}
	return truncated(got[0], len(got), total, err)
}

// WritePacket encodes p and writes it to w in one Write call.
func WritePacket(w io.Writer, p Packet) error {
	if p == nil {
		return fmt.Errorf("%w: nil packet", ErrInvalidPacket)
	}
	b, err := p.Append(make([]byte, 0, p.Len()))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Writer writes packets through a reused buffer, allocating nothing in the
// steady state. Each WritePacket is one Write call on the underlying writer.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WritePacket encodes p and writes it.
func (w *Writer) WritePacket(p Packet) error {
	if p == nil {
		return fmt.Errorf("%w: nil packet", ErrInvalidPacket)
	}
	b, err := p.Append(w.buf[:0])
	if err != nil {
		return err
	}
	w.buf = b[:0]
	_, err = w.w.Write(b)
	return err
}
