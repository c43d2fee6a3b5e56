package cli

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// traceGenOptions say what capture generateTraceCapture writes.
type traceGenOptions struct {
	// Size is the target file size in bytes; the file ends a little over
	// it (the open flows are closed after the target is reached).
	Size int64
	// Flows is the number of TCP connections, all of them interleaved.
	Flows int
	// Seed makes the capture reproducible.
	Seed uint64
}

// traceGenStats is what the generator knows about the capture it wrote: the
// oracle of the decoding benchmark.
type traceGenStats struct {
	Bytes   int64 `json:"bytes"`
	Flows   int   `json:"flows"`
	Packets int   `json:"mqttPackets"` // MQTT control packets, both directions
	Sends   int   `json:"sends"`       // TCP payload writes (each one or more packets)
	Split   int   `json:"splitSends"`  // writes cut at an odd place by SegOpts.Split
	Multi   int   `json:"coalesced"`   // writes carrying more than one packet
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// genFlow is one synthetic device connection of the generated capture.
type genFlow struct {
	id       int
	flow     *tracer.Flow
	phase    int // what the client sends next, see step
	rid      int
	pid      uint16
	opID     string
	polls    int // polls left before "assigned"
	ackSrv   uint16
	finished bool
}

const (
	genConnect = iota
	genSubscribe
	genRegister
	genPoll
	genDone
)

// traceGen writes the capture.
type traceGen struct {
	rec   *tracer.Recorder
	rng   *rand.Rand
	stats traceGenStats
	buf   []byte
	pad   []byte
}

// generateTraceCapture writes a pcapng capture of DPS-like MQTT traffic to
// path: o.Flows device connections on port 1883, interleaved at random,
// each running CONNECT, SUBSCRIBE, then register and poll PUBLISHes with JSON
// bodies answered 202 then 200, again and again until the file reaches
// o.Size, then DISCONNECT and FIN. TCP writes are cut at odd places (packets
// split across segments) and several packets share one write (coalesced).
// The same options give the same file, byte for byte.
func generateTraceCapture(path string, o traceGenOptions) (traceGenStats, error) {
	f, err := os.Create(path)
	if err != nil {
		return traceGenStats{}, fmt.Errorf("creating the capture: %w", err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := &countWriter{w: bw}
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec, err := tracer.NewRecorder(cw, tracer.RecorderOptions{
		Comment: "dps-conform bench trace: generated DPS MQTT traffic, seed " + strconv.FormatUint(o.Seed, 10),
		Now: func() time.Time {
			clock = clock.Add(37 * time.Microsecond)
			return clock
		},
	})
	if err != nil {
		return traceGenStats{}, err
	}
	g := &traceGen{rec: rec, rng: rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))}
	g.pad = make([]byte, 4096)
	for i := range g.pad {
		g.pad[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[i%36]
	}
	flows := make([]*genFlow, o.Flows)
	for i := range flows {
		flows[i] = &genFlow{id: i}
	}
	// Interleave: each step moves one random flow by one exchange. The loop
	// is bounded: every step writes at least one frame of 54+ bytes.
	for cw.n < o.Size {
		fl := flows[g.rng.IntN(len(flows))]
		if err := g.step(fl, false); err != nil {
			return g.stats, err
		}
	}
	// Close every flow (opening the ones never picked, so the capture holds
	// exactly o.Flows connections).
	for _, fl := range flows {
		for !fl.finished {
			if err := g.step(fl, true); err != nil {
				return g.stats, err
			}
		}
	}
	if err := rec.Close(); err != nil {
		return g.stats, fmt.Errorf("writing the capture: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return g.stats, fmt.Errorf("writing the capture: %w", err)
	}
	if err := f.Close(); err != nil {
		return g.stats, fmt.Errorf("writing the capture: %w", err)
	}
	g.stats.Bytes = cw.n
	g.stats.Flows = o.Flows
	return g.stats, nil
}

// send writes the packets ps from side as one TCP write, sometimes cut at an
// odd place.
func (g *traceGen) send(fl *genFlow, from tracer.Side, ps ...packets.Packet) error {
	g.buf = g.buf[:0]
	for _, p := range ps {
		var err error
		if g.buf, err = packets.Encode(g.buf, p, packets.EncodeOptions{}); err != nil {
			return fmt.Errorf("encoding %T: %w", p, err)
		}
	}
	var so tracer.SegOpts
	if len(g.buf) > 1 && g.rng.IntN(3) == 0 {
		// Cut inside the first packet (often inside its fixed header),
		// then maybe once more.
		first := 1 + g.rng.IntN(min(len(g.buf)-1, 64))
		so.Split = []int{first}
		if rest := len(g.buf) - first; rest > 1 && g.rng.IntN(2) == 0 {
			so.Split = append(so.Split, 1+g.rng.IntN(min(rest-1, 1000)))
		}
		g.stats.Split++
	}
	if len(ps) > 1 {
		g.stats.Multi++
	}
	g.stats.Sends++
	g.stats.Packets += len(ps)
	if err := fl.flow.Send(from, g.buf, so); err != nil {
		return fmt.Errorf("flow %d: %w", fl.id, err)
	}
	return nil
}

func (g *traceGen) nextPID(fl *genFlow) uint16 {
	fl.pid++
	if fl.pid == 0 {
		fl.pid = 1
	}
	return fl.pid
}

// step runs one exchange of fl: a client write and the server's answer.
// closing makes the flow finish: it disconnects after its current exchange.
func (g *traceGen) step(fl *genFlow, closing bool) error {
	regID := fmt.Sprintf("bench-device-%05d", fl.id)
	if fl.flow == nil {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(1 + fl.id>>16), byte(fl.id >> 8), byte(fl.id)}), uint16(20000+fl.id%40000))
		server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, 1}), 1883)
		flow, err := g.rec.Flow(client, server, tracer.FlowOptions{})
		if err != nil {
			return fmt.Errorf("flow %d: %w", fl.id, err)
		}
		fl.flow = flow
	}
	switch fl.phase {
	case genConnect:
		conn := &packets.Connect{
			ProtocolName: []byte(packets.ProtocolName311), ProtocolLevel: 4, CleanSession: true, KeepAlive: 60,
			ClientID: []byte(regID),
			Username: []byte("0ne00BENCH0/registrations/" + regID + "/api-version=" + dps.DefaultAPIVersion + "&ClientVersion=dps-conform-bench"),
			Password: []byte("SharedAccessSignature sr=0ne00BENCH0%2fregistrations%2f" + regID + "&sig=" + string(g.pad[:43]) + "%3d&se=1767229200&skn=registration"),
		}
		sub := &packets.Subscribe{PacketID: g.nextPID(fl), Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
		if g.rng.IntN(2) == 0 {
			// CONNECT and SUBSCRIBE in one write, answered in one write.
			if err := g.send(fl, tracer.Client, conn, sub); err != nil {
				return err
			}
			if err := g.send(fl, tracer.Server, &packets.Connack{}, &packets.Suback{PacketID: sub.PacketID, ReturnCodes: []packets.SubackCode{1}}); err != nil {
				return err
			}
			fl.phase = genRegister
		} else {
			if err := g.send(fl, tracer.Client, conn); err != nil {
				return err
			}
			if err := g.send(fl, tracer.Server, &packets.Connack{}); err != nil {
				return err
			}
			fl.phase = genSubscribe
		}
	case genSubscribe:
		sub := &packets.Subscribe{PacketID: g.nextPID(fl), Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}
		if err := g.send(fl, tracer.Client, sub); err != nil {
			return err
		}
		if err := g.send(fl, tracer.Server, &packets.Suback{PacketID: sub.PacketID, ReturnCodes: []packets.SubackCode{1}}); err != nil {
			return err
		}
		fl.phase = genRegister
	case genRegister, genPoll:
		fl.rid++
		rid := strconv.Itoa(fl.rid)
		var req *packets.Publish
		if fl.phase == genRegister {
			// Some register bodies carry a large custom payload, so that
			// one packet spans several segments.
			n := 16 + g.rng.IntN(200)
			if g.rng.IntN(8) == 0 {
				n = 1500 + g.rng.IntN(2500)
			}
			body := `{"registrationId":"` + regID + `","payload":{"modelId":"dtmi:bench:device;1","pad":"` + string(g.pad[:n]) + `"}}`
			req = &packets.Publish{QoS: 1, PacketID: g.nextPID(fl), Topic: []byte(dps.RegisterTopic(rid)), Payload: []byte(body)}
			fl.opID = fmt.Sprintf("4.%016x.%08x-%04x-4%03x-8%03x-%012x", g.rng.Uint64(), g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<12), g.rng.IntN(1<<12), g.rng.Uint64()&(1<<48-1))
			fl.polls = 1 + g.rng.IntN(3)
		} else {
			req = &packets.Publish{QoS: 1, PacketID: g.nextPID(fl), Topic: []byte(dps.PollTopic(rid, fl.opID))}
		}
		first := []packets.Packet{req}
		if fl.ackSrv != 0 {
			// Acknowledge the server's last answer in the same write.
			first = []packets.Packet{&packets.Puback{PacketID: fl.ackSrv}, req}
			fl.ackSrv = 0
		}
		if err := g.send(fl, tracer.Client, first...); err != nil {
			return err
		}
		fl.polls--
		status, body := 202, `{"operationId":"`+fl.opID+`","status":"assigning"}`
		topic := dps.ResponseTopic(202, rid, 3)
		if fl.polls < 0 {
			status = 200
			topic = dps.ResponseTopic(200, rid, 0)
			body = `{"operationId":"` + fl.opID + `","status":"assigned","registrationState":{"registrationId":"` + regID +
				`","createdDateTimeUtc":"2026-01-01T00:00:00.0000000Z","assignedHub":"hub1.azure-devices.net","deviceId":"` + regID +
				`","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-01-01T00:00:01.0000000Z","etag":"IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI="}}`
		}
		ans := &packets.Publish{QoS: 1, PacketID: g.nextPID(fl), Topic: []byte(topic), Payload: []byte(body)}
		fl.ackSrv = ans.PacketID
		if g.rng.IntN(2) == 0 {
			if err := g.send(fl, tracer.Server, &packets.Puback{PacketID: req.PacketID}, ans); err != nil {
				return err
			}
		} else {
			if err := g.send(fl, tracer.Server, &packets.Puback{PacketID: req.PacketID}); err != nil {
				return err
			}
			if err := g.send(fl, tracer.Server, ans); err != nil {
				return err
			}
		}
		switch {
		case status == 202:
			fl.phase = genPoll
		case closing:
			fl.phase = genDone
		default:
			fl.phase = genRegister // re-provision, as a device does after a reset
		}
	case genDone:
		last := []packets.Packet{&packets.Disconnect{}}
		if fl.ackSrv != 0 {
			last = []packets.Packet{&packets.Puback{PacketID: fl.ackSrv}, &packets.Disconnect{}}
			fl.ackSrv = 0
		}
		if err := g.send(fl, tracer.Client, last...); err != nil {
			return err
		}
		if err := fl.flow.Close(); err != nil {
			return fmt.Errorf("flow %d: %w", fl.id, err)
		}
		fl.finished = true
	}
	if closing && fl.phase == genRegister {
		fl.phase = genDone
	}
	return nil
}
