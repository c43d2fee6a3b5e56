package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// leanRegistration is the load generator of 'bench provision --client
// lean': one registration with the same packets, in the same order and
// with the same waits as the reference device (device.Provision) sends
// them, CONNECT / CONNACK, SUBSCRIBE / SUBACK, register / PUBACK + 202,
// PUBACK + poll / PUBACK + 200, PUBACK + DISCONNECT, but none of the
// reference device's machinery: no reader goroutine, no per-request
// contexts and deadlines, no event tracing, packets decoded in place. It is
// to the storm what the ceiling's dial-handshake-close client is to a bare
// handshake: the least a client can do, so that the figure is the server's.
//
// It checks every answer it depends on (CONNACK 0, a granted SUBACK, the
// $rid of each response, the status of the operation) and returns the
// number of polls.
type leanRegistration struct {
	addr     string
	conf     *tls.Config
	idScope  string
	regID    string
	key      string // the device's symmetric key (derived from the group key)
	deadline time.Duration
	// echo turns the flow into the echo flow of 'bench provision
	// --mosquitto': each request is published on the response topic its
	// answer would come on, with the canned answer of the bare responder
	// as its body, so that a plain MQTT broker, which delivers it back to
	// the device's subscription, answers like DPS. A broker delivers to
	// every subscriber, so the device's topics and filter carry its
	// registration id after "$dps/registrations/res/" (echoTopic). The
	// packets, their order and the round trips are those of the DPS flow.
	echo bool
}

// benchConnect is the documented CONNECT of device regID of idScope, with
// a SAS token signed with key valid for an hour, as the bench's clients
// send it.
func benchConnect(idScope, regID, key string, keepAlive uint16) (*packets.Connect, error) {
	tok, err := dps.BuildSASToken(dps.SASOptions{IDScope: idScope, RegistrationID: regID, Key: key, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		return nil, err
	}
	user := dps.Username{IDScope: idScope, RegistrationID: regID, APIVersion: dps.DefaultAPIVersion}.String()
	return &packets.Connect{ProtocolName: []byte(packets.ProtocolName311), ProtocolLevel: packets.ProtocolLevel311, CleanSession: true,
		KeepAlive: keepAlive, ClientID: []byte(regID), Username: []byte(user), Password: []byte(tok)}, nil
}

// maxLeanPolls bounds the polls of one registration (retry-after 0: the
// server answers "assigning" until the assignment is done).
const maxLeanPolls = 10_000

func (l *leanRegistration) run(ctx context.Context, d *net.Dialer) (polls int, err error) {
	defer func() {
		if err != nil && ctx.Err() != nil && !errors.Is(err, context.Cause(ctx)) {
			// Cancelling cuts the connection's deadline short: say why.
			err = fmt.Errorf("%w (%w)", context.Cause(ctx), err)
		}
	}()
	raw, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	// One deadline bounds the whole registration; ctx cancels it too.
	if err := raw.SetDeadline(time.Now().Add(l.deadline)); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c := tls.Client(raw, l.conf)
	if err := c.Handshake(); err != nil {
		return 0, fmt.Errorf("TLS handshake: %w", err)
	}

	cp, err := benchConnect(l.idScope, l.regID, l.key, 60)
	if err != nil {
		return 0, err
	}
	out, err := cp.Append(make([]byte, 0, 512))
	if err != nil {
		return 0, err
	}
	r := packets.NewReader(bufio.NewReaderSize(c, 2048), packets.DecodeOptions{})
	send := func() error {
		_, err := c.Write(out)
		out = out[:0]
		return err
	}
	if err := send(); err != nil {
		return 0, fmt.Errorf("writing CONNECT: %w", err)
	}
	p, err := r.ReadPacket()
	if err != nil {
		return 0, fmt.Errorf("reading CONNACK: %w", err)
	}
	if ack, ok := p.(*packets.Connack); !ok || ack.ReturnCode != packets.ConnackAccepted {
		return 0, fmt.Errorf("CONNECT answered with %v", p)
	}
	filter := dps.SubscribeFilter
	if l.echo {
		filter = dps.ResponsePrefix + l.regID + "/#"
	}
	out, _ = (&packets.Subscribe{PacketID: 1, Subscriptions: []packets.Subscription{{Filter: []byte(filter), QoS: 1}}}).Append(out)
	if err := send(); err != nil {
		return 0, fmt.Errorf("writing SUBSCRIBE: %w", err)
	}
	if p, err = r.ReadPacket(); err != nil {
		return 0, fmt.Errorf("reading SUBACK: %w", err)
	}
	if ack, ok := p.(*packets.Suback); !ok || len(ack.ReturnCodes) != 1 || ack.ReturnCodes[0] == packets.SubackFailure {
		return 0, fmt.Errorf("SUBSCRIBE answered with %v", p)
	}

	body, err := json.Marshal(dps.DeviceRegistration{RegistrationID: l.regID})
	if err != nil {
		return 0, err
	}
	topic := dps.RegisterTopic("1")
	var assigned []byte // the echo flow's last body
	if l.echo {
		topic, body = l.echoTopic(202, "1"), []byte(responderAssigning)
		if assigned, err = cannedAssigned(l.regID); err != nil {
			return 0, err
		}
	}
	for rid := 1; ; rid++ {
		ridS := strconv.Itoa(rid)
		out, _ = (&packets.Publish{QoS: 1, PacketID: uint16(rid%65535 + 1), Topic: []byte(topic), Payload: body}).Append(out)
		if err := send(); err != nil {
			return polls, fmt.Errorf("writing request %d: %w", rid, err)
		}
		resp, op, err := l.await(r, ridS, &out)
		if err != nil {
			return polls, err
		}
		switch status := resp.Status; {
		case status == 200 && op.Status == dps.StatusAssigned:
			out, _ = (&packets.Disconnect{}).Append(out) // after the PUBACK of the 200
			if err := send(); err != nil {
				return polls, fmt.Errorf("writing DISCONNECT: %w", err)
			}
			return polls, nil
		case (status == 200 || status == 202) && (op.Status == dps.StatusAssigning || op.Status == dps.StatusUnassigned) && op.OperationID != "":
			if polls++; polls > maxLeanPolls {
				return polls, fmt.Errorf("%d polls without a final status", maxLeanPolls)
			}
			topic = dps.PollTopic(strconv.Itoa(rid+1), op.OperationID)
			body = nil
			if l.echo {
				topic, body = l.echoTopic(200, strconv.Itoa(rid+1)), assigned
			}
			if resp.RetryAfter > 0 { // the emulator of the storm answers 0
				t := time.NewTimer(resp.RetryAfter)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return polls, context.Cause(ctx)
				}
			}
		default:
			return polls, fmt.Errorf("request %d answered %d with status %q", rid, status, op.Status)
		}
	}
}

// echoTopic is the echo flow's topic of the answer status to rid: the
// response topic with the registration id after dps.ResponsePrefix.
func (l *leanRegistration) echoTopic(status int, rid string) string {
	return dps.ResponsePrefix + l.regID + "/" + strings.TrimPrefix(dps.ResponseTopic(status, rid, 0), dps.ResponsePrefix)
}

// await reads until the response to $rid rid, skipping the PUBACK of the
// request; the PUBACK of the response is appended to out, to leave with the
// next write.
func (l *leanRegistration) await(r *packets.Reader, rid string, out *[]byte) (dps.Response, dps.RegistrationOperationStatus, error) {
	var op dps.RegistrationOperationStatus
	var resp dps.Response
	for range 8 { // the PUBACK and the answer; anything more is a fault
		p, err := r.ReadPacket()
		if err != nil {
			return resp, op, fmt.Errorf("waiting for the answer to $rid=%s: %w", rid, err)
		}
		pub, ok := p.(*packets.Publish)
		if !ok {
			continue // the PUBACK of the request
		}
		if pub.QoS > 0 {
			*out, _ = (&packets.Puback{PacketID: pub.PacketID}).Append(*out)
		}
		topic := string(pub.Topic)
		if l.echo {
			own := dps.ResponsePrefix + l.regID + "/"
			if !strings.HasPrefix(topic, own) {
				return resp, op, fmt.Errorf("echo on %q, not under %s", topic, own)
			}
			topic = dps.ResponsePrefix + topic[len(own):]
		}
		if resp, err = dps.ParseResponseTopic(topic); err != nil {
			return resp, op, fmt.Errorf("answer on %q: %w", pub.Topic, err)
		}
		if resp.RID != rid {
			return resp, op, fmt.Errorf("answer for $rid=%s while waiting for %s", resp.RID, rid)
		}
		if resp.Status >= 300 {
			var e dps.ErrorBody
			_ = json.Unmarshal(pub.Payload, &e) // the message, when there is one
			return resp, op, fmt.Errorf("request $rid=%s answered %d (errorCode %d: %s)", rid, resp.Status, e.ErrorCode, e.Message)
		}
		if err := json.Unmarshal(pub.Payload, &op); err != nil {
			return resp, op, fmt.Errorf("answer %d to $rid=%s: %w", resp.Status, rid, err)
		}
		return resp, op, nil
	}
	return resp, op, fmt.Errorf("no answer to $rid=%s in 8 packets", rid)
}
