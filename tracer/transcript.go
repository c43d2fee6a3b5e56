package tracer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	pahopackets "github.com/eclipse/paho.golang/packets"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// TranscriptOptions control WriteText and WriteJSON.
type TranscriptOptions struct {
	// ShowSecrets prints SAS signatures and non-SAS passwords instead of
	// "[redacted]".
	ShowSecrets bool
}

// WriteText writes a transcript of the capture: a header line per
// conversation, then one line per MQTT packet, gap and problem, with the
// time since the conversation's first frame, the direction, the frame
// number and DPS-aware fields (register and poll requests, response
// status, $rid, retry-after, operation id, and the time between a poll and
// the retry-after that preceded it).
func WriteText(w io.Writer, c *Capture, o TranscriptOptions) error {
	bw := bufio.NewWriter(w)
	for _, wr := range c.Warnings {
		fmt.Fprintf(bw, "warning: %s\n", wr)
	}
	for _, cv := range c.Conversations {
		writeConversation(bw, cv, o)
	}
	return bw.Flush()
}

func dirArrow(d Direction) string {
	if d == ClientToServer {
		return "c>s"
	}
	return "s>c"
}

func relTime(start, t time.Time) string {
	return strconv.FormatFloat(t.Sub(start).Seconds(), 'f', 3, 64)
}

// transcriptEvent is a packet, gap or problem, ordered by frame.
type transcriptEvent struct {
	frame int
	pkt   *Packet
	gap   *Gap
	prob  *Problem
}

func writeConversation(w *bufio.Writer, c *Conversation, o TranscriptOptions) {
	fmt.Fprintf(w, "conversation %d %s > %s %s", c.ID, c.Client, c.Server, c.Transport)
	switch c.MQTTVersion {
	case 3:
		w.WriteString(" MQTT 3.1")
	case 4:
		w.WriteString(" MQTT 3.1.1")
	case 5:
		w.WriteString(" MQTT 5 (not supported by DPS)")
	}
	if c.MidStream {
		w.WriteString(" mid-stream")
	}
	if t := c.TLS; t != nil {
		fmt.Fprintf(w, " %s", tlsSummary(t))
	}
	if ws := c.WS; ws != nil {
		fmt.Fprintf(w, " ws path=%s status=%d subprotocol=%q", ws.Path, ws.Status, ws.Subprotocol)
	}
	w.WriteString("\n")

	merged := mergeEvents(c)
	var st dpsState
	for _, e := range merged {
		switch {
		case e.gap != nil:
			fmt.Fprintf(w, "  %s #%d GAP %d bytes missing at stream offset %d%s\n", dirArrow(e.gap.Dir), e.gap.Frame, e.gap.Len, e.gap.Offset, gapNote(e.gap))
		case e.prob != nil:
			note := ""
			if e.prob.CaptureDefect {
				note = "; a defect of the capture, not counted by --check"
			}
			fmt.Fprintf(w, "  %s #%d ! [%s] %s (offset %d%s)\n", dirArrow(e.prob.Dir), e.prob.Frame, e.prob.Clause, e.prob.Msg, e.prob.Offset, note)
		default:
			p := e.pkt
			fmt.Fprintf(w, "%s %s #%d %s\n", relTime(c.Start, p.Time), dirArrow(p.Dir), p.Frame, describe(p, &st, o))
			for _, v := range p.Violations {
				fmt.Fprintf(w, "  ! [%s] %s\n", v.Clause, v.Msg)
			}
			if n := dpsNote(p); n != "" {
				fmt.Fprintf(w, "  ! [DPS] %s (DPS-level finding, not counted by --check)\n", n)
			}
		}
	}
}

// gapNote says, when it is another frame than the one the gap precedes,
// which frame made the missing bytes a gap.
func gapNote(g *Gap) string {
	if g.Cut {
		return " (not captured: the snapshot length cut this frame)"
	}
	if g.Noticed == 0 || g.Noticed == g.Frame {
		return ""
	}
	return fmt.Sprintf(" (before this frame; noticed at frame %d)", g.Noticed)
}

// mergeEvents lists the packets, gaps and problems of c by frame (stable:
// gaps and problems of a frame before its packets).
func mergeEvents(c *Conversation) []transcriptEvent {
	events := make([]transcriptEvent, 0, len(c.Packets)+len(c.Gaps)+len(c.Problems))
	for i := range c.Packets {
		events = append(events, transcriptEvent{frame: c.Packets[i].Frame, pkt: &c.Packets[i]})
	}
	gi, pi := 0, 0
	merged := make([]transcriptEvent, 0, cap(events))
	for _, e := range events {
		for gi < len(c.Gaps) && c.Gaps[gi].Frame <= e.frame {
			merged = append(merged, transcriptEvent{frame: c.Gaps[gi].Frame, gap: &c.Gaps[gi]})
			gi++
		}
		for pi < len(c.Problems) && c.Problems[pi].Frame <= e.frame {
			merged = append(merged, transcriptEvent{frame: c.Problems[pi].Frame, prob: &c.Problems[pi]})
			pi++
		}
		merged = append(merged, e)
	}
	for ; gi < len(c.Gaps); gi++ {
		merged = append(merged, transcriptEvent{frame: c.Gaps[gi].Frame, gap: &c.Gaps[gi]})
	}
	for ; pi < len(c.Problems); pi++ {
		merged = append(merged, transcriptEvent{frame: c.Problems[pi].Frame, prob: &c.Problems[pi]})
	}

	return merged
}

// alertText names an alert with its sender: "client fatal
// bad_certificate".
func alertText(a tlstrace.Alert) string {
	if a.Dir == tlstrace.ServerToClient {
		return "server " + a.String()
	}
	return "client " + a.String()
}

func tlsSummary(t *tlstrace.Facts) string {
	var b strings.Builder
	b.WriteString("tls")
	if t.Version != 0 {
		b.WriteString(" " + strings.ReplaceAll(tlstrace.VersionName(t.Version), " ", ""))
	}
	if t.Suite != 0 {
		b.WriteString(" " + tlstrace.SuiteName(t.Suite))
	}
	if t.SNI != "" {
		b.WriteString(" sni=" + t.SNI)
	}
	for i, a := range t.Alerts {
		if i == 4 {
			fmt.Fprintf(&b, " +%d alerts", len(t.Alerts)-i)
			break
		}
		b.WriteString(" alert(" + alertText(a) + ")")
	}
	switch {
	case t.Decrypted:
		b.WriteString(" decrypted")
	case t.KeyLogFound:
		b.WriteString(" keys-found-not-decrypted")
	case t.Protected:
		b.WriteString(" encrypted(no keys)")
	default:
		// Nothing protected was seen (a handshake that ended early, or
		// a capture that stops before it): "no keys" would suggest a
		// key log could show more.
		b.WriteString(" no-encrypted-records")
	}
	return b.String()
}

// dpsState remembers the last 202 of a conversation, to time the poll
// that follows it.
type dpsState struct {
	at         time.Time
	retryAfter time.Duration
	hasRetry   bool
	seen       bool
}

// printable quotes s when it holds characters that would break a line.
func printable(b []byte) string {
	s := string(b)
	if !utf8.ValidString(s) || strings.ContainsAny(s, " \t\r\n\"") {
		return strconv.Quote(s)
	}
	if s == "" {
		return `""`
	}
	return s
}

// redactPassword hides the signature of a SAS token, or the whole
// password when it is not one.
func redactPassword(pw []byte, show bool) string {
	s := string(pw)
	if show {
		return printable(pw)
	}
	if _, err := dps.ParseSASToken(s); err != nil {
		return fmt.Sprintf("[redacted %d bytes]", len(pw))
	}
	fields := strings.Split(s, "&")
	for i, f := range fields {
		k, _, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		if strings.EqualFold(strings.TrimPrefix(k, "SharedAccessSignature "), "sig") {
			fields[i] = k + "=[redacted]"
		}
	}
	return printable([]byte(strings.Join(fields, "&")))
}

// v5String renders an MQTT 5 packet with paho.golang's String, the CONNECT
// password redacted like a 3.1.1 one (paho prints it verbatim).
func v5String(cp *pahopackets.ControlPacket, o TranscriptOptions) string {
	c, ok := cp.Content.(*pahopackets.Connect)
	if !ok || !c.PasswordFlag || o.ShowSecrets {
		return cp.String()
	}
	clone := *c
	clone.Password = []byte(redactPassword(c.Password, false))
	return clone.String()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// describe renders one packet for the text transcript.
func describe(p *Packet, st *dpsState, o TranscriptOptions) string {
	if p.V5 != nil {
		return "MQTT5 " + strings.TrimSpace(v5String(p.V5, o))
	}
	var b strings.Builder
	b.WriteString(p.Packet.Type().String())
	switch q := p.Packet.(type) {
	case *packets.Connect:
		fmt.Fprintf(&b, " clientId=%s", printable(q.ClientID))
		if q.Username != nil {
			fmt.Fprintf(&b, " user=%s", printable(q.Username))
		}
		if q.Password != nil {
			fmt.Fprintf(&b, " pass=%s", redactPassword(q.Password, o.ShowSecrets))
		}
		if q.WillTopic != nil {
			fmt.Fprintf(&b, " will=%s willQos=%d", printable(q.WillTopic), q.WillQoS)
		}
		fmt.Fprintf(&b, " clean=%d keepalive=%d", b2i(q.CleanSession), q.KeepAlive)
		if q.ProtocolLevel != 4 {
			fmt.Fprintf(&b, " level=%d", q.ProtocolLevel)
		}
	case *packets.Connack:
		fmt.Fprintf(&b, " rc=%d sp=%d", q.ReturnCode, b2i(q.SessionPresent))
	case *packets.Publish:
		describePublish(&b, p, q, st)
	case *packets.Puback:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
	case *packets.Pubrec:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
	case *packets.Pubrel:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
	case *packets.Pubcomp:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
	case *packets.Subscribe:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
		for _, s := range q.Subscriptions {
			fmt.Fprintf(&b, " %s:%d", printable(s.Filter), s.QoS)
		}
	case *packets.Suback:
		fmt.Fprintf(&b, " id=%d codes=", q.PacketID)
		for i, c := range q.ReturnCodes {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d", byte(c))
		}
	case *packets.Unsubscribe:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
		for _, f := range q.Filters {
			fmt.Fprintf(&b, " %s", printable(f))
		}
	case *packets.Unsuback:
		fmt.Fprintf(&b, " id=%d", q.PacketID)
	case *packets.Raw:
		fmt.Fprintf(&b, " header=%#02x len=%d", q.Header, len(q.Body))
	}
	return b.String()
}

// dpsNote is a DPS-level finding about packet p, or "": a request topic
// with "?rid=" where DPS wants "?$rid=" (dps.ErrRIDWithoutDollar).
func dpsNote(p *Packet) string {
	q, ok := p.Packet.(*packets.Publish)
	if !ok || p.Dir != ClientToServer {
		return ""
	}
	if _, err := dps.ParseRequestTopic(string(q.Topic)); errors.Is(err, dps.ErrRIDWithoutDollar) {
		return `request topic has "rid" without "$": DPS expects "?$rid="`
	}
	return ""
}

func describePublish(b *strings.Builder, p *Packet, q *packets.Publish, st *dpsState) {
	topic := string(q.Topic)
	flags := fmt.Sprintf(" qos=%d", q.QoS)
	if q.QoS > 0 {
		flags += fmt.Sprintf(" id=%d", q.PacketID)
	}
	if q.Dup {
		flags += " dup=1"
	}
	if q.Retain {
		flags += " retain=1"
	}
	flags += fmt.Sprintf(" len=%d", len(q.Payload))
	if p.Dir == ClientToServer {
		if r, err := dps.ParseRequestTopic(topic); err == nil {
			fmt.Fprintf(b, " %s $rid=%s", r.Kind, r.RID)
			if r.Kind == dps.Poll {
				fmt.Fprintf(b, " operationId=%s", r.OperationID)
			}
			b.WriteString(flags)
			if r.Kind == dps.Poll && st.seen {
				d := p.Time.Sub(st.at)
				fmt.Fprintf(b, " (+%.2f s after 202", d.Seconds())
				if st.hasRetry {
					fmt.Fprintf(b, ", retry-after %d s", int(st.retryAfter/time.Second))
					if d < st.retryAfter {
						b.WriteString(", EARLY")
					}
				}
				b.WriteString(")")
			}
			return
		}
	} else if r, err := dps.ParseResponseTopic(topic); err == nil {
		fmt.Fprintf(b, " %d $rid=%s", r.Status, r.RID)
		if r.HasRetryAfter {
			fmt.Fprintf(b, " retry-after=%d", int(r.RetryAfter/time.Second))
		}
		var eb dps.ErrorBody
		if r.Status >= 400 && json.Unmarshal(q.Payload, &eb) == nil && (eb.ErrorCode != 0 || eb.Message != "") {
			fmt.Fprintf(b, " errorCode=%d message=%q", eb.ErrorCode, eb.Message)
		}
		var body dps.RegistrationOperationStatus
		if (r.Status == 200 || r.Status == 202) && json.Unmarshal(q.Payload, &body) == nil {
			if body.OperationID != "" {
				fmt.Fprintf(b, " operationId=%s", body.OperationID)
			}
			if body.Status != "" {
				fmt.Fprintf(b, " status=%s", body.Status)
			}
		}
		b.WriteString(flags)
		if r.Status == 202 {
			*st = dpsState{at: p.Time, retryAfter: r.RetryAfter, hasRetry: r.HasRetryAfter, seen: true}
		}
		return
	}
	fmt.Fprintf(b, " topic=%s%s", printable(q.Topic), flags)
}

// jsonTime is the fixed-precision timestamp of the JSON transcript:
// RFC 3339 in UTC with 6 fractional digits.
const jsonTime = "2006-01-02T15:04:05.000000Z07:00"

// jsonPacket is one line of the JSON transcript (ARCHITECTURE.md §3).
type jsonPacket struct {
	TS             string       `json:"ts"`
	Flow           int          `json:"flow"`
	Frame          int          `json:"frame"`
	Dir            string       `json:"dir"`
	Type           string       `json:"type"`
	ClientID       *string      `json:"clientId,omitempty"`
	Username       *string      `json:"username,omitempty"`
	CleanSession   *bool        `json:"cleanSession,omitempty"`
	KeepAlive      *uint16      `json:"keepAlive,omitempty"`
	Topic          *string      `json:"topic,omitempty"`
	QoS            *byte        `json:"qos,omitempty"`
	Filters        []jsonFilter `json:"filters,omitempty"`
	Topics         []string     `json:"topics,omitempty"`
	PacketID       *uint16      `json:"packetId,omitempty"`
	ReturnCode     *byte        `json:"returnCode,omitempty"`
	SessionPresent *bool        `json:"sessionPresent,omitempty"`
	GrantedQoS     []int        `json:"grantedQoS,omitempty"`
	PayloadLen     *int         `json:"payloadLen,omitempty"`
	Violations     []string     `json:"violations,omitempty"`
}

// jsonFilter is one topic filter of a SUBSCRIBE with its requested QoS.
type jsonFilter struct {
	Topic string `json:"topic"`
	QoS   byte   `json:"qos"`
}

// jsonConversation is the object that starts each conversation.
type jsonConversation struct {
	TS          string   `json:"ts"`
	Flow        int      `json:"flow"`
	Type        string   `json:"type"` // "conversation"
	Client      string   `json:"client"`
	Server      string   `json:"server"`
	Transport   string   `json:"transport"`
	MQTTVersion int      `json:"mqttVersion,omitempty"`
	MidStream   bool     `json:"midStream,omitempty"`
	TLS         *jsonTLS `json:"tls,omitempty"`
	Packets     int      `json:"packets"`
}

// jsonTLS is what the TLS layer of a conversation showed.
type jsonTLS struct {
	Version     string `json:"version,omitempty"`
	Suite       string `json:"suite,omitempty"`
	SNI         string `json:"sni,omitempty"`
	KeyLogFound bool   `json:"keyLogFound"`
	Decrypted   bool   `json:"decrypted"`
	// Alerts are "client fatal bad_certificate" and the like, in order.
	Alerts []string `json:"alerts,omitempty"`
}

// jsonEvent is a gap, a problem or a capture warning.
type jsonEvent struct {
	Flow    int    `json:"flow,omitempty"`
	Frame   int    `json:"frame,omitempty"`
	Dir     string `json:"dir,omitempty"`
	Type    string `json:"type"` // "gap", "problem" or "warning"
	Offset  *int64 `json:"offset,omitempty"`
	Bytes   int    `json:"bytes,omitempty"`
	Noticed int    `json:"noticed,omitempty"` // gap: Gap.Noticed
	Cut     bool   `json:"cut,omitempty"`     // gap: Gap.Cut
	Clause  string `json:"clause,omitempty"`
	Message string `json:"message,omitempty"`
	// CaptureDefect is true on every gap, and on a problem that is
	// Problem.CaptureDefect: not counted as a decode violation.
	CaptureDefect bool `json:"captureDefect,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// WriteJSON writes one JSON object per line: a "warning" object per
// capture warning, then for each conversation a "conversation" object
// (endpoints, transport, MQTT version, TLS facts, packet count) followed
// by its MQTT packets (the fields of ARCHITECTURE.md §3: ts, flow, dir,
// type and the type's fields) and its "gap" and "problem" objects, in
// frame order. Passwords are never written.
func WriteJSON(w io.Writer, c *Capture, o TranscriptOptions) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, wr := range c.Warnings {
		if err := enc.Encode(jsonEvent{Type: "warning", Message: wr}); err != nil {
			return err
		}
	}
	for _, cv := range c.Conversations {
		h := jsonConversation{TS: cv.Start.UTC().Format(jsonTime), Flow: cv.ID, Type: "conversation",
			Client: cv.Client.String(), Server: cv.Server.String(), Transport: cv.Transport,
			MQTTVersion: cv.MQTTVersion, MidStream: cv.MidStream, Packets: len(cv.Packets)}
		if t := cv.TLS; t != nil {
			h.TLS = &jsonTLS{SNI: t.SNI, KeyLogFound: t.KeyLogFound, Decrypted: t.Decrypted}
			if t.Version != 0 {
				h.TLS.Version = tlstrace.VersionName(t.Version)
			}
			if t.Suite != 0 {
				h.TLS.Suite = tlstrace.SuiteName(t.Suite)
			}
			for _, a := range t.Alerts {
				h.TLS.Alerts = append(h.TLS.Alerts, alertText(a))
			}
		}
		if err := enc.Encode(h); err != nil {
			return err
		}
		for _, e := range mergeEvents(cv) {
			var v any
			switch {
			case e.gap != nil:
				v = jsonEvent{Flow: cv.ID, Frame: e.gap.Frame, Dir: e.gap.Dir.String(), Type: "gap", Offset: ptr(e.gap.Offset), Bytes: e.gap.Len, Noticed: e.gap.Noticed, Cut: e.gap.Cut, CaptureDefect: true}
			case e.prob != nil:
				v = jsonEvent{Flow: cv.ID, Frame: e.prob.Frame, Dir: e.prob.Dir.String(), Type: "problem", Offset: ptr(e.prob.Offset), Clause: e.prob.Clause, Message: e.prob.Msg, CaptureDefect: e.prob.CaptureDefect}
			default:
				v = jsonOf(cv, e.pkt)
			}
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	}
	return bw.Flush()
}

// jsonOf is the JSON object of packet p of conversation cv.
func jsonOf(cv *Conversation, p *Packet) jsonPacket {
	j := jsonPacket{TS: p.Time.UTC().Format(jsonTime), Flow: cv.ID, Frame: p.Frame, Dir: p.Dir.String(), Type: p.Packet.Type().String()}
	if p.V5 != nil {
		j.Type = p.V5.PacketType()
	}
	switch q := p.Packet.(type) {
	case *packets.Connect:
		j.ClientID = ptr(string(q.ClientID))
		if q.Username != nil {
			j.Username = ptr(string(q.Username))
		}
		j.CleanSession, j.KeepAlive = ptr(q.CleanSession), ptr(q.KeepAlive)
	case *packets.Connack:
		j.ReturnCode, j.SessionPresent = ptr(byte(q.ReturnCode)), ptr(q.SessionPresent)
	case *packets.Publish:
		j.Topic, j.QoS, j.PayloadLen = ptr(string(q.Topic)), ptr(q.QoS), ptr(len(q.Payload))
		if q.QoS > 0 {
			j.PacketID = ptr(q.PacketID)
		}
	case *packets.Puback:
		j.PacketID = ptr(q.PacketID)
	case *packets.Pubrec:
		j.PacketID = ptr(q.PacketID)
	case *packets.Pubrel:
		j.PacketID = ptr(q.PacketID)
	case *packets.Pubcomp:
		j.PacketID = ptr(q.PacketID)
	case *packets.Subscribe:
		j.PacketID = ptr(q.PacketID)
		// topic and qos are the first filter's, for compatibility;
		// filters lists them all.
		if len(q.Subscriptions) > 0 {
			j.Topic, j.QoS = ptr(string(q.Subscriptions[0].Filter)), ptr(q.Subscriptions[0].QoS)
		}
		for _, sub := range q.Subscriptions {
			j.Filters = append(j.Filters, jsonFilter{Topic: string(sub.Filter), QoS: sub.QoS})
		}
	case *packets.Suback:
		j.PacketID = ptr(q.PacketID)
		j.GrantedQoS = make([]int, len(q.ReturnCodes))
		for i, c := range q.ReturnCodes {
			j.GrantedQoS[i] = int(c)
		}
	case *packets.Unsubscribe:
		j.PacketID = ptr(q.PacketID)
		for _, t := range q.Filters {
			j.Topics = append(j.Topics, string(t))
		}
		if len(q.Filters) > 0 {
			j.Topic = ptr(string(q.Filters[0]))
		}
	case *packets.Unsuback:
		j.PacketID = ptr(q.PacketID)
	}
	for _, v := range p.Violations {
		j.Violations = append(j.Violations, v.Clause+": "+v.Msg)
	}
	return j
}

// CountViolations returns the number of decode violations in the capture:
// rules broken by decoded packets and problems (malformed packets, bytes
// skipped after them, TLS and WebSocket errors, differing
// retransmissions), all of them bytes the peers sent. Defects of the
// capture (gaps, Problem.CaptureDefect) and ClauseUndecrypted are no
// violations: see CountCaptureDefects.
func CountViolations(c *Capture) int {
	n := 0
	for _, cv := range c.Conversations {
		for _, p := range cv.Problems {
			if p.Clause != ClauseUndecrypted && !p.CaptureDefect {
				n++
			}
		}
		for _, p := range cv.Packets {
			n += len(p.Violations)
		}
	}
	return n
}

// CountCaptureDefects returns the number of defects of the capture in c:
// gaps (bytes lost by the capture or cut by its snapshot length) and the
// problems they and mid-stream starts caused (Problem.CaptureDefect).
// What they lost was not judged, so a capture with defects but no
// violation has no verdict.
func CountCaptureDefects(c *Capture) int {
	n := 0
	for _, cv := range c.Conversations {
		n += len(cv.Gaps)
		for _, p := range cv.Problems {
			if p.CaptureDefect {
				n++
			}
		}
	}
	return n
}
