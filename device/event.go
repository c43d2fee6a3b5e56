package device

import (
	"fmt"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/packets"
)

// Direction says what an Event records.
type Direction int

// Event directions.
const (
	// Sent: the client wrote Packet.
	Sent Direction = iota + 1
	// Received: the client read Packet (with its Violations, if any).
	Received
	// Waited: the client began a wait of Wait (retry-after, back-off).
	Waited
	// Closed: the connection ended while reading; Err says how.
	Closed
)

// String returns "sent", "received", "waited" or "closed".
func (d Direction) String() string {
	switch d {
	case Sent:
		return "sent"
	case Received:
		return "received"
	case Waited:
		return "waited"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Event is one observation of Config.Trace. Packet is a copy the observer
// may keep; it may contain the SAS token in a CONNECT password, which
// String redacts.
type Event struct {
	Time       time.Time
	Dir        Direction
	Packet     packets.Packet
	Violations packets.Violations
	Wait       time.Duration
	Err        error
}

// String formats the event on one line, secrets redacted, e.g.
// "sent PUBLISH qos=1 id=2 topic=$dps/registrations/PUT/iotdps-register/?$rid=1 body={…}".
func (e Event) String() string {
	switch e.Dir {
	case Waited:
		return fmt.Sprintf("waited %v", e.Wait)
	case Closed:
		return fmt.Sprintf("closed: %v", e.Err)
	}
	s := e.Dir.String() + " " + Describe(e.Packet)
	if len(e.Violations) > 0 {
		s += " ! " + e.Violations.Error()
	}
	return s
}

// maxBodyShown bounds the payload bytes Describe prints.
const maxBodyShown = 512

// Describe formats p on one line with its DPS-relevant fields; a CONNECT
// password is redacted (the SAS sig is replaced, any other password is
// reduced to its length).
func Describe(p packets.Packet) string {
	switch p := p.(type) {
	case nil:
		return "<nil>"
	case *packets.Connect:
		return fmt.Sprintf("CONNECT level=%d clean=%t keepalive=%d clientId=%q username=%q password=%q",
			p.ProtocolLevel, p.CleanSession, p.KeepAlive, p.ClientID, p.Username, redactPassword(p.Password))
	case *packets.Connack:
		return fmt.Sprintf("CONNACK sessionPresent=%t rc=0x%02x (%s)", p.SessionPresent, byte(p.ReturnCode), p.ReturnCode)
	case *packets.Publish:
		var b strings.Builder
		fmt.Fprintf(&b, "PUBLISH qos=%d", p.QoS)
		if p.QoS > 0 {
			fmt.Fprintf(&b, " id=%d", p.PacketID)
		}
		if p.Dup {
			b.WriteString(" dup")
		}
		if p.Retain {
			b.WriteString(" retain")
		}
		fmt.Fprintf(&b, " topic=%s", p.Topic)
		body := p.Payload
		if len(body) > maxBodyShown {
			fmt.Fprintf(&b, " body(%d bytes)=%s…", len(body), body[:maxBodyShown])
		} else {
			fmt.Fprintf(&b, " body=%s", body)
		}
		return b.String()
	case *packets.Subscribe:
		var parts []string
		for _, s := range p.Subscriptions {
			parts = append(parts, fmt.Sprintf("%s@%d", s.Filter, s.QoS))
		}
		return fmt.Sprintf("SUBSCRIBE id=%d %s", p.PacketID, strings.Join(parts, " "))
	case *packets.Suback:
		var parts []string
		for _, c := range p.ReturnCodes {
			parts = append(parts, fmt.Sprintf("0x%02x", byte(c)))
		}
		return fmt.Sprintf("SUBACK id=%d rc=%s", p.PacketID, strings.Join(parts, ","))
	case *packets.Puback:
		return fmt.Sprintf("PUBACK id=%d", p.PacketID)
	case *packets.Pubrec:
		return fmt.Sprintf("PUBREC id=%d", p.PacketID)
	case *packets.Pubrel:
		return fmt.Sprintf("PUBREL id=%d", p.PacketID)
	case *packets.Pubcomp:
		return fmt.Sprintf("PUBCOMP id=%d", p.PacketID)
	case *packets.Raw:
		return fmt.Sprintf("RAW header=0x%02x len=%d", p.Header, len(p.Body))
	}
	return p.Type().String()
}
