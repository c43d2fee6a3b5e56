package packets_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/packets/packettest"
)

func addSeeds(f *testing.F) {
	for _, v := range packettest.Vectors {
		if len(v.Raw) <= 4096 {
			f.Add(v.Raw)
		}
	}
}

// primers are packets that fill a Decoder's reused storage: a SUBSCRIBE,
// a SUBACK and an UNSUBSCRIBE with elements, and a CONNECT and a PUBLISH.
var primers = [][]byte{
	{0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x01},
	{0x90, 0x04, 0x00, 0x01, 0x01, 0x80},
	{0xa2, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'},
	{0x10, 0x0d, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 'c'},
	{0x32, 0x06, 0x00, 0x01, 'a', 0x00, 0x01, 'x'},
}

// FuzzDecode: no input panics or hangs; n never exceeds the input; the error
// kinds are the documented ones; strict success implies lenient success.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, opt := range []packets.DecodeOptions{{}, {Lenient: true}, {MaxPacketSize: 64}} {
			p, n, err := packets.Decode(b, opt)
			if n < 0 || n > len(b) {
				t.Fatalf("n = %d for %d bytes", n, len(b))
			}
			var pe *packets.ProtocolError
			var vs packets.Violations
			switch {
			case err == nil:
				if p == nil || n == 0 {
					t.Fatalf("success with p=%v n=%d", p, n)
				}
			case errors.Is(err, packets.ErrShortBuffer):
				if p != nil || n != 0 {
					t.Fatalf("short buffer with p=%v n=%d", p, n)
				}
			case errors.As(err, &vs):
				if !opt.Lenient || p == nil {
					t.Fatalf("violations outside lenient mode, or without a packet: %v", err)
				}
			case errors.As(err, &pe):
				if p != nil || pe.Clause == "" || pe.Offset < 0 || pe.Offset > max(n, len(b)) {
					t.Fatalf("protocol error %v with p=%v n=%d len=%d", err, p, n, len(b))
				}
			default:
				t.Fatalf("undocumented error %T: %v", err, err)
			}
			// A Decoder with the same options, its storage used by
			// earlier packets of each kind, decodes the same packet.
			d := packets.Decoder{Options: opt}
			for _, prime := range primers {
				if _, _, err := d.Decode(prime); err != nil {
					t.Fatal(err)
				}
			}
			q, m, err2 := d.Decode(b)
			if fmt.Sprint(err) != fmt.Sprint(err2) || m != n || !reflect.DeepEqual(p, q) {
				t.Fatalf("Decoder disagrees with Decode under %+v: %#v %d %v / %#v %d %v", opt, p, n, err, q, m, err2)
			}
		}
	})
}

// FuzzRoundTrip: whatever decodes (leniently) re-encodes, with AllowInvalid,
// to bytes that decode to an equal packet; whatever decodes strictly also
// encodes without AllowInvalid, and, with its remaining length padded to the
// size it had (MQTT 3.1.1 does not require the minimal one), to exactly the
// bytes it was decoded from.
func FuzzRoundTrip(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, m, err := packets.Decode(b, packets.DecodeOptions{Lenient: true})
		if p == nil {
			return
		}
		enc, err2 := packets.Encode(nil, p, packets.EncodeOptions{AllowInvalid: true})
		if err2 != nil {
			t.Fatalf("decoded %#v (%v) but cannot encode it: %v", p, err, err2)
		}
		q, n, err3 := packets.Decode(enc, packets.DecodeOptions{Lenient: true})
		if q == nil || n != len(enc) || !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip:\n%#v\n% x\n%#v (%v)", p, enc, q, err3)
		}
		if err == nil {
			strictEnc, err := p.Append(nil)
			if err != nil {
				t.Fatalf("strictly decoded packet does not encode strictly: %v", err)
			}
			if !bytes.Equal(strictEnc, enc) {
				t.Fatalf("Append and Encode(AllowInvalid) differ")
			}
			size := 1 // of the remaining length, which ends at a byte below 0x80
			for b[size]&0x80 != 0 {
				size++
			}
			same, err := packets.Encode(nil, p, packets.EncodeOptions{RemainingLengthSize: size})
			if err != nil || !bytes.Equal(same, b[:m]) {
				t.Fatalf("strictly decoded % x re-encodes to % x (%v)", b[:m], same, err)
			}
		}
	})
}
