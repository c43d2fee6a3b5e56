package conformance_test

import (
	"cmp"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/conformance"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// The official Azure IoT device SDKs, as their sources read, judged by the
// device rules on synthetic captures of their traffic. Only the Node.js
// SDK runs live (interop/node_device_test.go); the others are pinned here
// from a reading of their sources (snapshots: azure-iot-sdk-c c86b2d6,
// azure-iot-sdk-python e75d1c2, azure-iot-sdk-java 8abba69,
// azure-iot-sdk-csharp 6097889, azure-sdk-for-c 19d99b7, azure-iot-sdk-node
// e940876; file:line in the comments). A row whose want is not empty is a
// behaviour of that SDK that the fact sheet makes a fault (docs/device-role.md
// "Official SDKs read against the device rules").

// sdkToken is a SAS token laid out as an SDK writes it: sr as given (the
// signature covers that text), sig percent-encoded with upper- or
// lower-case hex, and the fields in the given order ("skn" with skn, which
// may be empty; left out when order does not name it).
func sdkToken(t *testing.T, sr string, lowerHex bool, skn string, order ...string) string {
	t.Helper()
	se := "1735794245" // 2025-01-02 05:04:05 UTC: an hour after the synthetic clock
	sig, err := dps.SignString(emulatortest.SymDeviceKey, sr+"\n"+se)
	if err != nil {
		t.Fatal(err)
	}
	sig = url.QueryEscape(sig)
	if lowerHex {
		b := []byte(sig)
		for i := range b {
			if b[i] == '%' && i+2 < len(b) {
				b[i+1], b[i+2] = lowerHexDigit(b[i+1]), lowerHexDigit(b[i+2])
			}
		}
		sig = string(b)
	}
	val := map[string]string{"sr": sr, "sig": sig, "se": se, "skn": skn}
	fields := make([]string, len(order))
	for i, k := range order {
		fields[i] = k + "=" + val[k]
	}
	return dps.SASPrefix + strings.Join(fields, "&")
}

func lowerHexDigit(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + ('a' - 'A')
	}
	return c
}

const (
	sdkSRLower = emulatortest.IDScope + "%2fregistrations%2f" + emulatortest.SymDeviceID
	sdkSRUpper = emulatortest.IDScope + "%2Fregistrations%2F" + emulatortest.SymDeviceID
	sdkSRRaw   = emulatortest.IDScope + "/registrations/" + emulatortest.SymDeviceID
)

// sdkConnect is the CONNECT of an SDK: its username suffix after
// "{scope}/registrations/{id}/", CleanSession, keep-alive and password.
func sdkConnect(suffix string, clean bool, keepAlive uint16, password string) *packets.Connect {
	cp := &packets.Connect{ProtocolName: []byte(packets.ProtocolName311), ProtocolLevel: 4, CleanSession: clean, KeepAlive: keepAlive,
		ClientID: []byte(emulatortest.SymDeviceID), Username: []byte(emulatortest.IDScope + "/registrations/" + emulatortest.SymDeviceID + "/" + suffix)}
	if password != "" {
		cp.Password = []byte(password)
	}
	return cp
}

// sdkFlow is how an SDK goes through the documented flow: its CONNECT, a
// SUBSCRIBE to the response filter at QoS 1 (every SDK here), the register
// request at regQoS and the polls at pollQoS with the given $rid values
// and bodies, each poll wait after the answer before it, and DISCONNECT
// (after an UNSUBSCRIBE for Node). The service answers each request
// answerDelay after it (1 ms when zero) at QoS 1, which the device
// acknowledges: a 202 with retryAfter to the register and to all polls but
// the last, which gets the 200.
type sdkFlow struct {
	connect         *packets.Connect
	regQoS, pollQoS byte
	rids            []string // register, then each poll
	register, poll  string
	waits           []time.Duration // before each poll, after the answer it follows
	retryAfter      int
	answerDelay     time.Duration
	unsubscribe     bool
}

func (fl sdkFlow) run(s *synth) {
	f := s.bare(fl.connect, &packets.Connack{})
	f.subscribe()
	delay := cmp.Or(fl.answerDelay, time.Millisecond)
	for i, rid := range fl.rids {
		qos, topic, body := fl.regQoS, dps.RegisterTopic(rid), fl.register
		if i > 0 {
			s.advance(fl.waits[i-1])
			qos, topic, body = fl.pollQoS, dps.PollTopic(rid, "op-1"), fl.poll
		}
		f.publish(qos, uint16(10+i), topic, body)
		s.advance(delay)
		status, ra, ans := 202, fl.retryAfter, op1
		if i > 0 && i == len(fl.rids)-1 {
			status, ra, ans = 200, -1, op1Assigned
		}
		f.deliver(uint16(i+1), dps.ResponseTopic(status, rid, ra), ans)
	}
	if fl.unsubscribe {
		f.send(tracer.Client, &packets.Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte(dps.SubscribeFilter)}})
		f.send(tracer.Server, &packets.Unsuback{PacketID: 2})
	}
	f.close()
}

// publish sends a device PUBLISH at qos (the server's PUBACK follows a
// QoS 1 one).
func (f *synthFlow) publish(qos byte, pid uint16, topic, body string) {
	p := &packets.Publish{QoS: qos, Topic: []byte(topic), Payload: []byte(body)}
	if qos > 0 {
		p.PacketID = pid
	}
	f.send(tracer.Client, p)
	if qos > 0 {
		f.send(tracer.Server, &packets.Puback{PacketID: pid})
	}
}

// deliver sends a service answer at QoS 1 and the device's PUBACK.
func (f *synthFlow) deliver(pid uint16, topic, body string) {
	f.send(tracer.Server, &packets.Publish{QoS: 1, PacketID: pid, Topic: []byte(topic), Payload: []byte(body)})
	f.send(tracer.Client, &packets.Puback{PacketID: pid})
}

const sdkRegBody = `{"registrationId":"sym-device-1"}`

// The normal flow of each SDK, with the 202 answers' retry-after of the
// device role's scenarios (1 s).
func sdkC(t *testing.T) sdkFlow {
	return sdkFlow{
		// prov_transport_mqtt_common.c:29 "%s/registrations/%s/api-version=%s&ClientVersion=%s"
		// with PROV_API_VERSION "2021-06-01" and PROV_DEVICE_CLIENT_VERSION
		// (prov_client_const.h:7,18); :643-646 ClientId = registration id,
		// CleanSession 1, keep-alive left 0 (options zeroed, :616); the SAS
		// token of prov_auth_client.c:573 "sr=%s&sig=%s&se=%s&skn=%s" with
		// sr URL_EncodeString'd (prov_device_ll_client.c:161) and sig
		// URL_Encode'd, both lower-case hex (c-utility urlencode.c:13).
		connect: sdkConnect("api-version=2021-06-01&ClientVersion=1.15.0", true, 0,
			sdkToken(t, sdkSRLower, true, "registration", "sr", "sig", "se", "skn")),
		// :407 QoS 0 (DELIVER_AT_MOST_ONCE); :441, :466 $rid = the last
		// packet id (the SUBSCRIBE's 1, then 2); the same JSON body on
		// register and poll (send_mqtt_message, :402).
		regQoS: 0, pollQoS: 0, rids: []string{"1", "2"}, register: sdkRegBody, poll: sdkRegBody,
		// prov_device_ll_client.c:1109, :1140: the next request goes
		// retry-after after the last one was *sent*, so 1 ms of answer
		// delay earlier than after the answer.
		waits: []time.Duration{999 * time.Millisecond}, retryAfter: 1,
	}
}

func sdkNode(t *testing.T) sdkFlow {
	return sdkFlow{
		// provisioning/transport/mqtt/src/mqtt.ts:306-309 clean: true,
		// '&ClientVersion=' + encodeURIComponent(userAgent); keep-alive 180
		// (common/transport/mqtt/src/mqtt_base.ts:404); sr raw and the
		// fields in the order sr, sig, skn, se
		// (common/core/src/shared_access_signature.ts:62).
		connect: sdkConnect("api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.2", true, 180,
			sdkToken(t, sdkSRRaw, false, "registration", "sr", "sig", "skn", "se")),
		// mqtt.ts:376, :389: QoS 1, $rid a random UUID, poll body " ";
		// mqtt.ts:77-78: the poll after retry-after × 1000 ms; :353
		// UNSUBSCRIBE before the DISCONNECT.
		regQoS: 1, pollQoS: 1, rids: []string{"1b4e28ba-2fa1-4d3b-a3f5-ef19b5a7633b", "6ec0bd7f-11c0-43da-975e-2a8ad9ebae0b"},
		register: sdkRegBody, poll: " ", waits: []time.Duration{time.Second}, retryAfter: 1, unsubscribe: true,
	}
}

func sdkPython(t *testing.T) sdkFlow {
	return sdkFlow{
		// pipeline_stages_provisioning_mqtt.py:41-55 client_id = registration
		// id, username with urlencode(..., quote_via=quote) of ClientVersion;
		// common/mqtt_transport.py:152 clean_session=False;
		// common/pipeline/config.py:15 keep-alive 60; common/auth/sastoken.py:32
		// "sr={resource}&sig={signature}&se={expiry}" (no skn), :68, :76
		// quote(..., safe="") (upper-case hex).
		connect: sdkConnect("api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%28Python%203.11.4%3BLinux%205.15.0%3Bx86_64%29", false, 60,
			sdkToken(t, sdkSRUpper, false, "", "sr", "sig", "se")),
		// mqtt_topic_provisioning.py:43-58 $rid = quote(uuid4); QoS 1
		// (mqtt_transport.py:522); pipeline_stages_provisioning.py:461
		// json.dumps(sort_keys=True) → {"payload": null, "registrationId": …};
		// :391 poll body " "; :409-410 the first poll after a fixed
		// DEFAULT_POLLING_INTERVAL, 2 s (constant.py:16), whatever the
		// retry-after.
		regQoS: 1, pollQoS: 1, rids: []string{"0e3a5f4c-9a0a-4a55-9d3e-7b4c1f3b2a10", "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"},
		register: `{"payload": null, "registrationId": "sym-device-1"}`, poll: " ",
		waits: []time.Duration{2 * time.Second}, retryAfter: 1,
	}
}

func sdkJava(t *testing.T) sdkFlow {
	return sdkFlow{
		// ContractAPIMqtt.java:184 the API version passed twice, so
		// "&ClientVersion=2019-03-31"; MqttConnection.java:31-33 keep-alive
		// 230, CleanSession false, level 4; RegisterTask.java:43
		// "sr=%s&sig=%s&se=%s&skn=" (skn empty), sr raw
		// (UrlPathBuilder.java:127), sig URLEncoder'd (:182).
		connect: sdkConnect("api-version=2019-03-31&ClientVersion=2019-03-31", false, 230,
			sdkToken(t, sdkSRRaw, false, "", "sr", "sig", "se", "skn")),
		// ContractAPIMqtt.java:31-32, :88, :256, :310: $rid a counter from
		// 1; :94 QoS 0; the poll has no body; ProvisioningTask.java:144
		// sleeps the retry-after, 2 s when outside 2–5 s
		// (ProvisioningDeviceClientContract.java:20-35).
		regQoS: 0, pollQoS: 0, rids: []string{"1", "2"}, register: sdkRegBody, poll: "",
		waits: []time.Duration{2 * time.Second}, retryAfter: 1,
	}
}

func sdkCSharp(t *testing.T) sdkFlow {
	return sdkFlow{
		// ProvisioningChannelHandlerAdapter.cs:32, :173-185 CleanSession
		// true, no Will, Uri.EscapeDataString(userAgent), keep-alive not
		// set; ProvisioningSasBuilder.cs:73-105 WebUtility.UrlEncode of sr
		// and sig (upper-case hex), skn=registration.
		connect: sdkConnect("api-version=2019-03-31&ClientVersion=Microsoft.Azure.Devices.Provisioning.Client%2F1.19.4%20%28.NET%208.0.0%3B%20Ubuntu%2022.04%29", true, 0,
			sdkToken(t, sdkSRUpper, false, "registration", "sr", "sig", "se", "skn")),
		// :31 QoS 1, :339-344 $rid = the PUBLISH's packet id (the
		// SUBSCRIBE took 1), an empty register body without a custom
		// payload (:328-337), :440-446 an empty poll body; :396-401 the
		// poll after retry-after, at least 2 s (ProvisioningErrorDetailsMqtt.cs).
		regQoS: 1, pollQoS: 1, rids: []string{"2", "3"}, register: "", poll: "",
		waits: []time.Duration{2 * time.Second}, retryAfter: 1,
	}
}

func sdkEmbeddedC(t *testing.T) sdkFlow {
	return sdkFlow{
		// samples/iot/paho_iot_provisioning_sas_sample.c:157-158
		// cleansession false, keep-alive 240; no user agent, so no
		// ClientVersion (az_iot_provisioning_client.c:88-89); the sample
		// passes no key name (:422), so no skn; sr lower-case
		// (az_iot_provisioning_client_sas.c).
		connect: sdkConnect("api-version=2019-03-31", false, 240,
			sdkToken(t, sdkSRLower, false, "", "sr", "sig", "se")),
		// az_iot_provisioning_client.c:17, :19 $rid=1 every time; the
		// sample's register is QoS 1 with an empty body (:211-214), its
		// polls QoS 0 after the retry-after (:376-380).
		regQoS: 1, pollQoS: 0, rids: []string{"1", "1"}, register: "", poll: "",
		waits: []time.Duration{time.Second}, retryAfter: 1,
	}
}

// TestDeviceRulesOfficialSDKs judges every device rule on each official
// SDK's traffic: the normal flow under both profiles, then the behaviours
// of the SDKs that a rule reports.
func TestDeviceRulesOfficialSDKs(t *testing.T) {
	sdks := []struct {
		name string
		flow func(*testing.T) sdkFlow
		// want2019 are the rules its normal flow fails under dps-2019;
		// under dps-2023 it fails none.
		want2019 []string
	}{
		{"azure-iot-sdk-c", sdkC, nil},
		{"azure-iot-sdk-node", sdkNode, nil},
		// CleanSession 0: DPS-PROTOCOL.md Part A §1, §2 (the 2019 page:
		// "DPS does not support CleanSession = 0").
		{"azure-iot-sdk-python", sdkPython, []string{"DPS-DEV-008"}},
		{"azure-iot-sdk-java", sdkJava, []string{"DPS-DEV-008"}},
		{"azure-iot-sdk-csharp", sdkCSharp, nil},
		{"azure-sdk-for-c Paho sample", sdkEmbeddedC, []string{"DPS-DEV-008"}},
	}
	// The rules a normal flow of the synthetic captures gives evidence for
	// (TLS and WebSocket rules need a handshake the recorder cannot fake).
	evidence := []string{"DPS-DEV-003", "DPS-DEV-004", "DPS-DEV-005", "DPS-DEV-007", "DPS-DEV-008", "DPS-DEV-009",
		"DPS-DEV-010", "DPS-DEV-011", "DPS-DEV-012", "DPS-DEV-013", "DPS-DEV-014", "DPS-DEV-015", "DPS-DEV-019",
		"DPS-DEV-020", "DPS-DEV-023", "DPS-DEV-026"}
	for _, sdk := range sdks {
		for _, profile := range []string{conformance.ProfileDPS2019, conformance.ProfileDPS2023} {
			want := sdk.want2019
			if profile == conformance.ProfileDPS2023 {
				want = nil
			}
			t.Run(sdk.name+"/"+profile, func(t *testing.T) {
				s := newSynth(t)
				sdk.flow(t).run(s)
				judgeSDK(t, s.capture(), conformance.RuleEnv{Profile: profile, SymmetricKey: emulatortest.SymDeviceKey}, want, evidence)
			})
		}
	}

	env2023 := conformance.RuleEnv{Profile: conformance.ProfileDPS2023, SymmetricKey: emulatortest.SymDeviceKey}
	for _, tc := range []struct {
		name  string
		env   conformance.RuleEnv
		build func(t *testing.T, s *synth)
		want  []string
	}{
		// D-MQTT: poll "after a delay equal to the retry-after period"
		// (Part B §5); Part B §4.3, §11.8 name the quirk.
		{name: "python: the first poll after a fixed 2 s, the retry-after 3 s", env: env2023, want: []string{"DPS-DEV-014"},
			build: func(t *testing.T, s *synth) {
				fl := sdkPython(t)
				fl.retryAfter = 3
				fl.rids = append(fl.rids, "4a1c2b3d-0e9f-4a8b-8c7d-6e5f4a3b2c1d")
				fl.waits = []time.Duration{2 * time.Second, 3 * time.Second} // pipeline_stages_provisioning.py:409-410, then :232-264
				fl.run(s)
			}},
		{name: "java: a retry-after of 6 s, out of its 2–5 s, waited as 2 s", env: env2023, want: []string{"DPS-DEV-014"},
			build: func(t *testing.T, s *synth) {
				fl := sdkJava(t)
				fl.retryAfter = 6
				fl.run(s)
			}},
		// The C SDK waits from its request, not from the answer: against
		// a service that answers 400 ms later the poll comes 400 ms early
		// (the emulator answers at once: a device-role run is not
		// affected).
		{name: "c: retry-after counted from the request, the answer 400 ms later", env: env2023, want: []string{"DPS-DEV-014"},
			build: func(t *testing.T, s *synth) {
				fl := sdkC(t)
				fl.retryAfter, fl.answerDelay = 3, 400*time.Millisecond
				fl.waits = []time.Duration{2600 * time.Millisecond}
				fl.run(s)
			}},
		// scenario poll-no-operation-id: ProvisioningChannelHandlerAdapter.cs:395,
		// :403 polls with the answer's operationId, null, formatted as "".
		// Part B §5 (EC mqtt_state_machine.md): reuse the cached id or
		// register again.
		{name: "csharp: a 202 without operationId, the next poll with an empty one", env: env2023, want: []string{"DPS-DEV-013"},
			build: func(t *testing.T, s *synth) {
				fl := sdkCSharp(t)
				f := s.bare(fl.connect, &packets.Connack{})
				f.subscribe()
				f.publish(1, 2, dps.RegisterTopic("2"), "")
				f.deliver(1, dps.ResponseTopic(202, "2", 1), op1)
				s.advance(2 * time.Second)
				f.publish(1, 3, dps.PollTopic("3", "op-1"), "")
				f.deliver(2, dps.ResponseTopic(202, "3", 1), `{"status":"assigning"}`)
				s.advance(2 * time.Second)
				f.publish(1, 4, dps.PollTopic("4", ""), "")
				f.close()
			}},
		// scenario disconnect-mid-poll, dps-2023 (dps-2019 refuses its
		// CleanSession 0): pipeline_stages_base.py:1117 reconnects after
		// 10 ms; responses_enabled stays set (mqtt_pipeline.py:232), so no
		// SUBSCRIBE; paho-mqtt 1.6.1 (setup.py:80) resends the unacknowledged
		// QoS 1 poll with DUP on the CONNACK (client.py:2945-2957,
		// :3146-3180). DPS keeps no session (Part A §1): the answer has no
		// subscription to reach.
		{name: "python: reconnects after a lost connection and resends the poll unsubscribed", env: env2023, want: []string{"DPS-DEV-010"},
			build: func(t *testing.T, s *synth) {
				fl := sdkPython(t)
				f := s.bare(fl.connect, &packets.Connack{})
				f.subscribe()
				f.publish(1, 2, dps.RegisterTopic(fl.rids[0]), fl.register)
				f.deliver(1, dps.ResponseTopic(202, fl.rids[0], 1), op1)
				s.advance(2 * time.Second)
				poll := &packets.Publish{QoS: 1, PacketID: 3, Topic: []byte(dps.PollTopic(fl.rids[1], "op-1")), Payload: []byte(" ")}
				f.send(tracer.Client, poll)
				if err := f.f.Fin(tracer.Server); err != nil {
					t.Fatal(err)
				}
				if err := f.f.Fin(tracer.Client); err != nil {
					t.Fatal(err)
				}
				s.advance(10 * time.Millisecond)
				g := s.bare(fl.connect, &packets.Connack{})
				poll.Dup = true
				g.send(tracer.Client, poll)
				g.send(tracer.Server, &packets.Puback{PacketID: 3})
				s.advance(30 * time.Second) // its operation timeout
				g.close()
			}},
		// MQTTClient.c:1687-1695 (paho.mqtt.c 6b1e202): with MQTTVersion
		// left at MQTTVERSION_DEFAULT, as the sample leaves it, a 3.1.1
		// CONNECT that fails is retried as MQTT 3.1 (MQIsdp, level 3). DPS
		// speaks 3.1.1 only (Part B §0.1, D-MQTT).
		{name: "embedded C Paho sample under dps-2019: CleanSession 0 refused, then MQTT 3.1", env: conformance.RuleEnv{Profile: conformance.ProfileDPS2019, SymmetricKey: emulatortest.SymDeviceKey},
			want: []string{"DPS-DEV-007", "DPS-DEV-008"},
			build: func(t *testing.T, s *synth) {
				cp := sdkEmbeddedC(t).connect
				s.bare(cp, &packets.Connack{ReturnCode: packets.ConnackRefusedIdentifierRejected}).close()
				s.advance(5 * time.Millisecond)
				v3 := *cp
				v3.ProtocolName, v3.ProtocolLevel = []byte("MQIsdp"), 3
				s.bare(&v3, &packets.Connack{ReturnCode: packets.ConnackRefusedProtocolVersion}).close()
			}},
		{name: "embedded C Paho sample, connack-withheld: MQTT 3.1 at once", env: env2023, want: []string{"DPS-DEV-007", "DPS-DEV-022"},
			build: func(t *testing.T, s *synth) {
				cp := sdkEmbeddedC(t).connect
				f := s.bare(cp, nil)
				s.advance(10 * time.Second)
				f.close()
				s.advance(5 * time.Millisecond)
				v3 := *cp
				v3.ProtocolName, v3.ProtocolLevel = []byte("MQIsdp"), 3
				s.bare(&v3, &packets.Connack{ReturnCode: packets.ConnackRefusedProtocolVersion}).close()
			}},
		// scenario transient-500: prov_transport_mqtt_common.c:275-296
		// keeps the last retry-after when an answer has none (1 s at
		// first, prov_transport_mqtt_common.c:765), and the ≥ 429 answer is
		// retried after it (prov_device_ll_client.c:807-816, :1109): a
		// constant wait. D-TROUBLE and EC mqtt_state_machine.md suggest an
		// exponential back-off (Part B §4.3); DPS-DEV-018 is SHOULD.
		{name: "c: a 500 without retry-after retried after a constant 1 s", env: env2023, want: []string{"DPS-DEV-018"},
			build: func(t *testing.T, s *synth) {
				fl := sdkC(t)
				f := s.bare(fl.connect, &packets.Connack{})
				f.subscribe()
				for i, rid := range []string{"1", "2", "3"} {
					if i > 0 {
						s.advance(999 * time.Millisecond)
					}
					f.publish(0, 0, dps.RegisterTopic(rid), sdkRegBody)
					s.advance(time.Millisecond)
					f.deliver(uint16(i+1), dps.ResponseTopic(500, rid, -1), `{"errorCode":500000,"message":"Internal error"}`)
				}
				f.close()
			}},
		// DeviceRegistrationParser.java:27-29: the custom payload is a
		// String field, which Gson writes as a JSON string. D-PAYLOAD: the
		// payload "must be a JSON object" (Part B §3.4); DPS-DEV-012 is
		// SHOULD.
		{name: "java: a custom payload sent as a JSON string", env: env2023, want: []string{"DPS-DEV-012"},
			build: func(t *testing.T, s *synth) {
				fl := sdkJava(t)
				fl.register = `{"registrationId":"sym-device-1","payload":"{\"modelId\":\"dtmi:com:example:Thermostat;1\"}"}`
				fl.run(s)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSynth(t)
			tc.build(t, s)
			judgeSDK(t, s.capture(), tc.env, tc.want, nil)
		})
	}
}

// judgeSDK checks that the device rules find exactly the rules of want
// failing on capt, and that each rule of evidence applied.
func judgeSDK(t *testing.T, capt *tracer.Capture, env conformance.RuleEnv, want, evidence []string) {
	t.Helper()
	fs, applied := conformance.CheckCapture(capt, conformance.DeviceRules(), env)
	got := findingIDs(fs)
	if !slices.Equal(got, want) {
		for _, f := range fs {
			t.Log(f.Detail())
		}
		t.Fatalf("failing rules %q, want %q\n%s", got, want, transcript(capt))
	}
	for _, id := range evidence {
		if applied[id] == 0 {
			t.Errorf("%s did not apply\n%s", id, transcript(capt))
		}
	}
}
