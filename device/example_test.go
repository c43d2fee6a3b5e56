package device_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// ExampleProvision provisions a device with a symmetric key. A real device
// sets Target (and Dial.TLSConfig); here DialFunc hands in one end of a pipe
// whose other end plays a minimal DPS: it accepts, answers the register with
// 202 (retry-after 3) and the poll with 200 assigned.
func ExampleProvision() {
	client, server := net.Pipe()
	go miniDPS(server)

	var waits []time.Duration
	res, err := device.Provision(context.Background(), device.Config{
		IDScope:        "0ne00000A0A",
		RegistrationID: "my-device",
		SymmetricKey:   "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=",
		DialFunc:       func(context.Context) (net.Conn, error) { return client, nil },
		// A recording clock instead of real sleeps.
		Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil },
	})
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(res.Status, res.RegistrationState.AssignedHub, res.RegistrationState.DeviceID)
	fmt.Println("polls:", res.Polls, "waits:", waits)
	// Output:
	// assigned hub-1.azure-devices.net my-device
	// polls: 1 waits: [3s]
}

// miniDPS answers one device on conn, just enough for the example.
func miniDPS(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	op := `{"operationId":"4.0123456789abcdef.00000000-0000-4000-8000-000000000000","status":"%s"%s}`
	for {
		p, err := packets.ReadPacket(r, packets.DecodeOptions{})
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *packets.Connect:
			packets.WritePacket(conn, &packets.Connack{})
		case *packets.Subscribe:
			packets.WritePacket(conn, &packets.Suback{PacketID: p.PacketID, ReturnCodes: []packets.SubackCode{1}})
		case *packets.Publish:
			req, _ := dps.ParseRequestTopic(string(p.Topic))
			packets.WritePacket(conn, &packets.Puback{PacketID: p.PacketID})
			if req.Kind == dps.Register {
				body := fmt.Sprintf(op, "assigning", "")
				packets.WritePacket(conn, &packets.Publish{Topic: []byte(dps.ResponseTopic(202, req.RID, 3)), Payload: []byte(body)})
			} else {
				body := fmt.Sprintf(op, "assigned", `,"registrationState":{"registrationId":"my-device","assignedHub":"hub-1.azure-devices.net","deviceId":"my-device","status":"assigned"}`)
				packets.WritePacket(conn, &packets.Publish{Topic: []byte(dps.ResponseTopic(200, req.RID, -1)), Payload: []byte(body)})
			}
		case *packets.Disconnect:
			return
		}
	}
}
