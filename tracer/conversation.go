package tracer

import (
	"fmt"
	"net/netip"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
	"github.com/dps-conform/dps-conform/tracer/wstrace"
)

// Direction is the direction of a byte stream within a conversation.
type Direction uint8

// The two directions of a TCP connection.
const (
	ClientToServer Direction = 0
	ServerToClient Direction = 1
)

// String returns "c2s" or "s2c".
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "c2s"
	case ServerToClient:
		return "s2c"
	}
	return "dir?"
}

// Capture is the decoded content of a capture file.
type Capture struct {
	// Conversations are the TCP connections that carried MQTT (plain, over
	// TLS or over WebSocket), in the order of their first frame.
	Conversations []*Conversation
	// Frames is the number of frames (records) read from the file.
	Frames int
	// Warnings are problems with the file that did not stop decoding: a
	// truncated last record, frames of unsupported link types, ...
	Warnings []string
	// Incomplete, when not empty, says why the file was not read to its
	// end (a cut-off last block, or a corrupt block length): what follows
	// was not decoded. It is also one of the Warnings.
	Incomplete string
	// TCPServerPorts are the server ports of the TCP connections seen in
	// the capture, MQTT or not, sorted (at most 64): the server port is
	// the destination of a SYN, or for a connection seen mid-stream the
	// lower port. With no Conversations they hint at a --port to give.
	TCPServerPorts []uint16
}

// Conversation is one TCP connection carrying MQTT, decoded.
type Conversation struct {
	// ID numbers conversations from 1 in the order of their first frame.
	ID int
	// Client and Server are the endpoints. The client is the side that
	// sent the SYN or, for connections captured mid-stream, the side that
	// does not use the server port.
	Client, Server netip.AddrPort
	// Start and End are the times of the first and last frame.
	Start, End time.Time
	// Transport is "mqtt", "mqtts", "ws" or "wss".
	Transport string
	// TLS and WS hold what the TLS and WebSocket layers observed; nil when
	// the connection did not use the layer.
	TLS *tlstrace.Facts
	WS  *wstrace.Facts
	// MQTTVersion is the protocol level of the CONNECT: 4 (3.1.1), 3
	// (3.1) or 5; 0 when no CONNECT was seen.
	MQTTVersion int
	// Packets are the MQTT control packets of both directions, in capture
	// order.
	Packets []Packet
	// Gaps are the byte ranges of the TCP streams missing from the capture.
	Gaps []Gap
	// Problems are decode violations (malformed packets, errors of the
	// TLS or WebSocket layer, retransmissions that differ) and, marked
	// CaptureDefect, what the capture's own defects cost the decoding.
	Problems []Problem
	// MidStream reports that the capture started after the SYN.
	MidStream bool
	// PlainToTLSPort reports that the connection carried MQTT or
	// WebSocket without TLS to a server port that serves TLS (8883 or 443,
	// unless Options.Ports makes it a plaintext port): a client that did
	// not start TLS, which a DPS server must not answer.
	PlainToTLSPort bool
	// Closed reports, per Direction, that a FIN or RST was seen.
	Closed [2]bool
	// CloseFrame and CloseTime are, per Direction, the frame number and
	// time of the first FIN or RST of that direction (a RST closes both
	// directions at once); zero when Closed is false. Rules use them to
	// tell who closed first, and how long after the packet that caused it.
	CloseFrame [2]int
	CloseTime  [2]time.Time

	firstFrame int
}

// FirstFrame is the number of the conversation's first frame (its SYN, or
// its first captured segment).
func (c *Conversation) FirstFrame() int { return c.firstFrame }

// Packet is one MQTT control packet of a conversation.
type Packet struct {
	Dir  Direction
	Time time.Time
	// Frame is the 1-based number of the frame whose segment completed the
	// packet.
	Frame int
	// Offset is the position of the packet's first byte in the MQTT byte
	// stream of Dir (after TLS decryption and WebSocket unframing).
	Offset int64
	// Packet is the decoded MQTT 3.1.1 packet, owned by the Packet (its
	// byte slices alias Raw). For a conversation at protocol level 5 it is
	// a *packets.Raw carrying the fixed header byte and the body.
	Packet packets.Packet
	// V5 is the MQTT 5 packet decoded with paho.golang, nil unless
	// MQTTVersion is 5.
	V5 *pahopackets.ControlPacket
	// Violations are the rules of MQTT 3.1.1 the packet breaks.
	Violations []*packets.ProtocolError
	// Raw is the packet's encoding, fixed header included.
	Raw []byte
}

// Gap is a range of a TCP stream missing from the capture: a defect of
// the capture (lost by it, or cut by its snapshot length), not of the
// peers, which CountViolations leaves out and CountCaptureDefects counts.
type Gap struct {
	Dir Direction
	// Frame is the frame of the first segment captured after the missing
	// bytes: they were lost just before it, in the stream of Dir.
	Frame int
	// Noticed is the frame whose arrival made the missing bytes a gap:
	// a segment of the peer acknowledging past them (the capture lost
	// them), the segment whose data outgrew Options.MaxStreamBuffer, or
	// the last frame of the connection.
	Noticed int
	// Offset is the position of the gap in the TCP byte stream of Dir
	// (0 is the first byte after the SYN, or the first byte captured).
	Offset int64
	// Len is the number of missing bytes.
	Len int
	// Cut reports that the bytes were on the wire in frame Frame, but
	// the capture kept only its first bytes (its snapshot length): the
	// IP header says how many were cut.
	Cut bool
}

// ClauseUndecrypted labels a Problem that is no error of the peers: the
// TLS layer could not be decrypted (no key log entry for the connection,
// missing secrets, a suite the tracer does not decrypt). CountViolations
// and CountCaptureDefects leave it out; a check of such a capture has no
// verdict.
const ClauseUndecrypted = "tls-undecrypted"

// ClauseOverlap labels a Problem of the TCP layer: a retransmitted segment
// whose bytes differ from the copy of the same stream bytes held, out of
// order, from an earlier frame (a sender or middlebox rewriting data, or
// a damaged capture). The first copy is decoded; Problem.Offset is in the
// TCP byte stream. Bytes already decoded are not kept, so a retransmission
// of those is not compared.
const ClauseOverlap = "tracer-overlap"

// ClauseMidStream labels a Problem that is a capture defect: the capture
// started after the connection did (Conversation.MidStream) at a packet
// boundary, and the client's first packet seen is not its CONNECT, so the
// CONNECT and whatever followed it before the first packet seen (a
// SUBSCRIBE, a register request) were not captured and not judged. The
// problem is at the client's first packet (the server's when the client
// sent none). A conversation whose client stream starts inside a packet
// has a "tracer-resync" capture defect at offset 0 instead; one seen from
// its CONNECT on (only the TCP handshake missing) has neither.
const ClauseMidStream = "tracer-midstream"

// Undecrypted says why c's TLS was not decrypted, wholly or in part: the
// message of its first ClauseUndecrypted problem, or "" when there is
// none (decrypted, no TLS, or no key log given at all).
func (c *Conversation) Undecrypted() string {
	for _, p := range c.Problems {
		if p.Clause == ClauseUndecrypted {
			return p.Msg
		}
	}
	return ""
}

// Unseen says why some of c's MQTT could not be read, "" when all of it
// was: its TLS was not wholly decrypted (Undecrypted), a TCP stream has a
// gap, or a TLS record failed to decrypt (tlstrace.Facts.Stopped), after
// which its direction stays encrypted. What was lost may have held any
// packet, so a judge of c's MQTT would take the unseen for missing.
func (c *Conversation) Unseen() string {
	if why := c.Undecrypted(); why != "" {
		return why
	}
	if len(c.Gaps) > 0 {
		g := c.Gaps[0]
		return fmt.Sprintf("%d bytes of %v missing at stream offset %d, frame %d", g.Len, g.Dir, g.Offset, g.Frame)
	}
	if c.TLS != nil {
		for d, stopped := range c.TLS.Stopped {
			if stopped {
				return fmt.Sprintf("a TLS record of %v failed to decrypt; the rest of %v was not read", Direction(d), Direction(d))
			}
		}
	}
	return ""
}

// Problem is a decode violation, or a note on what could not be decoded:
// a capture defect (CaptureDefect) or an undecrypted TLS layer
// (ClauseUndecrypted).
type Problem struct {
	Dir   Direction
	Frame int
	// Offset is the position in the MQTT byte stream of Dir; for "tls"
	// and "ws" problems, in the byte stream that layer decodes.
	Offset int64
	// Clause is the MQTT normative statement broken, or a label of the
	// tracer: "tracer-resync" (bytes skipped to the next plausible fixed
	// header), "tracer-gap" (a packet cut by a gap), "tracer-truncated"
	// (the stream ends inside a packet), "tracer-buffer" (a packet larger
	// than Options.MaxStreamBuffer, skipped), ClauseOverlap (a
	// retransmission that differs from the copy held), ClauseMidStream
	// (the connection's start, its CONNECT, not captured), "MQTT5" (paho.golang could
	// not decode an MQTT 5 packet), "tls" or "ws" (layer errors), or
	// ClauseUndecrypted.
	Clause string
	Msg    string
	// PacketLen is, for "tracer-truncated", "tracer-gap" and
	// "tracer-buffer", the length (fixed header included) that the cut
	// packet's fixed header announced; 0 when it is unknown, or the
	// header was only guessed while resynchronising and never confirmed. Rules on
	// packet size judge from it when the sender stopped mid-packet.
	PacketLen int
	// CaptureDefect reports that the problem comes from a defect of the
	// capture, not from bytes a peer sent: a packet cut by a gap
	// ("tracer-gap"), bytes skipped to resynchronise after a gap or at
	// the start of a conversation captured mid-stream ("tracer-resync";
	// not after a malformed packet, which is the peer's), or a stream
	// that ends inside a packet with no FIN or RST seen in that direction
	// ("tracer-truncated": the capture ended first; after a FIN or RST
	// the stream really ended there, and the problem counts), or a
	// conversation captured mid-stream whose client's first packet is
	// not a CONNECT (ClauseMidStream). What was lost was not judged:
	// CountViolations leaves such problems out.
	CaptureDefect bool
}
