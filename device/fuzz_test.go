package device

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/packets"
)

// FuzzResponse feeds arbitrary topics and bodies to the response matcher and
// body parser: no panic, and a match always echoes the $rid asked for.
func FuzzResponse(f *testing.F) {
	f.Add("$dps/registrations/res/202/?$rid=1&retry-after=3", []byte(assigningOp), "1")
	f.Add("$dps/registrations/res/200/?$rid=7", []byte(assignedOp), "7")
	f.Add("$dps/registrations/res/401/?$rid=2", []byte(`{"errorCode":401002,"message":"x"}`), "2")
	f.Add("$dps/registrations/res/429/?Retry-After=32&$rid=9", []byte(""), "9")
	f.Add("$dps/registrations/res/202/?$rid=1", []byte(`{"status":7}`), "1")
	f.Fuzz(func(t *testing.T, topic string, body []byte, rid string) {
		r, ok := matchResponse(&packets.Publish{Topic: []byte(topic), Payload: body}, rid)
		if !ok {
			return
		}
		if r.RID != rid {
			t.Fatalf("matched $rid %q for %q", r.RID, rid)
		}
		if err := parseBody(r); err == nil && r.Status < 300 && r.Operation == nil {
			t.Fatal("2xx answer parsed without an operation")
		}
	})
}

// FuzzRedactPassword: whatever the token, each sig value is replaced by the
// marker and every other field is shown as it was.
func FuzzRedactPassword(f *testing.F) {
	f.Add("SharedAccessSignature sr=a%2fregistrations%2fb&sig=SECRETSIG&se=1&skn=registration")
	f.Add("SharedAccessSignature SIG=SECRETSIG&sr=x")
	f.Add("SharedAccessSignature sig=SECRETSIG&sig=SECRETSIG")
	f.Add("plain-password")
	f.Fuzz(func(t *testing.T, pw string) {
		out := redactPassword([]byte(pw))
		if !strings.HasPrefix(pw, dps.SASPrefix) {
			if want := fmt.Sprintf("[redacted %d bytes]", len(pw)); out != want {
				t.Fatalf("non-SAS password shown as %q, want %q", out, want)
			}
			return
		}
		// The output is the input field by field: a sig field keeps its
		// key and carries only the marker, every other field is unchanged,
		// and no field is lost or added. Counting where a sig value
		// recurs in the output cannot work: the value may straddle a
		// field boundary ("SharedAccessSignature SIG= S" puts " S" in
		// the prefix and the key).
		if !strings.HasPrefix(out, dps.SASPrefix) {
			t.Fatalf("SAS password shown as %q", out)
		}
		in := strings.Split(pw[len(dps.SASPrefix):], "&")
		got := strings.Split(out[len(dps.SASPrefix):], "&")
		if len(got) != len(in) {
			t.Fatalf("%d fields in %q, want %d as in the token", len(got), out, len(in))
		}
		for i, f := range in {
			k, _, ok := strings.Cut(f, "=")
			want := f
			if ok && strings.EqualFold(k, "sig") {
				want = k + "=[redacted]"
			}
			if got[i] != want {
				t.Fatalf("field %d of %q is %q, want %q", i, out, got[i], want)
			}
		}
		// Whatever the parser takes for the signature is gone: read the
		// output the way a verifier does.
		if in, err := dps.ParseSASToken(pw); err == nil {
			if o, err := dps.ParseSASToken(out); err == nil && o.Signature == in.Signature {
				t.Fatalf("the parser still reads sig %q from %q", in.Signature, out)
			}
		}
	})
}

// FuzzServiceBytes plays arbitrary bytes as the service's stream after a
// CONNACK: Provision must end (with a result or an error), never panic or
// hang.
func FuzzServiceBytes(f *testing.F) {
	ok := func(ps ...packets.Packet) []byte {
		var b []byte
		for _, p := range ps {
			b, _ = p.Append(b)
		}
		return b
	}
	f.Add(ok(&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}},
		&packets.Publish{Topic: []byte(dps.ResponseTopic(200, "1", -1)), Payload: []byte(assignedOp)}))
	f.Add(ok(&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{1}},
		&packets.Publish{QoS: 1, PacketID: 5, Topic: []byte(dps.ResponseTopic(202, "1", 0)), Payload: []byte(assigningOp)},
		&packets.Publish{Topic: []byte(dps.ResponseTopic(202, "2", 0)), Payload: []byte(assigningReg)}))
	f.Add(ok(&packets.Suback{PacketID: 1, ReturnCodes: []packets.SubackCode{0x80}}))
	f.Add([]byte{0x90, 0x03, 0x00, 0x01, 0x01, 0x30, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Closing right after the stream would race the client's own
			// writes (its SUBSCRIBE, its register) and end most inputs at
			// "closed pipe" before they reach the flow. The service closes
			// once the client has been quiet for a moment instead: it has
			// acted on everything it was sent and waits for more.
			clientGone, active := make(chan struct{}), make(chan struct{}, 1)
			go func() {
				defer close(clientGone)
				buf := make([]byte, 4096)
				for {
					if _, err := server.Read(buf); err != nil {
						return
					}
					select {
					case active <- struct{}{}:
					default:
					}
				}
			}()
			server.SetWriteDeadline(time.Now().Add(2 * time.Second))
			packets.WritePacket(server, &packets.Connack{})
			server.Write(stream)
			const quiet = 3 * time.Millisecond
			idle := time.NewTimer(quiet)
			defer idle.Stop()
		wait:
			for range 1000 {
				select {
				case <-clientGone:
					break wait
				case <-active:
					idle.Reset(quiet)
				case <-idle.C:
					break wait
				}
			}
			server.Close()
			<-clientGone
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		clock := newFakeClock()
		cfg := Config{
			IDScope: "0ne1", RegistrationID: "r", SymmetricKey: testKey,
			DialFunc:        func(context.Context) (net.Conn, error) { return client, nil },
			Now:             clock.Now,
			Sleep:           clock.Sleep,
			MaxPolls:        5,
			ResponseTimeout: time.Second,
		}
		res, err := Provision(ctx, cfg)
		client.Close()
		<-done
		if ctx.Err() != nil {
			t.Fatalf("Provision hung: %v", err)
		}
		if err == nil && (res == nil || res.Status != dps.StatusAssigned) {
			t.Fatalf("nil error without an assignment: %+v", res)
		}
	})
}
