package conformance_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
)

// TestDeviceRulesBothWays judges single device rules on hand-made
// captures at the edges the other device tests leave open: the limit
// itself next to one past it, the field a rule must look at, the answer
// that must reset a count. Each row fails on a mutant of rules_device.go
// that the other tests let through.
func TestDeviceRulesBothWays(t *testing.T) {
	register, poll := dps.RegisterTopic, dps.PollTopic
	regBody := `{"registrationId":"sym-device-1"}`
	keepAlive := func(s *synth, ka uint16) {
		cp := documentedConnect("")
		cp.KeepAlive = ka
		s.conn(cp).close()
	}
	cleanSession0 := func(s *synth) {
		cp := documentedConnect("")
		cp.CleanSession = false
		s.conn(cp).close()
	}
	dps2019 := conformance.RuleEnv{Profile: conformance.ProfileDPS2019}
	dps2023 := conformance.RuleEnv{Profile: conformance.ProfileDPS2023}
	for _, tc := range []deviceRuleCase{
		{name: "CleanSession 0 under dps-2019", rule: "DPS-DEV-008", env: dps2019, applied: 1, findings: 1, build: cleanSession0},
		{name: "CleanSession 0 under dps-2023", rule: "DPS-DEV-008", env: dps2023, applied: 1, build: cleanSession0},
		{name: "keep-alive 1740", rule: "DPS-DEV-009", applied: 1, build: func(s *synth) { keepAlive(s, 1740) }},
		{name: "keep-alive 1741", rule: "DPS-DEV-009", applied: 1, findings: 1, build: func(s *synth) { keepAlive(s, 1741) }},
		{name: "poll before its operationId was given", rule: "DPS-DEV-013", applied: 2, findings: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(poll("1", "op-1"), "")
			f.answer(404, "1", -1, `{}`)
			f.request(register("2"), regBody)
			f.answer(202, "2", 0, op1)
			f.request(poll("3", "op-1"), "")
			f.close()
		}},
		// DPS-DEV-014 is about polls: a register early after a 202 is not
		// its to judge.
		{name: "register 0.4 s into a 202's retry-after", rule: "DPS-DEV-014", applied: 0, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 3, op1)
			s.advance(400 * time.Millisecond)
			f.request(register("2"), regBody)
			f.close()
		}},
		{name: "poll 2.7 s into a retry-after of 3 s", rule: "DPS-DEV-014", applied: 1, findings: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 3, op1)
			s.advance(2700 * time.Millisecond) // 0.05 s past the tolerance
			f.request(poll("2", "op-1"), "")
			f.close()
		}},
		{name: "another device connects 2 s after a 401", rule: "DPS-DEV-017", applied: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(401, "1", -1, `{}`)
			f.close()
			s.advance(2 * time.Second)
			cp := documentedConnect("")
			cp.ClientID = []byte("other-device")
			cp.Username = []byte(strings.Replace(string(cp.Username), "/sym-device-1/", "/other-device/", 1))
			s.conn(cp).close()
		}},
		{name: "reconnect 9 s after a 401", rule: "DPS-DEV-017", applied: 1, findings: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(401, "1", -1, `{}`)
			f.close()
			s.advance(9 * time.Second)
			s.conn(nil).close()
		}},
		// A 5xx with a retry-after ends a run of back-offs: the next run
		// starts afresh.
		{name: "back-off restarts after a retry-after", rule: "DPS-DEV-018", applied: 3, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(500, "1", -1, `{}`)
			s.advance(2 * time.Second)
			f.request(register("2"), regBody)
			f.answer(503, "2", 1, `{}`)
			s.advance(time.Second)
			f.request(register("3"), regBody)
			f.answer(500, "3", -1, `{}`)
			s.advance(time.Second)
			f.request(register("4"), regBody)
			f.close()
		}},
		{name: "no PUBACK, the server closes 2 s later", rule: "DPS-DEV-019", applied: 1, findings: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.send(tracer.Server, &packets.Publish{QoS: 1, PacketID: 7, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(op1)})
			s.advance(2 * time.Second)
			if err := f.f.Fin(tracer.Server); err != nil {
				t.Fatal(err)
			}
			if err := f.f.Fin(tracer.Client); err != nil {
				t.Fatal(err)
			}
		}},
		// The poll's operationId names the operation a 200 ends, whatever
		// its body says.
		{name: "poll after a 200 whose body names no operation", rule: "DPS-DEV-020", applied: 1, findings: 1, build: func(s *synth) {
			f := s.conn(nil)
			f.request(register("1"), regBody)
			f.answer(202, "1", 0, op1)
			f.request(poll("2", "op-1"), "")
			f.answer(200, "2", -1, `{"status":"assigned"}`)
			f.request(poll("3", "op-1"), "")
			f.close()
		}},
	} {
		t.Run(tc.name, tc.run)
	}
}

// TestDeviceSNIBothWays: DPS-DEV-002 compares the SNI with the host name
// the device was given, without case (DNS names).
func TestDeviceSNIBothWays(t *testing.T) {
	for _, tc := range []struct {
		sni      string
		findings int
	}{{"dps.example", 0}, {"DPS.Example", 0}, {"other.example", 1}, {"", 1}} {
		c := tracer.Conversation{ID: 1, Transport: "mqtts", TLS: &tlstrace.Facts{ClientHello: true, SNI: tc.sni}}
		fs, applied := conformance.CheckCapture(&tracer.Capture{Conversations: []*tracer.Conversation{&c}},
			[]*conformance.Rule{deviceRule(t, "DPS-DEV-002")}, conformance.RuleEnv{ServerName: "dps.example"})
		if len(fs) != tc.findings || applied["DPS-DEV-002"] != 1 {
			t.Errorf("SNI %q: findings %v, applied %d; want %d findings, applied 1", tc.sni, fs, applied["DPS-DEV-002"], tc.findings)
		}
	}
}

// TestDeviceReconnectEdges: DPS-DEV-022 judges reconnects after a CONNECT
// that got no CONNACK or 0x03 only, wants at least 1 s (less the
// tolerance), and an answered attempt ends a run of back-offs.
func TestDeviceReconnectEdges(t *testing.T) {
	type step struct {
		reply packets.Packet // nil: no CONNACK
		wait  time.Duration  // after this attempt ends, before the next
	}
	ack := func(code packets.ConnackCode) packets.Packet { return &packets.Connack{ReturnCode: code} }
	for _, tc := range []struct {
		name     string
		steps    []step
		applied  int
		findings int
	}{
		{"refused 0x05, reconnect 0.1 s later", []step{{ack(packets.ConnackRefusedNotAuthorized), 100 * time.Millisecond}, {ack(0), 0}}, 0, 0},
		{"reconnect 0.6 s after an unanswered attempt", []step{{nil, 600 * time.Millisecond}, {ack(0), 0}}, 1, 1},
		{"an answered attempt between two runs", []step{{nil, 2 * time.Second}, {ack(0), time.Second}, {nil, 1500 * time.Millisecond}, {ack(0), 0}}, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(t)
			for _, st := range tc.steps {
				s.flows++
				client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(50000+s.flows))
				f, err := s.rec.Flow(client, netip.MustParseAddrPort("192.0.2.2:1883"), tracer.FlowOptions{})
				if err != nil {
					t.Fatal(err)
				}
				sf := &synthFlow{s: s, f: f}
				sf.send(tracer.Client, documentedConnect(""))
				s.advance(50 * time.Millisecond)
				if st.reply != nil {
					sf.send(tracer.Server, st.reply)
				}
				s.advance(3 * time.Second)
				if err := f.Fin(tracer.Client); err != nil {
					t.Fatal(err)
				}
				s.advance(st.wait)
			}
			n, fs := deviceRule(t, "DPS-DEV-022").CheckCapture(s.capture(), conformance.RuleEnv{})
			if n != tc.applied || len(fs) != tc.findings {
				t.Errorf("applied %d, findings %v; want %d applied, %d findings", n, fs, tc.applied, tc.findings)
			}
		})
	}
}
