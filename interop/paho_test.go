package interop

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
)

// pahoMessage is one PUBLISH the Paho client received.
type pahoMessage struct {
	topic   string
	payload []byte
}

// TestPahoMQTTGolang drives the documented register/poll flow with the
// Eclipse Paho Go MQTT 3.1.1 client (github.com/eclipse/paho.mqtt.golang):
// SUBSCRIBE $dps/registrations/res/#, register, 202 assigning with
// retry-after and an operation id, poll until 200 assigned.
func TestPahoMQTTGolang(t *testing.T) {
	const retryAfter = time.Second
	e := emulatortest.Start(t, emulatortest.Options{RetryAfter: retryAfter})
	regID := emulatortest.SymDeviceID
	sas, err := dps.BuildSASToken(dps.SASOptions{
		IDScope: e.IDScope, RegistrationID: regID,
		Key: emulatortest.SymDeviceKey, Expiry: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan pahoMessage, 16)
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + e.MQTTAddr).
		SetClientID(regID).
		SetUsername(dps.Username{IDScope: e.IDScope, RegistrationID: regID, APIVersion: dps.DefaultAPIVersion}.String()).
		SetPassword(sas).
		SetTLSConfig(e.ClientTLSConfig(nil)).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetKeepAlive(60 * time.Second).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			select {
			case msgs <- pahoMessage{m.Topic(), append([]byte(nil), m.Payload()...)}:
			default:
				t.Errorf("unexpected flood of PUBLISH; dropped %s", m.Topic())
			}
		})
	c := mqtt.NewClient(opts)
	wait := func(step string, tok mqtt.Token) {
		t.Helper()
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatalf("%s: no acknowledgement within 10 s", step)
		}
		if err := tok.Error(); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	wait("CONNECT", c.Connect())
	defer c.Disconnect(250)

	sub := c.Subscribe("$dps/registrations/res/#", 1, nil)
	wait("SUBSCRIBE", sub)
	if got := sub.(*mqtt.SubscribeToken).Result()["$dps/registrations/res/#"]; got != 1 {
		t.Fatalf("SUBACK return code %d, want 1 (granted QoS 1)", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next := func(rid string) (dps.Response, dps.RegistrationOperationStatus) {
		t.Helper()
		select {
		case m := <-msgs:
			r, err := dps.ParseResponseTopic(m.topic)
			if err != nil {
				t.Fatalf("response topic %q: %v", m.topic, err)
			}
			if r.RID != rid {
				t.Fatalf("response $rid %q, want %q (topic %q)", r.RID, rid, m.topic)
			}
			var body dps.RegistrationOperationStatus
			if err := json.Unmarshal(m.payload, &body); err != nil {
				t.Fatalf("response body of %q: %v\n%s", m.topic, err, m.payload)
			}
			return r, body
		case <-ctx.Done():
			t.Fatalf("no response to $rid %s: %v", rid, ctx.Err())
		}
		panic("unreachable")
	}

	body, _ := json.Marshal(map[string]string{"registrationId": regID})
	wait("register PUBLISH", c.Publish(dps.RegisterTopic("1"), 1, false, body))
	r, st := next("1")
	if r.Status != 202 || !r.HasRetryAfter || r.RetryAfter != retryAfter {
		t.Fatalf("register answer: status %d retry-after %v (present %v), want 202 with retry-after %v", r.Status, r.RetryAfter, r.HasRetryAfter, retryAfter)
	}
	if st.Status != "assigning" || !dps.ValidOperationIDFormat(st.OperationID) {
		t.Fatalf("register body: status %q operationId %q, want assigning with a valid operation id", st.Status, st.OperationID)
	}
	opID := st.OperationID

	for poll := 2; ; poll++ {
		if poll > 10 {
			t.Fatalf("still assigning after %d polls", poll-2)
		}
		select {
		case <-time.After(r.RetryAfter):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		rid := strconv.Itoa(poll)
		wait("poll PUBLISH", c.Publish(dps.PollTopic(rid, opID), 1, false, []byte{}))
		r, st = next(rid)
		if st.OperationID != opID {
			t.Fatalf("poll %s answered operation %q, want %q", rid, st.OperationID, opID)
		}
		if r.Status == 202 {
			continue
		}
		if r.Status != 200 || st.Status != "assigned" || st.RegistrationState == nil {
			t.Fatalf("poll %s: status %d body status %q, want 200 assigned", rid, r.Status, st.Status)
		}
		break
	}
	rs := st.RegistrationState
	rec, ok, err := e.Registry.Registration(ctx, regID)
	if err != nil || !ok {
		t.Fatalf("emulator has no registration of %q: ok=%v err=%v", regID, ok, err)
	}
	if rs.RegistrationID != regID || rs.AssignedHub != emulatortest.HubName || rs.DeviceID != regID ||
		rs.AssignedHub != rec.AssignedHub || rs.DeviceID != rec.DeviceID {
		t.Errorf("registrationState %+v, want registrationId/deviceId %q on %q as recorded (%q, %q)", rs, regID, emulatortest.HubName, rec.AssignedHub, rec.DeviceID)
	}
	if rs.SymmetricKey == nil {
		t.Errorf("registrationState has no symmetricKey attestation object")
	}
}
