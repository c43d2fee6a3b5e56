package conformance

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/onsi/ginkgo/v2"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// Report entry names the suite attaches to every judged spec, for the
// report layer (package reports): it reads them from Ginkgo's report, in
// process or from the JSON report, without decoding captures again.
const (
	// EntryPcap is the path of the spec's capture.
	EntryPcap = "pcap"
	// EntryTranscript is the tracer's text transcript of the decoded
	// capture, secrets redacted.
	EntryTranscript = "transcript"
	// EntrySequence is a JSON []SequenceEvent: the exchange, for sequence
	// diagrams.
	EntrySequence = "sequence"
	// EntryFindings is a JSON []Finding: the spec's own findings.
	EntryFindings = "findings"
	// EntryTLS is a JSON []TLSFact: what each TLS conversation negotiated.
	EntryTLS = "tls"
)

// SequenceEvent is one MQTT packet of a spec's decoded capture.
type SequenceEvent struct {
	Conversation int     `json:"conversation"`
	Frame        int     `json:"frame"`
	T            float64 `json:"t"` // seconds since the capture's first packet
	Dir          string  `json:"dir"`
	Label        string  `json:"label"`
	Violation    string  `json:"violation,omitempty"`
}

// TLSFact is the negotiated TLS version and suite of one conversation.
type TLSFact struct {
	Conversation int    `json:"conversation"`
	Version      string `json:"version"`
	Suite        string `json:"suite"`
	SNI          string `json:"sni,omitempty"`
}

const maxSequenceEvents = 400

func addEvidenceEntries(capt *tracer.Capture, own []Finding) {
	var b strings.Builder
	if err := tracer.WriteText(&b, capt, tracer.TranscriptOptions{}); err == nil {
		ginkgo.AddReportEntry(EntryTranscript, b.String(), ginkgo.ReportEntryVisibilityNever)
	}
	seq, tls := sequenceOf(capt)
	if j, err := json.Marshal(seq); err == nil {
		ginkgo.AddReportEntry(EntrySequence, string(j), ginkgo.ReportEntryVisibilityNever)
	}
	if len(tls) > 0 {
		if j, err := json.Marshal(tls); err == nil {
			ginkgo.AddReportEntry(EntryTLS, string(j), ginkgo.ReportEntryVisibilityNever)
		}
	}
	if own == nil {
		own = []Finding{}
	}
	if j, err := json.Marshal(own); err == nil {
		ginkgo.AddReportEntry(EntryFindings, string(j), ginkgo.ReportEntryVisibilityNever)
	}
}

// Sequence lists the MQTT packets (and closes) of a decoded capture for a
// sequence diagram, at most 400.
func Sequence(capt *tracer.Capture) []SequenceEvent {
	seq, _ := sequenceOf(capt)
	return seq
}

func sequenceOf(capt *tracer.Capture) ([]SequenceEvent, []TLSFact) {
	seq := []SequenceEvent{}
	var tls []TLSFact
	for _, c := range capt.Conversations {
		if c.TLS != nil && c.TLS.ServerHello {
			tls = append(tls, TLSFact{Conversation: c.ID, Version: tlstrace.VersionName(c.TLS.Version), Suite: tlstrace.SuiteName(c.TLS.Suite), SNI: c.TLS.SNI})
		}
	}
	if len(capt.Conversations) == 0 {
		return seq, tls
	}
	start := capt.Conversations[0].Start
	for _, c := range capt.Conversations {
		for i := range c.Packets {
			if len(seq) == maxSequenceEvents {
				return seq, tls
			}
			p := &c.Packets[i]
			ev := SequenceEvent{Conversation: c.ID, Frame: p.Frame, T: p.Time.Sub(start).Seconds(), Dir: p.Dir.String(), Label: label(p)}
			if len(p.Violations) > 0 {
				ev.Violation = p.Violations[0].Clause
			}
			seq = append(seq, ev)
		}
		for d := tracer.ClientToServer; d <= tracer.ServerToClient; d++ {
			if c.Closed[d] && len(seq) < maxSequenceEvents {
				seq = append(seq, SequenceEvent{Conversation: c.ID, Frame: c.CloseFrame[d], T: c.CloseTime[d].Sub(start).Seconds(), Dir: d.String(), Label: "FIN"})
			}
		}
	}
	return seq, tls
}

// label is a short DPS-aware name of a packet.
func label(p *tracer.Packet) string {
	switch pk := p.Packet.(type) {
	case *packets.Connect:
		return fmt.Sprintf("CONNECT %s", pk.ClientID)
	case *packets.Connack:
		return fmt.Sprintf("CONNACK 0x%02x", byte(pk.ReturnCode))
	case *packets.Subscribe:
		if len(pk.Subscriptions) > 0 {
			return fmt.Sprintf("SUBSCRIBE %s q%d", pk.Subscriptions[0].Filter, pk.Subscriptions[0].QoS)
		}
		return "SUBSCRIBE"
	case *packets.Suback:
		return describe(pk)
	case *packets.Publish:
		if p.Dir == tracer.ServerToClient {
			if r, err := dps.ParseResponseTopic(string(pk.Topic)); err == nil {
				l := fmt.Sprintf("%d $rid=%s", r.Status, r.RID)
				if r.HasRetryAfter {
					l += fmt.Sprintf(" retry-after=%d", int(r.RetryAfter.Seconds()))
				}
				return l
			}
		} else if r, err := dps.ParseRequestTopic(string(pk.Topic)); err == nil {
			return fmt.Sprintf("%s $rid=%s", r.Kind, r.RID)
		}
		return fmt.Sprintf("PUBLISH %s", pk.Topic)
	case *packets.Puback:
		return fmt.Sprintf("PUBACK %d", pk.PacketID)
	case nil:
		return "?"
	default:
		return p.Packet.Type().String()
	}
}
