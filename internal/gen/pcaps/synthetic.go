package main

import (
	"net/netip"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// Synthetic endpoints (RFC 5737 documentation addresses).
var (
	deviceAddr = netip.MustParseAddr("192.0.2.10")
	serverAddr = netip.MustParseAddr("192.0.2.20")
)

// flowMSS is the MSS of the synthetic flows (tracer's IPv4 default, made
// explicit so that the truth can tell where segments end).
const flowMSS = 1460

// sflow is a synthetic flow with its truth.
type sflow struct {
	c   *capture
	f   *tracer.Flow
	idx int
}

// flow starts a synthetic flow from deviceAddr:clientPort to serverAddr:1883.
func (c *capture) flow(clientPort uint16, o tracer.FlowOptions) (*sflow, error) {
	cl := netip.AddrPortFrom(deviceAddr, clientPort)
	sv := netip.AddrPortFrom(serverAddr, 1883)
	o.MSS = flowMSS
	f, err := c.rec.Flow(cl, sv, o)
	if err != nil {
		return nil, err
	}
	return &sflow{c: c, f: f, idx: c.truthFlow(cl.String(), sv.String(), "plain")}, nil
}

// send writes ps, concatenated, as one Send from side.
func (s *sflow) send(from tracer.Side, o tracer.SegOpts, ps ...packets.Packet) error {
	b, err := encode(ps...)
	if err != nil {
		return err
	}
	if err := s.f.Send(from, b, o); err != nil {
		return err
	}
	ends := segmentEnds(len(b), o.Split)
	off := 0
	for _, p := range ps {
		s.c.note(from, p, s.idx)
		pb, err := encode(p)
		if err != nil {
			return err
		}
		// The fixed header is the type byte and 1 to 4 remaining-length
		// bytes, the last without the continuation bit.
		h := 2
		for h < len(pb) && h < 5 && pb[h-1]&0x80 != 0 {
			h++
		}
		for _, e := range ends {
			if off < e && e < off+h {
				tp := s.c.truth.Flows[s.idx].Packets
				tp[len(tp)-1].RemLenSplit = true
			}
		}
		off += len(pb)
	}
	return nil
}

// segmentEnds are the offsets in a Send of n bytes at which its TCP
// segments end: the sizes in split, then cuts at flowMSS.
func segmentEnds(n int, split []int) []int {
	var ends []int
	off := 0
	for _, sz := range split {
		if off+sz >= n {
			break
		}
		off += sz
		ends = append(ends, off)
	}
	for off+flowMSS < n {
		off += flowMSS
		ends = append(ends, off)
	}
	return ends
}

// play sends steps one per Send.
func (s *sflow) play(steps []step) error {
	for _, st := range steps {
		s.c.clock.advance(st.wait)
		if err := s.send(st.from, tracer.SegOpts{}, st.p); err != nil {
			return err
		}
	}
	return nil
}

// buildViolations: one connection with a SUBACK granting QoS 2, a register
// topic with "?rid=" and a poll 1 s after "retry-after=3"; the service
// answers the poll with 401 and the device reconnects and registers again.
func buildViolations(c *capture) error {
	f, err := c.flow(50010, tracer.FlowOptions{Comment: "violations: SUBACK QoS 2 [MQTT-3.9.3-2 family], ?rid= without $, poll before retry-after, retry after 401"})
	if err != nil {
		return err
	}
	conn, err := connectPacket()
	if err != nil {
		return err
	}
	badTopic := "$dps/registrations/PUT/iotdps-register/?rid=1"
	reg, err1 := publish(badTopic, 2, registerBody())
	res202, err2 := publish(dps.ResponseTopic(202, "1", 3), 1, assigningBody())
	poll, err3 := publish(dps.PollTopic("2", operationID), 3, struct{}{})
	res401, err4 := publish(dps.ResponseTopic(401, "2", -1), 2, dps.ErrorBody{ErrorCode: 401002,
		TrackingID: "00000000-0000-0000-0000-000000000401", Message: "Invalid certificate.", TimestampUTC: "2026-03-01T12:00:02.000Z"})
	reg2, err5 := publish(dps.RegisterTopic("3"), 2, registerBody())
	res401b, err6 := publish(dps.ResponseTopic(401, "3", -1), 1, dps.ErrorBody{ErrorCode: 401002,
		TrackingID: "00000000-0000-0000-0000-000000000402", Message: "Invalid certificate.", TimestampUTC: "2026-03-01T12:00:03.000Z"})
	if err := firstErr(err1, err2, err3, err4, err5, err6); err != nil {
		return err
	}
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 2}}}
	if err := f.play([]step{
		{from: tracer.Client, p: conn},
		{from: tracer.Server, p: &packets.Connack{ReturnCode: packets.ConnackAccepted}},
		{from: tracer.Client, p: sub},
		{from: tracer.Server, p: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS2}}},
		{from: tracer.Client, p: reg},
		{from: tracer.Server, p: &packets.Puback{PacketID: 2}},
		{from: tracer.Server, p: res202},
		{from: tracer.Client, p: &packets.Puback{PacketID: 1}},
		{from: tracer.Client, wait: time.Second, p: poll},
		{from: tracer.Server, p: &packets.Puback{PacketID: 3}},
		{from: tracer.Server, p: res401},
		{from: tracer.Client, p: &packets.Puback{PacketID: 2}},
	}); err != nil {
		return err
	}
	if err := f.f.Close(); err != nil {
		return err
	}
	c.clock.advance(500 * time.Millisecond)
	g, err := c.flow(50011, tracer.FlowOptions{Comment: "reconnect after 401: retrying is a device violation"})
	if err != nil {
		return err
	}
	if err := g.play([]step{
		{from: tracer.Client, p: conn},
		{from: tracer.Server, p: &packets.Connack{ReturnCode: packets.ConnackAccepted}},
		{from: tracer.Client, p: &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}},
		{from: tracer.Server, p: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}}},
		{from: tracer.Client, p: reg2},
		{from: tracer.Server, p: &packets.Puback{PacketID: 2}},
		{from: tracer.Server, p: res401b},
		{from: tracer.Client, p: &packets.Puback{PacketID: 1}},
	}); err != nil {
		return err
	}
	return g.f.Close()
}

// buildMidstream: the capture starts after CONNECT, SUBSCRIBE and the
// register request, at the first poll.
func buildMidstream(c *capture) error {
	f, err := c.flow(50020, tracer.FlowOptions{MidStream: true, Comment: "capture started mid-stream: no SYN, no CONNECT"})
	if err != nil {
		return err
	}
	steps, err := conformantSteps()
	if err != nil {
		return err
	}
	// steps[8] is the poll; the earlier ones happened before the capture.
	if err := f.play(steps[8:]); err != nil {
		return err
	}
	return f.f.Close()
}

// buildLoss: a register PUBLISH with a 5000-byte payload cut in four
// segments at MSS 1460, segment 1 lost and retransmitted; the 202 answer
// with segments reordered; a spurious retransmission of the poll; and
// SUBSCRIBE, PUBACK and PINGREQ sharing segments.
func buildLoss(c *capture) error {
	f, err := c.flow(50030, tracer.FlowOptions{Comment: "loss, retransmission, reordering"})
	if err != nil {
		return err
	}
	conn, err := connectPacket()
	if err != nil {
		return err
	}
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	reg := &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(dps.RegisterTopic("1")),
		Payload: append(append([]byte(`{"registrationId":"`+regID+`","payload":{"pad":"`), payload...), `"}}`...)}
	res202, err1 := publish(dps.ResponseTopic(202, "1", 1), 1, assigningBody())
	res202.Payload = append(res202.Payload, make([]byte, 3000)...) // padded to three segments
	for i := len(res202.Payload) - 3000; i < len(res202.Payload); i++ {
		res202.Payload[i] = ' '
	}
	poll, err2 := publish(dps.PollTopic("2", operationID), 3, struct{}{})
	res200, err3 := publish(dps.ResponseTopic(200, "2", -1), 2, assignedBody())
	if err := firstErr(err1, err2, err3); err != nil {
		return err
	}
	sub := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
	for _, s := range []struct {
		from tracer.Side
		wait time.Duration
		o    tracer.SegOpts
		ps   []packets.Packet
	}{
		{tracer.Client, 0, tracer.SegOpts{}, []packets.Packet{conn}},
		{tracer.Server, 0, tracer.SegOpts{}, []packets.Packet{&packets.Connack{}}},
		{tracer.Client, 0, tracer.SegOpts{}, []packets.Packet{sub, &packets.Pingreq{}}},
		{tracer.Server, 0, tracer.SegOpts{}, []packets.Packet{&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}}, &packets.Pingresp{}}},
		{tracer.Client, 0, tracer.SegOpts{Drop: []int{1}, Comment: "segment 2 of the register PUBLISH is lost and retransmitted"}, []packets.Packet{reg}},
		{tracer.Server, 0, tracer.SegOpts{Reorder: []int{0}, Comment: "the 202 answer arrives reordered"}, []packets.Packet{&packets.Puback{PacketID: 2}, res202}},
		{tracer.Client, 0, tracer.SegOpts{}, []packets.Packet{&packets.Puback{PacketID: 1}}},
		{tracer.Client, time.Second, tracer.SegOpts{Retransmit: []int{0}, Comment: "spurious retransmission of the poll"}, []packets.Packet{poll}},
		{tracer.Server, 0, tracer.SegOpts{}, []packets.Packet{&packets.Puback{PacketID: 3}, res200}},
		{tracer.Client, 0, tracer.SegOpts{}, []packets.Packet{&packets.Puback{PacketID: 2}, &packets.Disconnect{}}},
	} {
		c.clock.advance(s.wait)
		if err := f.send(s.from, s.o, s.ps...); err != nil {
			return err
		}
	}
	return f.f.Close()
}

// buildRemlenSplit: PUBLISH packets whose 2-byte remaining length is cut
// by a segment boundary after its first byte, then a PUBLISH sent one
// byte per segment. Every packet is otherwise conformant.
func buildRemlenSplit(c *capture) error {
	f, err := c.flow(50040, tracer.FlowOptions{Comment: "segments end inside the remaining-length field"})
	if err != nil {
		return err
	}
	steps, err := conformantSteps()
	if err != nil {
		return err
	}
	// steps[4] is the register PUBLISH; make it long enough for a 2-byte
	// remaining length and split it after the first length byte.
	reg := steps[4].p.(*packets.Publish)
	pad := `,"payload":{"note":"padding to make the remaining length two bytes long .........................................."}}`
	reg.Payload = append(append([]byte(nil), reg.Payload[:len(reg.Payload)-1]...), pad...)
	for i, st := range steps {
		c.clock.advance(st.wait)
		o := tracer.SegOpts{}
		switch {
		case i == 4:
			o = tracer.SegOpts{Split: []int{2}, Comment: "segment ends after the first remaining-length byte"}
		case i == 6: // the 202 answer, also long: split the same way
			o = tracer.SegOpts{Split: []int{2}}
		case i == 8: // the poll: one byte per segment for the first 6 bytes
			o = tracer.SegOpts{Split: []int{1, 1, 1, 1, 1, 1}}
		}
		if err := f.send(st.from, o, st.p); err != nil {
			return err
		}
	}
	return f.f.Close()
}
