package packettest

import "github.com/dps-conform/dps-conform/packets"

// The DPS flows of the Azure IoT SDKs (DPS-PROTOCOL.md Part B §1–§4): the
// CONNECT fields each SDK sends (§1.2 usernames, §1.3 SAS token forms, §1.7
// CleanSession and keep-alive), the SUBSCRIBE (§2), register and poll
// PUBLISHes (§3, §5) and the service's answers (§4). All use the fact sheet's
// §1.5 inputs: ID scope 0neFEEDC0DE, registration ID myRegistrationId,
// key NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=, se 1578941692, so the
// signatures in the passwords are the real ones for each sr style.

const (
	dpsScope  = "0neFEEDC0DE"
	dpsRegID  = "myRegistrationId"
	dpsOpID   = "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"
	dpsFilter = "$dps/registrations/res/#"
	// DPSSubscribeFilter is the one topic filter DPS accepts (§2).
	DPSSubscribeFilter = dpsFilter
)

// dpsConnect builds a CONNECT vector from the fields an SDK sends.
func dpsConnect(name, source string, clean bool, keepAlive uint16, username string, password *string) Vector {
	var flags byte = 0x80 // user name
	if clean {
		flags |= 0x02
	}
	groups := [][]byte{
		mqtt, {0x04}, // protocol name "MQTT", level 4
		nil,                                     // connect flags, filled below
		{byte(keepAlive >> 8), byte(keepAlive)}, // keep alive
		str(dpsRegID),                           // client identifier = registration id (§1.1)
		str(username),                           // user name (§1.2)
	}
	p := &packets.Connect{ProtocolName: bs("MQTT"), ProtocolLevel: 4, CleanSession: clean, KeepAlive: keepAlive,
		ClientID: bs(dpsRegID), Username: bs(username)}
	if password != nil {
		flags |= 0x40
		groups = append(groups, str(*password)) // password: SAS token, or empty for X.509 (§1.6)
		p.Password = bs(*password)
	}
	groups[2] = []byte{flags}
	return Vector{Name: "dps/" + name, Clause: "MQTT-3.1", Kind: Valid, Source: source, Raw: frame(0x10, groups...), Packet: p}
}

func ptr(s string) *string { return &s }

// dpsPublish builds a PUBLISH vector (QoS 0 or 1; packet id 0 for QoS 0).
func dpsPublish(name, source string, qos byte, id uint16, topic, payload string) Vector {
	groups := [][]byte{str(topic)}
	if qos > 0 {
		groups = append(groups, []byte{byte(id >> 8), byte(id)}) // packet identifier
	}
	groups = append(groups, bs(payload))
	return Vector{Name: "dps/" + name, Clause: "MQTT-3.3", Kind: Valid, Source: source,
		Raw:    frame(0x30|qos<<1, groups...),
		Packet: &packets.Publish{QoS: qos, PacketID: id, Topic: bs(topic), Payload: bs(payload)}}
}

func dpsVectors() []Vector {
	const userBase = dpsScope + "/registrations/" + dpsRegID + "/api-version="
	uuidRID := "7c3a6f1e-2b4d-4e8f-9a1b-3c5d7e9f1a2b"
	return []Vector{
		// Node: clean 1, keep-alive 180, ClientVersion percent-encoded, sr raw,
		// field order sr, sig, skn, se (§1.3 table row N).
		dpsConnect("node-connect-sas", "N mqtt.ts, mqtt_base.ts, shared_access_signature.ts", true, 180,
			userBase+"2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.2",
			ptr("SharedAccessSignature sr="+dpsScope+"/registrations/"+dpsRegID+
				"&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&skn=registration&se=1578941692")),
		// C: clean 1, keep-alive 0, api-version 2021-06-01, lower-case escapes everywhere.
		dpsConnect("c-connect-sas", "C prov_transport_mqtt_common.c, prov_auth_client.c", true, 0,
			userBase+"2021-06-01&ClientVersion=1.15.0",
			ptr("SharedAccessSignature sr="+dpsScope+"%2fregistrations%2f"+dpsRegID+
				"&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3d&se=1578941692&skn=registration")),
		// Python: clean 0, keep-alive 60, upper-case escapes, no skn.
		dpsConnect("python-connect-sas", "P mqtt_transport.py, sastoken.py", false, 60,
			userBase+"2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.13.0%28Python%203.11.7%3BLinux%206.1.0%3Bx86_64%29",
			ptr("SharedAccessSignature sr="+dpsScope+"%2Fregistrations%2F"+dpsRegID+
				"&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692")),
		// Java: clean 0, keep-alive 230, the api version sent as ClientVersion, raw sr, empty skn.
		dpsConnect("java-connect-sas", "J MqttConnection.java, ContractAPIMqtt.java", false, 230,
			userBase+"2019-03-31&ClientVersion=2019-03-31",
			ptr("SharedAccessSignature sr="+dpsScope+"/registrations/"+dpsRegID+
				"&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&se=1578941692&skn=")),
		// embedded C (Paho sample), X.509: clean 0, keep-alive 240, empty password.
		dpsConnect("ec-connect-x509-empty-password", "EC paho_iot_provisioning sample, mqtt_state_machine.md", false, 240,
			userBase+"2019-03-31", ptr("")),
		// C, X.509: no password flag at all.
		dpsConnect("c-connect-x509-no-password", "C prov_transport_mqtt_common.c", true, 0,
			userBase+"2021-06-01&ClientVersion=1.15.0", nil),
		{Name: "dps/subscribe-qos1", Clause: "MQTT-3.8", Kind: Valid, Source: "N, C, P, J, CS",
			Raw: cat(
				[]byte{0x82, 0x1d}, // fixed header: SUBSCRIBE, remaining length 29
				[]byte{0x00, 0x01}, // packet identifier 1
				str(dpsFilter),     // topic filter "$dps/registrations/res/#"
				[]byte{0x01},       // requested QoS 1
			),
			Packet: &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: bs(dpsFilter), QoS: 1}}}},
		{Name: "dps/subscribe-qos0", Clause: "MQTT-3.8", Kind: Valid, Source: "FR, NX",
			Raw:    cat([]byte{0x82, 0x1d, 0x00, 0x01}, str(dpsFilter), []byte{0x00}), // requested QoS 0
			Packet: &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: bs(dpsFilter), QoS: 0}}}},
		{Name: "dps/suback-granted-qos1", Clause: "MQTT-3.9", Kind: Valid, Source: "D-MQTT (QoS 2 granted 1)",
			Raw:    []byte{0x90, 0x03, 0x00, 0x01, 0x01}, // SUBACK id 1, maximum QoS 1
			Packet: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}}},
		dpsPublish("node-register-qos1", "N mqtt.ts ($rid = UUID)", 1, 2,
			"$dps/registrations/PUT/iotdps-register/?$rid="+uuidRID, `{"registrationId":"`+dpsRegID+`"}`),
		dpsPublish("c-register-qos0", "C prov_transport_mqtt_common.c ($rid = packet counter)", 0, 0,
			"$dps/registrations/PUT/iotdps-register/?$rid=1", `{"registrationId":"`+dpsRegID+`"}`),
		dpsPublish("python-register-payload-null", "P pipeline_stages_provisioning_mqtt.py", 1, 2,
			"$dps/registrations/PUT/iotdps-register/?$rid="+uuidRID, `{"payload": null, "registrationId": "`+dpsRegID+`"}`),
		dpsPublish("csharp-register-empty-body", "CS ProvisioningChannelHandlerAdapter.cs", 1, 2,
			"$dps/registrations/PUT/iotdps-register/?$rid=2", ""),
		dpsPublish("ec-poll-qos0", "EC az_iot_provisioning_client.c ($rid constant 1)", 0, 0,
			"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId="+dpsOpID, ""),
		{Name: "dps/service-puback", Clause: "MQTT-3.4", Kind: Valid, Source: "Part A §6 (PUBACK before the answer)",
			Raw: []byte{0x40, 0x02, 0x00, 0x02}, Packet: &packets.Puback{PacketID: 2}},
		dpsPublish("service-response-202", "trace I-393; EC source comment", 1, 1,
			"$dps/registrations/res/202/?$rid=1&retry-after=3", `{"operationId":"`+dpsOpID+`","status":"assigning"}`),
		dpsPublish("service-response-200-assigned", "EC test_az_iot_provisioning_client_parser.c", 1, 2,
			"$dps/registrations/res/200/?$rid=1", `{"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d",`+
				`"status":"assigned","registrationState":{"x509":{},"registrationId":"myRegistrationId",`+
				`"createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z","assignedHub":"contoso.azure-devices.net",`+
				`"deviceId":"my-device-id1","status":"assigned","substatus":"initialAssignment",`+
				`"lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z","etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI="}}`),
		dpsPublish("service-response-401", "EC test (401002 body); I-43157 (401 on res topic)", 1, 1,
			"$dps/registrations/res/401/?$rid=1", `{"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b",`+
				`"message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"}`),
	}
}
