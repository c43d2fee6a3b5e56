package packets_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

func validStream(t *testing.T) ([]byte, []packets.Packet) {
	t.Helper()
	var stream []byte
	var want []packets.Packet
	for _, v := range packettest.OfKind(packettest.Valid) {
		stream = append(stream, v.Raw...)
		want = append(want, v.Packet)
	}
	return stream, want
}

func TestReadPacketAndReader(t *testing.T) {
	stream, want := validStream(t)
	readers := map[string]func() func() (packets.Packet, error){
		"ReadPacket": func() func() (packets.Packet, error) {
			r := bytes.NewReader(stream)
			return func() (packets.Packet, error) { return packets.ReadPacket(r, packets.DecodeOptions{}) }
		},
		"ReadPacket/one-byte-reads": func() func() (packets.Packet, error) {
			r := iotest.OneByteReader(bytes.NewReader(stream))
			return func() (packets.Packet, error) { return packets.ReadPacket(r, packets.DecodeOptions{}) }
		},
		"Reader": func() func() (packets.Packet, error) {
			return packets.NewReader(bytes.NewReader(stream), packets.DecodeOptions{}).ReadPacket
		},
		"Reader/small-buffer": func() func() (packets.Packet, error) {
			// 16-byte bufio: most packets take the copying path.
			br := bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(stream)), 16)
			return packets.NewReader(br, packets.DecodeOptions{}).ReadPacket
		},
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			next := mk()
			for i, w := range want {
				p, err := next()
				if err != nil || !reflect.DeepEqual(p, w) {
					t.Fatalf("packet %d = %#v, %v; want %#v", i, p, err, w)
				}
			}
			if p, err := next(); err != io.EOF {
				t.Fatalf("after the last packet: %v, %v; want io.EOF", p, err)
			}
		})
	}
}

func TestReadTruncated(t *testing.T) {
	full, _ := (&packets.Publish{Topic: []byte("a/b"), Payload: []byte("payload")}).Append(nil)
	for _, cut := range []int{1, 2, 5, len(full) - 1} {
		for name, read := range map[string]func(io.Reader) error{
			"ReadPacket": func(r io.Reader) error { _, err := packets.ReadPacket(r, packets.DecodeOptions{}); return err },
			"Reader": func(r io.Reader) error {
				_, err := packets.NewReader(r, packets.DecodeOptions{}).ReadPacket()
				return err
			},
		} {
			err := read(bytes.NewReader(full[:cut]))
			if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "PUBLISH") {
				t.Errorf("%s cut at %d: %v, want io.ErrUnexpectedEOF naming PUBLISH", name, cut, err)
			}
		}
	}
}

// limitedReader fails the test if more than max bytes are read.
type limitedReader struct {
	t   *testing.T
	r   io.Reader
	max int
}

func (l *limitedReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if l.max -= n; l.max < 0 {
		l.t.Fatalf("read %d bytes past the fixed header of an oversized packet", -l.max)
	}
	return n, err
}

func TestReadPacketRefusesOversizeBeforeReadingBody(t *testing.T) {
	// A fixed header announcing 268,435,455 bytes and nothing else: a reader
	// that allocated or waited for the body would hang or blow up.
	hdr := []byte{0x30, 0xff, 0xff, 0xff, 0x7f}
	r := &limitedReader{t: t, r: io.MultiReader(bytes.NewReader(hdr), strings.NewReader("xx")), max: len(hdr)}
	_, err := packets.ReadPacket(r, packets.DecodeOptions{MaxPacketSize: 96 << 10})
	if !errors.Is(err, packets.ErrTooLarge) {
		t.Fatalf("ReadPacket = %v, want ErrTooLarge", err)
	}
	_, err = packets.NewReader(bytes.NewReader(hdr), packets.DecodeOptions{MaxPacketSize: 96 << 10}).ReadPacket()
	if !errors.Is(err, packets.ErrTooLarge) {
		t.Fatalf("Reader.ReadPacket = %v, want ErrTooLarge", err)
	}
}

func TestReaderReportsMalformedHeader(t *testing.T) {
	_, err := packets.NewReader(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), packets.DecodeOptions{}).ReadPacket()
	if !errors.Is(err, &packets.ProtocolError{Clause: "MQTT-2.2.3"}) {
		t.Fatalf("err = %v, want MQTT-2.2.3", err)
	}
	_, err = packets.ReadPacket(bytes.NewReader([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}), packets.DecodeOptions{})
	if !errors.Is(err, &packets.ProtocolError{Clause: "MQTT-2.2.3"}) {
		t.Fatalf("err = %v, want MQTT-2.2.3", err)
	}
}

func TestWriters(t *testing.T) {
	stream, want := validStream(t)
	var a, b bytes.Buffer
	w := packets.NewWriter(&b)
	for _, p := range want {
		if err := packets.WritePacket(&a, p); err != nil {
			t.Fatal(err)
		}
		if err := w.WritePacket(p); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(a.Bytes(), stream) || !bytes.Equal(b.Bytes(), stream) {
		t.Fatalf("written streams differ from the vectors")
	}
	bad := &packets.Publish{QoS: 3, Topic: []byte("t"), PacketID: 1}
	if err := packets.WritePacket(&a, bad); !errors.Is(err, packets.ErrInvalidPacket) {
		t.Errorf("WritePacket(QoS 3) = %v", err)
	}
	if err := w.WritePacket(bad); !errors.Is(err, packets.ErrInvalidPacket) {
		t.Errorf("Writer.WritePacket(QoS 3) = %v", err)
	}
	if err := packets.WritePacket(&a, nil); !errors.Is(err, packets.ErrInvalidPacket) {
		t.Errorf("WritePacket(nil) = %v", err)
	}
	if err := w.WritePacket(nil); !errors.Is(err, packets.ErrInvalidPacket) {
		t.Errorf("Writer.WritePacket(nil) = %v", err)
	}
}

// TestReadAllocatesWhatArrives: with no MaxPacketSize (the standard's
// limit), a peer that announces 268,435,455 bytes and sends a few must not
// make the reader allocate the announced size up front: memory follows the
// bytes that arrive. The conformance client reads the server under test
// this way, and the emulator does with -max-packet-size negative.
func TestReadAllocatesWhatArrives(t *testing.T) {
	stream := append([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, make([]byte, 100<<10)...)
	for name, read := range map[string]func(io.Reader) error{
		"ReadPacket": func(r io.Reader) error { _, err := packets.ReadPacket(r, packets.DecodeOptions{}); return err },
		"Reader": func(r io.Reader) error {
			_, err := packets.NewReader(r, packets.DecodeOptions{}).ReadPacket()
			return err
		},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := read(bytes.NewReader(stream))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %v, want io.ErrUnexpectedEOF", name, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("%s allocated %d bytes for a packet cut after %d", name, got, len(stream))
		}
	}
}

// FuzzReader: on any byte stream, ReadPacket and Reader (with a bufio
// buffer small enough that longer packets take the copying path) return
// the packets and errors Decode gives, packet after packet, and where
// Decode runs out of input they report io.EOF (at a packet boundary) or
// io.ErrUnexpectedEOF.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, stream []byte) {
		for _, opt := range []packets.DecodeOptions{{}, {Lenient: true}, {MaxPacketSize: 64}} {
			one := bytes.NewReader(stream)
			rd := packets.NewReader(bufio.NewReaderSize(iotest.HalfReader(bytes.NewReader(stream)), 16), opt)
			for off := 0; ; {
				want, n, werr := packets.Decode(stream[off:], opt)
				for name, read := range map[string]func() (packets.Packet, error){
					"ReadPacket": func() (packets.Packet, error) { return packets.ReadPacket(one, opt) },
					"Reader":     rd.ReadPacket,
				} {
					got, gerr := read()
					switch {
					case errors.Is(werr, packets.ErrShortBuffer):
						if off == len(stream) && gerr != io.EOF || off < len(stream) && !errors.Is(gerr, io.ErrUnexpectedEOF) {
							t.Fatalf("%s at %d (%v): %v, want EOF", name, off, werr, gerr)
						}
					case fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want):
						t.Fatalf("%s at %d: %#v, %v; Decode gives %#v, %v", name, off, got, gerr, want, werr)
					}
				}
				if n == 0 { // short input, or a fixed header that frames nothing
					break
				}
				off += n
			}
		}
	})
}
