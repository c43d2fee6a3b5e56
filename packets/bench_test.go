package packets_test

// Benchmarks of our codec against paho.mqtt.golang (the client most Go DPS
// devices use) and mochi-mqtt (a zero-copy broker codec), on the packets of
// a DPS registration. Run:
//
//	go test ./packets/ -run '^$' -bench . -benchmem -count 3 -benchtime 200ms
//
// Rows: BenchmarkDecode/<input>/<impl>, BenchmarkEncode/<input>/<impl>
// (impl dpsconform, paho, mochi; decode also dpsconform-owned, the like of
// paho's ReadPacket, and mochi+validate) and BenchmarkReader/<input>/dpsconform.
// Every row reports B/op, allocs/op and MB/s; the stream rows also report
// ns/pkt. No test here asserts time; TestZeroAllocDecode asserts
// allocation counts only.

import (
	"bytes"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang/packets"
	mochi "github.com/mochi-mqtt/server/v2/packets"

	"github.com/dps-conform/dps-conform/packets"
)

// The DPS registration of device my-device-0001 in ID scope 0ne00055500.
const (
	benchClientID = "my-device-0001"
	benchUsername = "0ne00055500/registrations/my-device-0001/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.2"
	benchPassword = "SharedAccessSignature sr=0ne00055500%2fregistrations%2fmy-device-0001&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration"
	benchFilter   = "$dps/registrations/res/#"
	benchRegister = "$dps/registrations/PUT/iotdps-register/?$rid=1"
	benchBody40   = `{"registrationId":"my-device-0001-abcd"}` // 40 bytes
	benchOpID     = "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"
	benchBody202  = `{"operationId":"` + benchOpID + `","status":"assigning"}`
	benchPoll     = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=" + benchOpID
	benchBody200  = `{"operationId":"` + benchOpID + `","status":"assigned","registrationState":{` +
		`"x509":{},"registrationId":"my-device-0001","createdDateTimeUtc":"2020-01-14T03:11:13.0276997Z",` +
		`"assignedHub":"contoso-hub-westeurope.azure-devices.net","deviceId":"my-device-0001","status":"assigned",` +
		`"substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2020-01-14T03:11:13.2096201Z",` +
		`"etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=","payload":{"tenant":"contoso","site":"ams-01"}}}`
)

// benchInput is one benchmark input: a packet or a stream of packets, with
// its encoding and the same packets in paho's and mochi's types.
type benchInput struct {
	name  string
	pkts  []packets.Packet
	raw   []byte
	paho  []paho.ControlPacket
	mochi []mochi.Packet
}

var benchInputs = sync.OnceValue(func() []benchInput {
	connect := &packets.Connect{ProtocolName: []byte("MQTT"), ProtocolLevel: 4, CleanSession: true, KeepAlive: 180,
		ClientID: []byte(benchClientID), Username: []byte(benchUsername), Password: []byte(benchPassword)}
	subscribe := &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(benchFilter), QoS: 1}}}
	register := &packets.Publish{QoS: 1, PacketID: 2, Topic: []byte(benchRegister), Payload: []byte(benchBody40)}
	big := &packets.Publish{QoS: 1, PacketID: 3, Topic: []byte(benchRegister), Payload: bytes.Repeat([]byte("0123456789abcdef"), 256)}
	stream := []packets.Packet{
		connect,
		&packets.Connack{ReturnCode: packets.ConnackAccepted},
		subscribe,
		&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}},
		register,
		&packets.Puback{PacketID: 2},
		&packets.Publish{QoS: 1, PacketID: 1, Topic: []byte("$dps/registrations/res/202/?$rid=1&retry-after=3"), Payload: []byte(benchBody202)},
		&packets.Publish{QoS: 1, PacketID: 3, Topic: []byte(benchPoll)},
		&packets.Publish{QoS: 1, PacketID: 2, Topic: []byte("$dps/registrations/res/200/?$rid=2"), Payload: []byte(benchBody200)},
		&packets.Pingreq{},
		&packets.Pingresp{},
		&packets.Disconnect{},
	}
	mk := func(name string, pkts ...packets.Packet) benchInput {
		in := benchInput{name: name, pkts: pkts}
		for _, p := range pkts {
			var err error
			if in.raw, err = p.Append(in.raw); err != nil {
				panic(fmt.Sprintf("bench input %s: %v", name, err))
			}
			in.paho = append(in.paho, toPaho(p))
			in.mochi = append(in.mochi, toMochi(p))
		}
		return in
	}
	return []benchInput{
		mk("connect", connect),
		mk("subscribe", subscribe),
		mk("publish-40B", register),
		mk("publish-4KiB", big),
		mk("dps-stream", stream...),
	}
})

// toMochi maps our packet to mochi's all-in-one Packet, as an MQTT 3.1.1
// (ProtocolVersion 4) packet.
func toMochi(p packets.Packet) mochi.Packet {
	pk := mochi.Packet{ProtocolVersion: 4, FixedHeader: mochi.FixedHeader{Type: byte(p.Type())}}
	switch p := p.(type) {
	case *packets.Connect:
		pk.Connect = mochi.ConnectParams{
			ProtocolName: p.ProtocolName, Clean: p.CleanSession, Keepalive: p.KeepAlive,
			ClientIdentifier: string(p.ClientID),
			WillFlag:         p.WillTopic != nil, WillTopic: string(p.WillTopic), WillPayload: p.WillMessage,
			WillQos: p.WillQoS, WillRetain: p.WillRetain,
			UsernameFlag: p.Username != nil, Username: p.Username,
			PasswordFlag: p.Password != nil, Password: p.Password,
		}
	case *packets.Connack:
		pk.SessionPresent, pk.ReasonCode = p.SessionPresent, byte(p.ReturnCode)
	case *packets.Publish:
		pk.FixedHeader.Qos, pk.FixedHeader.Dup, pk.FixedHeader.Retain = p.QoS, p.Dup, p.Retain
		pk.TopicName, pk.PacketID, pk.Payload = string(p.Topic), p.PacketID, p.Payload
	case *packets.Puback:
		pk.PacketID = p.PacketID
	case *packets.Pubrec:
		pk.PacketID = p.PacketID
	case *packets.Pubrel:
		pk.FixedHeader.Qos, pk.PacketID = 1, p.PacketID
	case *packets.Pubcomp:
		pk.PacketID = p.PacketID
	case *packets.Subscribe:
		pk.FixedHeader.Qos, pk.PacketID = 1, p.PacketID
		for _, s := range p.Subscriptions {
			pk.Filters = append(pk.Filters, mochi.Subscription{Filter: string(s.Filter), Qos: s.QoS})
		}
	case *packets.Suback:
		pk.PacketID = p.PacketID
		for _, rc := range p.ReturnCodes {
			pk.ReasonCodes = append(pk.ReasonCodes, byte(rc))
		}
	case *packets.Unsubscribe:
		pk.FixedHeader.Qos, pk.PacketID = 1, p.PacketID
		for _, f := range p.Filters {
			pk.Filters = append(pk.Filters, mochi.Subscription{Filter: string(f)})
		}
	case *packets.Unsuback:
		pk.PacketID = p.PacketID
	}
	return pk
}

// mochiEncode writes pk with mochi's per-type encoder.
func mochiEncode(pk *mochi.Packet, buf *bytes.Buffer) error {
	switch pk.FixedHeader.Type {
	case mochi.Connect:
		return pk.ConnectEncode(buf)
	case mochi.Connack:
		return pk.ConnackEncode(buf)
	case mochi.Publish:
		return pk.PublishEncode(buf)
	case mochi.Puback:
		return pk.PubackEncode(buf)
	case mochi.Pubrec:
		return pk.PubrecEncode(buf)
	case mochi.Pubrel:
		return pk.PubrelEncode(buf)
	case mochi.Pubcomp:
		return pk.PubcompEncode(buf)
	case mochi.Subscribe:
		return pk.SubscribeEncode(buf)
	case mochi.Suback:
		return pk.SubackEncode(buf)
	case mochi.Unsubscribe:
		return pk.UnsubscribeEncode(buf)
	case mochi.Unsuback:
		return pk.UnsubackEncode(buf)
	case mochi.Pingreq:
		return pk.PingreqEncode(buf)
	case mochi.Pingresp:
		return pk.PingrespEncode(buf)
	case mochi.Disconnect:
		return pk.DisconnectEncode(buf)
	}
	return fmt.Errorf("mochiEncode: type %d", pk.FixedHeader.Type)
}

// mochiDecoder decodes from a buffer with mochi's zero-copy primitives, the
// way mochi's server reads a packet (Client.ReadFixedHeader, ReadPacket) but
// without its copy of the body: FixedHeader.Decode of the first byte,
// DecodeLength of the remaining length, then the per-type decoder on the
// body, into one reused Packet.
type mochiDecoder struct {
	pk mochi.Packet
	br bytes.Reader
	// validate also runs mochi's per-type Validate after decoding: the
	// packet-id, wildcard and filter rules that our strict decoder applies
	// while decoding, so that row compares equal work.
	validate bool
}

func (m *mochiDecoder) decode(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, io.ErrUnexpectedEOF
	}
	m.pk.FixedHeader = mochi.FixedHeader{} // mochi's server starts each packet with a new header
	m.pk.ProtocolVersion = 4
	if err := m.pk.FixedHeader.Decode(b[0]); err != nil {
		return 0, err
	}
	m.br.Reset(b[1:])
	rem, bu, err := mochi.DecodeLength(&m.br)
	if err != nil {
		return 0, err
	}
	end := 1 + bu + rem
	if end > len(b) {
		return 0, io.ErrUnexpectedEOF
	}
	m.pk.FixedHeader.Remaining = rem
	body := b[1+bu : end]
	pk := &m.pk
	switch pk.FixedHeader.Type {
	case mochi.Connect:
		err = pk.ConnectDecode(body)
	case mochi.Connack:
		err = pk.ConnackDecode(body)
	case mochi.Publish:
		err = pk.PublishDecode(body)
	case mochi.Puback:
		err = pk.PubackDecode(body)
	case mochi.Pubrec:
		err = pk.PubrecDecode(body)
	case mochi.Pubrel:
		err = pk.PubrelDecode(body)
	case mochi.Pubcomp:
		err = pk.PubcompDecode(body)
	case mochi.Subscribe:
		err = pk.SubscribeDecode(body)
	case mochi.Suback:
		err = pk.SubackDecode(body)
	case mochi.Unsubscribe:
		err = pk.UnsubscribeDecode(body)
	case mochi.Unsuback:
		err = pk.UnsubackDecode(body)
	case mochi.Pingreq:
		err = pk.PingreqDecode(body)
	case mochi.Pingresp:
		err = pk.PingrespDecode(body)
	case mochi.Disconnect:
		err = pk.DisconnectDecode(body)
	default:
		err = fmt.Errorf("mochi: packet type %d", pk.FixedHeader.Type)
	}
	if err != nil || !m.validate {
		return end, err
	}
	code := mochi.CodeSuccess
	switch pk.FixedHeader.Type {
	case mochi.Connect:
		code = pk.ConnectValidate()
	case mochi.Publish:
		code = pk.PublishValidate(0)
	case mochi.Subscribe:
		code = pk.SubscribeValidate()
	case mochi.Unsubscribe:
		code = pk.UnsubscribeValidate()
	}
	if code.Code >= 0x80 { // reason codes from 0x80 are failures
		return end, fmt.Errorf("mochi validate: %s", code.Reason)
	}
	return end, nil
}

// loopReader replays b endlessly, without allocating: an unbounded
// in-memory connection for the Reader benchmark.
type loopReader struct {
	b   []byte
	off int
}

func (r *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off += c
		if r.off == len(r.b) {
			r.off = 0
		}
	}
	return n, nil
}

// TestBenchInputs checks that every implementation decodes and encodes the
// benchmark inputs correctly, so the benchmarks compare equal work.
func TestBenchInputs(t *testing.T) {
	for _, in := range benchInputs() {
		t.Run(in.name, func(t *testing.T) {
			var d packets.Decoder
			off := 0
			for i, want := range in.pkts {
				p, n, err := d.Decode(in.raw[off:])
				if err != nil {
					t.Fatalf("ours: packet %d: %v", i, err)
				}
				if diff := diffPackets(want, p); diff != "" {
					t.Fatalf("ours: packet %d: %s", i, diff)
				}
				off += n
			}
			r := bytes.NewReader(in.raw)
			for i, want := range in.pkts {
				cp, err := paho.ReadPacket(r)
				if err != nil {
					t.Fatalf("paho: packet %d: %v", i, err)
				}
				if diff := diffPaho(want, in.raw[len(in.raw)-r.Len()-want.Len():], cp); diff != "" {
					t.Fatalf("paho: packet %d: %s", i, diff)
				}
			}
			var m mochiDecoder
			off = 0
			for i, want := range in.pkts {
				n, err := m.decode(in.raw[off:])
				if err != nil {
					t.Fatalf("mochi: packet %d: %v", i, err)
				}
				if m.pk.FixedHeader.Type != byte(want.Type()) || n != want.Len() {
					t.Fatalf("mochi: packet %d: type %d, %d bytes; want %v, %d bytes", i, m.pk.FixedHeader.Type, n, want.Type(), want.Len())
				}
				if pub, ok := want.(*packets.Publish); ok &&
					(m.pk.TopicName != string(pub.Topic) || !bytes.Equal(m.pk.Payload, pub.Payload) || m.pk.PacketID != pub.PacketID) {
					t.Fatalf("mochi: packet %d: PUBLISH %q id %d, want %q id %d", i, m.pk.TopicName, m.pk.PacketID, pub.Topic, pub.PacketID)
				}
				off += n
			}
			var pb, mb bytes.Buffer
			for i := range in.pkts {
				if err := in.paho[i].Write(&pb); err != nil {
					t.Fatalf("paho: Write %d: %v", i, err)
				}
				if err := mochiEncode(&in.mochi[i], &mb); err != nil {
					t.Fatalf("mochi: encode %d: %v", i, err)
				}
			}
			if !bytes.Equal(pb.Bytes(), in.raw) {
				t.Errorf("paho encodes %s, want %s", shortHex(pb.Bytes()), shortHex(in.raw))
			}
			if !bytes.Equal(mb.Bytes(), in.raw) {
				t.Errorf("mochi encodes %s, want %s", shortHex(mb.Bytes()), shortHex(in.raw))
			}
		})
	}
	if len(benchBody40) != 40 {
		t.Errorf("register payload is %d bytes, want 40", len(benchBody40))
	}
	if n := len(benchBody200); n < 450 || n > 550 {
		t.Errorf("200 response body is %d bytes, want about 500", n)
	}
}

// reportPerPacket adds ns/pkt to rows whose op is a stream of n packets.
func reportPerPacket(b *testing.B, n int) {
	if n > 1 && b.N > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/pkt")
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			b.Run("dpsconform", func(b *testing.B) {
				var d packets.Decoder // strict, the default
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					for off := 0; off < len(in.raw); {
						_, n, err := d.Decode(in.raw[off:])
						if err != nil {
							b.Fatal(err)
						}
						off += n
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
			// Like for like with paho: from an io.Reader, each packet owning
			// its memory (fresh structs, payload and strings copied), where
			// the dpsconform row decodes a []byte in place into a reused
			// Decoder, valid until the next Decode.
			b.Run("dpsconform-owned", func(b *testing.B) {
				var r bytes.Reader
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					r.Reset(in.raw)
					for r.Len() > 0 {
						if _, err := packets.ReadPacket(&r, packets.DecodeOptions{}); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
			b.Run("paho", func(b *testing.B) {
				var r bytes.Reader // ReadPacket from an io.Reader is paho's only decoder
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					r.Reset(in.raw)
					for r.Len() > 0 {
						if _, err := paho.ReadPacket(&r); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
			for _, validate := range []bool{false, true} {
				name := "mochi" // its zero-copy decode primitives only: the yardstick
				if validate {
					name = "mochi+validate" // plus its validation: the work our strict decode does
				}
				b.Run(name, func(b *testing.B) {
					m := &mochiDecoder{validate: validate}
					b.ReportAllocs()
					b.SetBytes(int64(len(in.raw)))
					for b.Loop() {
						for off := 0; off < len(in.raw); {
							n, err := m.decode(in.raw[off:])
							if err != nil {
								b.Fatal(err)
							}
							off += n
						}
					}
					reportPerPacket(b, len(in.pkts))
				})
			}
		})
	}
}

// BenchmarkReader measures the io.Reader path: packets.Reader (bufio plus a
// reused Decoder) over a connection that replays the input endlessly. One
// op reads every packet of the input once.
func BenchmarkReader(b *testing.B) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			b.Run("dpsconform", func(b *testing.B) {
				r := packets.NewReader(&loopReader{b: in.raw}, packets.DecodeOptions{})
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					for range in.pkts {
						if _, err := r.ReadPacket(); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, in := range benchInputs() {
		b.Run(in.name, func(b *testing.B) {
			b.Run("dpsconform", func(b *testing.B) {
				buf := make([]byte, 0, len(in.raw))
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					buf = buf[:0]
					for _, p := range in.pkts {
						var err error
						if buf, err = p.Append(buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
			b.Run("paho", func(b *testing.B) {
				var buf bytes.Buffer
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					buf.Reset()
					for _, cp := range in.paho {
						if err := cp.Write(&buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
			b.Run("mochi", func(b *testing.B) {
				var buf bytes.Buffer
				pks := append([]mochi.Packet(nil), in.mochi...)
				b.ReportAllocs()
				b.SetBytes(int64(len(in.raw)))
				for b.Loop() {
					buf.Reset()
					for i := range pks {
						if err := mochiEncode(&pks[i], &buf); err != nil {
							b.Fatal(err)
						}
					}
				}
				reportPerPacket(b, len(in.pkts))
			})
		})
	}
}

// raceEnabled reports whether the test binary was built with -race, under
// which allocation counts are not meaningful (the standard library's own
// allocation tests skip there too).
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestZeroAllocDecode asserts allocation counts (never time): a reused
// Decoder decodes every packet of the benchmark inputs and of all 14 types
// without allocating, Append into a buffer of Len bytes does not allocate,
// and Reader.ReadPacket allocates at most 0.1 times per packet amortised.
func TestZeroAllocDecode(t *testing.T) {
	if raceEnabled() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var all []packets.Packet
	for _, in := range benchInputs() {
		all = append(all, in.pkts...)
	}
	g := newRandGen(*randSeed)
	for _, typ := range allTypes {
		all = append(all, g.PacketOf(typ))
	}
	// Many subscriptions, filters and return codes: the Decoder's reused
	// slices must cover them after the first packet.
	all = append(all,
		&packets.Subscribe{PacketID: 9, Subscriptions: benchSubs(40)},
		&packets.Unsubscribe{PacketID: 9, Filters: benchFilters(40)},
		&packets.Suback{PacketID: 9, ReturnCodes: make([]packets.SubackCode, 300)})

	// One report per packet type and path (the first offending packet).
	t.Run("Decoder", func(t *testing.T) {
		var d packets.Decoder
		reported := map[packets.Type]bool{}
		for _, p := range all {
			raw, err := p.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			var derr error
			allocs := testing.AllocsPerRun(100, func() {
				_, _, derr = d.Decode(raw)
			})
			if derr != nil {
				t.Fatalf("%v: %v", p.Type(), derr)
			}
			if allocs != 0 && !reported[p.Type()] {
				reported[p.Type()] = true
				t.Errorf("Decoder.Decode(%v, %d bytes): %v allocs per packet, want 0", p.Type(), len(raw), allocs)
			}
		}
	})
	t.Run("Append", func(t *testing.T) {
		reported := map[packets.Type]bool{}
		for _, p := range all {
			buf := make([]byte, 0, p.Len())
			var aerr error
			allocs := testing.AllocsPerRun(100, func() {
				_, aerr = p.Append(buf[:0])
			})
			if aerr != nil {
				t.Fatalf("%v: %v", p.Type(), aerr)
			}
			if allocs != 0 && !reported[p.Type()] {
				reported[p.Type()] = true
				t.Errorf("%v.Append into a buffer of Len bytes: %v allocs, want 0", p.Type(), allocs)
			}
		}
	})
	t.Run("Reader", func(t *testing.T) {
		for _, in := range benchInputs() {
			r := packets.NewReader(&loopReader{b: in.raw}, packets.DecodeOptions{})
			const rounds = 50
			var rerr error
			allocs := testing.AllocsPerRun(rounds, func() {
				for range in.pkts {
					if _, err := r.ReadPacket(); err != nil {
						rerr = err
					}
				}
			})
			if rerr != nil {
				t.Fatalf("%s: %v", in.name, rerr)
			}
			if perPacket := allocs / float64(len(in.pkts)); perPacket > 0.1 {
				t.Errorf("%s: Reader.ReadPacket: %.3f allocs per packet, want <= 0.1", in.name, perPacket)
			}
		}
	})
}

func benchSubs(n int) []packets.Subscription {
	s := make([]packets.Subscription, n)
	for i := range s {
		s[i] = packets.Subscription{Filter: []byte(fmt.Sprintf("a/%d/+", i)), QoS: byte(i % 3)}
	}
	return s
}

func benchFilters(n int) [][]byte {
	f := make([][]byte, n)
	for i := range f {
		f[i] = []byte(strings.Repeat("f", i+1) + "/#")
	}
	return f
}
