package tracer

// A minimal pcapng block writer (draft-ietf-opsawg-pcapng): gopacket's
// pcapgo.NgWriter has neither Decryption Secrets Blocks nor per-packet
// comments, and the Recorder needs both. Blocks are little-endian; each is
// built in one buffer and written with one Write call.

import (
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// pcapng block types and option codes used by the writer.
const (
	blockSHB = 0x0A0D0D0A // Section Header Block
	blockIDB = 0x00000001 // Interface Description Block
	blockEPB = 0x00000006 // Enhanced Packet Block
	blockDSB = 0x0000000A // Decryption Secrets Block

	byteOrderMagic = 0x1A2B3C4D

	optEndOfOpt  = 0
	optComment   = 1 // opt_comment, valid in every block
	optSHBOS     = 3 // shb_os
	optSHBAppl   = 4 // shb_userappl
	optIfName    = 2 // if_name
	optIfTSResol = 9 // if_tsresol

	// SecretsTypeTLSKeyLog is the DSB secrets type "TLSK": an NSS key log.
	SecretsTypeTLSKeyLog = 0x544c534b

	linkTypeEthernet = 1
)

// pcapngWriter writes pcapng blocks to w. It is not safe for concurrent use;
// the Recorder serialises calls.
type pcapngWriter struct {
	w   io.Writer
	buf []byte
}

// option is one pcapng option (code, value); the value is padded on write.
type option struct {
	code  uint16
	value []byte
}

// begin starts a block of type typ in the writer's buffer.
func (p *pcapngWriter) begin(typ uint32) {
	p.buf = binary.LittleEndian.AppendUint32(p.buf[:0], typ)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, 0) // total length, patched by end
}

// pad appends zero bytes up to a multiple of 4.
func (p *pcapngWriter) pad() {
	for len(p.buf)%4 != 0 {
		p.buf = append(p.buf, 0)
	}
}

// options appends opts followed by opt_endofopt; nothing when opts is empty.
func (p *pcapngWriter) options(opts []option) error {
	if len(opts) == 0 {
		return nil
	}
	for _, o := range opts {
		if len(o.value) > 0xFFFF {
			return fmt.Errorf("pcapng: option %d is %d bytes, more than 65535", o.code, len(o.value))
		}
		p.buf = binary.LittleEndian.AppendUint16(p.buf, o.code)
		p.buf = binary.LittleEndian.AppendUint16(p.buf, uint16(len(o.value)))
		p.buf = append(p.buf, o.value...)
		p.pad()
	}
	p.buf = binary.LittleEndian.AppendUint32(p.buf, optEndOfOpt) // code 0, length 0
	return nil
}

// end patches the total length, appends the trailing copy and writes the block.
func (p *pcapngWriter) end() error {
	n := len(p.buf) + 4
	binary.LittleEndian.PutUint32(p.buf[4:8], uint32(n))
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(n))
	_, err := p.w.Write(p.buf)
	return err
}

// commentOpts is opt_comment when c is not empty.
func commentOpts(c string) []option {
	if c == "" {
		return nil
	}
	return []option{{optComment, []byte(c)}}
}

// writeSHB writes a Section Header Block of unspecified section length.
func (p *pcapngWriter) writeSHB(comment, userAppl string) error {
	p.begin(blockSHB)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, byteOrderMagic)
	p.buf = binary.LittleEndian.AppendUint16(p.buf, 1) // major
	p.buf = binary.LittleEndian.AppendUint16(p.buf, 0) // minor
	p.buf = binary.LittleEndian.AppendUint64(p.buf, ^uint64(0))
	opts := commentOpts(comment)
	if userAppl != "" {
		opts = append(opts, option{optSHBAppl, []byte(userAppl)})
	}
	if err := p.options(opts); err != nil {
		return err
	}
	return p.end()
}

// writeIDB writes an Ethernet Interface Description Block with nanosecond
// timestamps (if_tsresol 9).
func (p *pcapngWriter) writeIDB(name string, snapLen uint32) error {
	p.begin(blockIDB)
	p.buf = binary.LittleEndian.AppendUint16(p.buf, linkTypeEthernet)
	p.buf = binary.LittleEndian.AppendUint16(p.buf, 0) // reserved
	p.buf = binary.LittleEndian.AppendUint32(p.buf, snapLen)
	opts := []option{{optIfTSResol, []byte{9}}}
	if name != "" {
		opts = append(opts, option{optIfName, []byte(name)})
	}
	if err := p.options(opts); err != nil {
		return err
	}
	return p.end()
}

// writeEPB writes an Enhanced Packet Block on interface 0. data is the
// captured part of a frame of origLen bytes.
func (p *pcapngWriter) writeEPB(ts time.Time, data []byte, origLen int, comment string) error {
	ns := uint64(ts.UnixNano())
	p.begin(blockEPB)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, 0) // interface id
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(ns>>32))
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(ns))
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(data)))
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(origLen))
	p.buf = append(p.buf, data...)
	p.pad()
	if err := p.options(commentOpts(comment)); err != nil {
		return err
	}
	return p.end()
}

// writeDSB writes a Decryption Secrets Block.
func (p *pcapngWriter) writeDSB(secretsType uint32, secrets []byte) error {
	p.begin(blockDSB)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, secretsType)
	p.buf = binary.LittleEndian.AppendUint32(p.buf, uint32(len(secrets)))
	p.buf = append(p.buf, secrets...)
	p.pad()
	return p.end()
}
