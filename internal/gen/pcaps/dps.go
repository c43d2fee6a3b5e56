package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer"
)

// The device of every capture. The key is a published test value, not a
// secret: captures carry its SAS signature in the CONNECT password.
const (
	idScope     = "0ne0000ABCD"
	regID       = "gen-device-001"
	deviceKey   = "Z2VuZXJhdG9yLXRlc3Qta2V5LW5vdC1hLXNlY3JldCEhIQ=="
	operationID = "4.0123456789abcdef.01234567-89ab-4cde-8f01-23456789abcd"
	assignedHub = "gen-hub.azure-devices.net"
)

// step is one packet of a scripted exchange, sent by from after wait.
type step struct {
	from tracer.Side
	wait time.Duration
	p    packets.Packet
}

// connectPacket is the device's CONNECT with a SAS token valid at the
// generator's fixed clock.
func connectPacket() (*packets.Connect, error) {
	sas, err := dps.BuildSASToken(dps.SASOptions{
		IDScope: idScope, RegistrationID: regID, Key: deviceKey,
		Expiry: time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC),
	})
	if err != nil {
		return nil, err
	}
	user := dps.Username{IDScope: idScope, RegistrationID: regID, APIVersion: dps.DefaultAPIVersion,
		ClientVersion: "dps-conform-gen%2F1"}
	return &packets.Connect{
		ProtocolName: []byte(packets.ProtocolName311), ProtocolLevel: 4, CleanSession: true,
		KeepAlive: 240, ClientID: []byte(regID),
		Username: []byte(user.String()), Password: []byte(sas),
	}, nil
}

// publish is a QoS 1 PUBLISH.
func publish(topic string, id uint16, body any) (*packets.Publish, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return &packets.Publish{QoS: 1, PacketID: id, Topic: []byte(topic), Payload: b}, nil
}

// registerBody, assigningBody and assignedBody are the JSON bodies of the flow.
func registerBody() dps.DeviceRegistration { return dps.DeviceRegistration{RegistrationID: regID} }

func assigningBody() dps.RegistrationOperationStatus {
	return dps.RegistrationOperationStatus{OperationID: operationID, Status: dps.StatusAssigning}
}

func assignedBody() dps.RegistrationOperationStatus {
	return dps.RegistrationOperationStatus{OperationID: operationID, Status: dps.StatusAssigned,
		RegistrationState: &dps.DeviceRegistrationResult{
			RegistrationID: regID, AssignedHub: assignedHub, DeviceID: regID,
			Status: dps.StatusAssigned, Substatus: dps.SubstatusInitialAssignment,
			CreatedDateTimeUTC: "2026-03-01T12:00:01.0000000Z", LastUpdatedDateTimeUTC: "2026-03-01T12:00:04.0000000Z",
			ETag:         "IjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCI=",
			SymmetricKey: &dps.SymmetricKeyRegistrationResult{},
		}}
}

// conformantSteps is a register then poll exchange that follows
// DPS-PROTOCOL.md: PUBACK before the answer, poll after retry-after.
func conformantSteps() ([]step, error) {
	conn, err := connectPacket()
	if err != nil {
		return nil, err
	}
	reg, err1 := publish(dps.RegisterTopic("1"), 2, registerBody())
	res202, err2 := publish(dps.ResponseTopic(202, "1", 3), 1, assigningBody())
	poll, err3 := publish(dps.PollTopic("2", operationID), 3, struct{}{})
	res200, err4 := publish(dps.ResponseTopic(200, "2", -1), 2, assignedBody())
	if err := firstErr(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	return []step{
		{from: tracer.Client, p: conn},
		{from: tracer.Server, p: &packets.Connack{ReturnCode: packets.ConnackAccepted}},
		{from: tracer.Client, p: &packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(dps.SubscribeFilter), QoS: 1}}}},
		{from: tracer.Server, p: &packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{packets.SubackMaxQoS1}}},
		{from: tracer.Client, p: reg},
		{from: tracer.Server, p: &packets.Puback{PacketID: 2}},
		{from: tracer.Server, p: res202},
		{from: tracer.Client, p: &packets.Puback{PacketID: 1}},
		{from: tracer.Client, wait: 3 * time.Second, p: poll},
		{from: tracer.Server, p: &packets.Puback{PacketID: 3}},
		{from: tracer.Server, p: res200},
		{from: tracer.Client, p: &packets.Puback{PacketID: 2}},
		{from: tracer.Client, p: &packets.Disconnect{}},
	}, nil
}

// firstErr is the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// mustEqualType checks that a packet read by a scripted peer is the one
// the script expects.
func mustEqualType(got, want packets.Packet) error {
	if got.Type() != want.Type() {
		return fmt.Errorf("scripted peer read %v, want %v", got.Type(), want.Type())
	}
	return nil
}
