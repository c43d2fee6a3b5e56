package tracer

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// TestPcapngBlocks checks the block layout against the pcapng
// specification field by field: type, total length at both ends, 32-bit
// padding, the fixed fields and the options.
func TestPcapngBlocks(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name  string
		write func(p *pcapngWriter) error
		typ   uint32
		check func(t *testing.T, body []byte)
	}{
		{"shb", func(p *pcapngWriter) error { return p.writeSHB("hello", "app") }, blockSHB, func(t *testing.T, b []byte) {
			if le.Uint32(b) != byteOrderMagic || le.Uint16(b[4:]) != 1 || le.Uint16(b[6:]) != 0 || le.Uint64(b[8:]) != ^uint64(0) {
				t.Errorf("SHB fixed part % x", b[:16])
			}
			// opt_comment "hello" (5 bytes, padded to 8), shb_userappl "app" (3, padded to 4), end
			want := []byte{1, 0, 5, 0, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 4, 0, 3, 0, 'a', 'p', 'p', 0, 0, 0, 0, 0}
			if !bytes.Equal(b[16:], want) {
				t.Errorf("SHB options % x, want % x", b[16:], want)
			}
		}},
		{"idb", func(p *pcapngWriter) error { return p.writeIDB("x", 1000) }, blockIDB, func(t *testing.T, b []byte) {
			if le.Uint16(b) != 1 || le.Uint32(b[4:]) != 1000 {
				t.Errorf("IDB link type %d snaplen %d", le.Uint16(b), le.Uint32(b[4:]))
			}
			want := []byte{9, 0, 1, 0, 9, 0, 0, 0, 2, 0, 1, 0, 'x', 0, 0, 0, 0, 0, 0, 0}
			if !bytes.Equal(b[8:], want) {
				t.Errorf("IDB options % x, want % x", b[8:], want)
			}
		}},
		{"epb", func(p *pcapngWriter) error {
			return p.writeEPB(time.Unix(5, 7).UTC(), []byte{1, 2, 3, 4, 5}, 9, "c")
		}, blockEPB, func(t *testing.T, b []byte) {
			ns := uint64(5_000_000_007)
			if le.Uint32(b) != 0 || le.Uint32(b[4:]) != uint32(ns>>32) || le.Uint32(b[8:]) != uint32(ns) || le.Uint32(b[12:]) != 5 || le.Uint32(b[16:]) != 9 {
				t.Errorf("EPB fixed part % x", b[:20])
			}
			want := []byte{1, 2, 3, 4, 5, 0, 0, 0, 1, 0, 1, 0, 'c', 0, 0, 0, 0, 0, 0, 0}
			if !bytes.Equal(b[20:], want) {
				t.Errorf("EPB data and options % x, want % x", b[20:], want)
			}
		}},
		{"dsb", func(p *pcapngWriter) error { return p.writeDSB(SecretsTypeTLSKeyLog, []byte("AB\n")) }, blockDSB, func(t *testing.T, b []byte) {
			want := []byte{'K', 'S', 'L', 'T', 3, 0, 0, 0, 'A', 'B', '\n', 0}
			if !bytes.Equal(b, want) {
				t.Errorf("DSB body % x, want % x", b, want)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := &pcapngWriter{w: &buf}
			if err := tc.write(p); err != nil {
				t.Fatal(err)
			}
			b := buf.Bytes()
			n := len(b)
			if n%4 != 0 || le.Uint32(b) != tc.typ || int(le.Uint32(b[4:])) != n || int(le.Uint32(b[n-4:])) != n {
				t.Fatalf("block % x: bad type, length or padding", b)
			}
			tc.check(t, b[8:n-4])
		})
	}
}

// TestPcapngOptionTooLong checks that an option over 65535 bytes is an
// error naming the option, not a corrupt block.
func TestPcapngOptionTooLong(t *testing.T) {
	var buf bytes.Buffer
	p := &pcapngWriter{w: &buf}
	err := p.writeEPB(time.Unix(0, 0), nil, 0, strings.Repeat("x", 70000))
	if err == nil || !strings.Contains(err.Error(), "option 1 is 70000 bytes") {
		t.Fatalf("err = %v", err)
	}
	if buf.Len() != 0 {
		t.Errorf("%d bytes written for a refused block", buf.Len())
	}
}
