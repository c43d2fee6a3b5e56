package tracer

import (
	"errors"
	"time"

	"github.com/dps-conform/dps-conform/packets"
	"github.com/dps-conform/dps-conform/tracer/tlstrace"
	"github.com/dps-conform/dps-conform/tracer/wstrace"
)

// looksLikeTLS adapts tlstrace.LooksLikeTLS to the sniffers' (yes, more)
// shape: more while b is too short to hold a record header.
func looksLikeTLS(b []byte) (yes, more bool) {
	if len(b) == 0 {
		return false, true
	}
	if b[0] != 0x16 {
		return false, false
	}
	if len(b) < 5 {
		return false, true
	}
	return tlstrace.LooksLikeTLS(b), false
}

// upper is the stack of layers above TCP of one flow: TLS (optional),
// WebSocket (optional), MQTT.
type upper struct {
	f   *tcpFlow
	c   *Conversation
	tls *tlstrace.Stream
	ws  *wstrace.Stream
	mq  [2]mqttStream

	// Inside TLS the first client plaintext decides between WebSocket and
	// MQTT; plaintext is held until then.
	innerDecided bool
	notMQTT      bool // the decrypted stream is not MQTT: drop the conversation
	hold         [2][]byte
	holdMeta     [2]struct {
		frame int
		ts    time.Time
	}
}

func newUpper(f *tcpFlow, c *Conversation, k flowKind) *upper {
	u := &upper{f: f, c: c}
	switch k {
	case kindTLS:
		c.Transport = "mqtts"
		u.tls = tlstrace.NewStream(f.d.keyLog)
		c.TLS = u.tls.Facts()
	case kindWS:
		c.Transport = "ws"
		u.ws = wstrace.NewStream()
		c.WS = u.ws.Facts()
	default:
		c.Transport = "mqtt"
	}
	for d := range u.mq {
		u.mq[d] = mqttStream{dir: Direction(d), conv: c, d: f.d, max: f.max, syncing: f.midStream, syncDefect: f.midStream}
	}
	return u
}

// layerProblem records the non-fatal errors of the TLS or WebSocket layer:
// every one of them when the layer joined several (errors.Join).
func (u *upper) layerProblem(d Direction, frame int, layer string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			u.layerProblem(d, frame, layer, e)
		}
		return
	}
	p := Problem{Dir: d, Frame: frame, Clause: layer, Msg: err.Error()}
	var te *tlstrace.Error
	var we *wstrace.Error
	switch {
	case errors.As(err, &te):
		p.Offset, p.Msg = te.Offset, te.Msg
		if te.Undecrypted {
			p.Clause = ClauseUndecrypted
		}
	case errors.As(err, &we):
		p.Offset, p.Msg = we.Offset, we.Msg
	}
	u.c.Problems = append(u.c.Problems, p)
}

func (u *upper) data(d Direction, b []byte, frame int, ts time.Time) {
	if u.tls == nil {
		u.inner(d, b, frame, ts)
		return
	}
	pt, err := u.tls.Feed(tlstrace.Dir(d), b)
	if err != nil {
		u.layerProblem(d, frame, "tls", err)
	}
	if len(pt) == 0 {
		return
	}
	if u.innerDecided {
		if !u.notMQTT {
			u.inner(d, pt, frame, ts)
		}
		return
	}
	u.hold[d] = append(u.hold[d], pt...)
	u.holdMeta[d].frame, u.holdMeta[d].ts = frame, ts
	u.decideInner(false)
}

// decideInner sniffs the first client plaintext inside TLS.
func (u *upper) decideInner(final bool) {
	c2s := u.hold[ClientToServer]
	ws, more := looksLikeHTTPUpgrade(c2s)
	if !final && len(u.hold[ServerToClient]) < maxSniff &&
		(more || ws && !wstrace.LooksLikeUpgrade(c2s) && len(c2s) < 256) {
		return // wait for the request line
	}
	mqtt, moreMQTT := startsWithMQTT(c2s)
	if !final && !ws && moreMQTT && len(c2s) < maxSniff && len(u.hold[ServerToClient]) < maxSniff {
		return // wait for the rest of the first packet
	}
	u.innerDecided = true
	if !ws && len(c2s) > 0 {
		if !mqtt {
			// Decrypted, but neither MQTT nor WebSocket (HTTPS, say):
			// not a conversation of ours.
			u.notMQTT = true
			u.hold = [2][]byte{}
			return
		}
	}
	if ws {
		u.c.Transport = "wss"
		u.ws = wstrace.NewStream()
		u.c.WS = u.ws.Facts()
	}
	for _, d := range []Direction{ClientToServer, ServerToClient} {
		if len(u.hold[d]) > 0 {
			u.inner(d, u.hold[d], u.holdMeta[d].frame, u.holdMeta[d].ts)
		}
	}
	u.hold = [2][]byte{}
}

// startsWithMQTT reports whether b, a client's first plaintext inside
// TLS, starts with an MQTT packet: a CONNECT, or any other packet that
// decodes strictly (a device that sends PINGREQ first breaks
// MQTT-3.1.0-1: its transcript must show that, not drop the conversation
// as HTTPS). No HTTP request decodes: "GET", "HEAD", "DELETE" and "OPTIONS"
// start with reserved flags of PUBACK, and "POST", "PUT", "PATCH" and
// HTTP/2's "PRI" a PUBREC whose length is not 2. more: b ends inside the
// first packet.
func startsWithMQTT(b []byte) (yes, more bool) {
	if yes, more := looksLikeConnect(b); yes || more {
		return yes, more
	}
	_, _, err := packets.Decode(b, packets.DecodeOptions{})
	if errors.Is(err, packets.ErrShortBuffer) {
		return false, true
	}
	return err == nil, false
}

// inner feeds bytes above TLS: through WebSocket if present, then MQTT.
func (u *upper) inner(d Direction, b []byte, frame int, ts time.Time) {
	if u.ws != nil {
		p, err := u.ws.Feed(wstrace.Dir(d), b)
		if err != nil {
			u.layerProblem(d, frame, "ws", err)
		}
		if len(p) == 0 {
			return
		}
		b = p
	}
	u.mq[d].feed(b, frame, ts)
}

// gap tells the layers that n bytes of direction d were lost; frame is
// the frame that revealed the gap (Gap.Frame), which the problems it causes
// above TCP carry.
func (u *upper) gap(d Direction, n int, frame int) {
	switch {
	case u.tls != nil:
		u.tls.Gap(tlstrace.Dir(d), n)
		if u.innerDecided {
			u.mq[d].gap(0, frame)
		}
	case u.ws != nil:
		u.ws.Gap(wstrace.Dir(d), n)
		u.mq[d].gap(0, frame)
	default:
		u.mq[d].gap(n, frame)
	}
}

func (u *upper) end(frame int) {
	if u.tls != nil && !u.innerDecided {
		u.decideInner(true)
	}
	for d := range u.mq {
		u.mq[d].end(frame, u.f.closed[d])
	}
	if u.tls != nil {
		u.c.TLS = u.tls.Facts()
	}
	if u.ws != nil {
		u.c.WS = u.ws.Facts()
	}
}
