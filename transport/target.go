package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Schemes understood by ParseTarget and Dial.
const (
	SchemeMQTTS = "mqtts" // MQTT over TLS, default port 8883
	SchemeWSS   = "wss"   // MQTT over WebSocket over TLS, default port 443
	SchemeMQTT  = "mqtt"  // MQTT over plain TCP, default port 1883
	SchemeWS    = "ws"    // MQTT over plain WebSocket, default port 80
)

// DefaultWSPath is the WebSocket path used when a ws/wss target names none:
// the path the Azure IoT SDKs request (DPS-PROTOCOL.md §7).
const DefaultWSPath = "/$iothub/websocket"

// ErrInvalidTarget is the sentinel every *TargetError unwraps to.
var ErrInvalidTarget = errors.New("invalid target")

// TargetError reports why ParseTarget refused its input. Part names the
// offending component: "scheme", "host", "port", "path" or "target".
type TargetError struct {
	Input string // the string given to ParseTarget
	Part  string // which part is wrong
	Msg   string // what is wrong with it
}

var _ error = (*TargetError)(nil)

// Error implements error.
func (e *TargetError) Error() string {
	return fmt.Sprintf("transport: invalid target %q: %s: %s", e.Input, e.Part, e.Msg)
}

// Unwrap returns ErrInvalidTarget.
func (e *TargetError) Unwrap() error { return ErrInvalidTarget }

// Target is where a peer listens: a scheme, a host, a port and, for WebSocket
// schemes, a request path.
type Target struct {
	Scheme string // "mqtts", "wss", "mqtt" or "ws"
	Host   string // DNS name or IP literal, without brackets
	Port   int
	Path   string // ws and wss only; default DefaultWSPath
}

// DefaultPort returns the port a scheme uses when the target names none, or 0
// for an unknown scheme.
func DefaultPort(scheme string) int {
	switch scheme {
	case SchemeMQTTS:
		return 8883
	case SchemeWSS:
		return 443
	case SchemeMQTT:
		return 1883
	case SchemeWS:
		return 80
	}
	return 0
}

// IsWebSocket reports whether the target's scheme is ws or wss.
func (t Target) IsWebSocket() bool { return t.Scheme == SchemeWS || t.Scheme == SchemeWSS }

// IsTLS reports whether the target's scheme is mqtts or wss.
func (t Target) IsTLS() bool { return t.Scheme == SchemeMQTTS || t.Scheme == SchemeWSS }

// ParseTarget parses "scheme://host[:port][/path]" or a bare "host[:port]"
// (which means mqtts). Schemes are case-insensitive; default ports are mqtts
// 8883, wss 443, mqtt 1883, ws 80. IPv6 literals go in brackets
// ("[::1]:8883"). A path is allowed only for ws and wss and defaults to
// DefaultWSPath there. Errors are *TargetError naming the wrong part.
func ParseTarget(s string) (Target, error) {
	fail := func(part, format string, args ...any) (Target, error) {
		return Target{}, &TargetError{Input: s, Part: part, Msg: fmt.Sprintf(format, args...)}
	}
	if s == "" {
		return fail("target", "empty")
	}
	if strings.TrimSpace(s) != s {
		return fail("target", "leading or trailing white space")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c == 0x7f {
			return fail("target", "control character or space at byte %d", i)
		}
	}
	t := Target{Scheme: SchemeMQTTS}
	rest := s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme := strings.ToLower(s[:i])
		if DefaultPort(scheme) == 0 {
			return fail("scheme", "%q is not one of mqtts, wss, mqtt, ws", s[:i])
		}
		t.Scheme = scheme
		rest = s[i+3:]
	} else if strings.Contains(s, ":/") {
		return fail("scheme", "malformed scheme separator (want \"scheme://\")")
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		return fail("path", "query or fragment %q not supported", rest[i:])
	}
	hostport, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		hostport, path = rest[:i], rest[i:]
	}
	if strings.Contains(hostport, "@") {
		return fail("host", "user information is not supported")
	}
	host, portStr, err := splitHostPort(hostport)
	if err != nil {
		return fail("host", "%s", err)
	}
	if err := CheckHost(host); err != nil {
		return fail("host", "%s", err)
	}
	t.Host = host
	t.Port = DefaultPort(t.Scheme)
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 || portStr[0] == '+' || portStr[0] == '-' {
			return fail("port", "%q is not a decimal number in 1..65535", portStr)
		}
		t.Port = p
	}
	if t.IsWebSocket() {
		if path == "" {
			path = DefaultWSPath
		}
		// Now, not at the WebSocket stage of a dial.
		if _, err := url.PathUnescape(path); err != nil {
			return fail("path", "%q is not a valid URL path: %v", path, err)
		}
		t.Path = path
	} else if path != "" && path != "/" {
		return fail("path", "%q given, but scheme %s takes no path (only ws and wss do)", path, t.Scheme)
	}
	return t, nil
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port". The port
// is "" when absent.
func splitHostPort(hp string) (host, port string, err error) {
	if hp == "" {
		return "", "", errors.New("empty")
	}
	if hp[0] == '[' {
		end := strings.IndexByte(hp, ']')
		if end < 0 {
			return "", "", errors.New("missing ']' after IPv6 address")
		}
		host, after := hp[1:end], hp[end+1:]
		switch {
		case after == "":
		case after[0] == ':':
			port = after[1:]
			if port == "" {
				return "", "", errors.New("empty port after ':'")
			}
		default:
			return "", "", fmt.Errorf("unexpected %q after ']'", after)
		}
		a, perr := netip.ParseAddr(host)
		if perr != nil || !a.Is6() || a.Zone() != "" {
			return "", "", fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		return host, port, nil
	}
	switch strings.Count(hp, ":") {
	case 0:
		return hp, "", nil
	case 1:
		i := strings.IndexByte(hp, ':')
		if hp[i+1:] == "" {
			return "", "", errors.New("empty port after ':'")
		}
		return hp[:i], hp[i+1:], nil
	}
	return "", "", fmt.Errorf("%q has several ':'; put an IPv6 address in brackets, e.g. [::1]:8883", hp)
}

// CheckHost accepts IPv4/IPv6 literals (without brackets) and DNS names
// made of letters, digits, '-', '_' and '.', in labels of 1..63 bytes, 253
// bytes at most (not counting a final '.'): the host names ParseTarget
// takes, and the ones the CLI takes for an SNI or a certificate name.
func CheckHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	// The limit does not count the root's final dot (RFC 1035 §2.3.4 less
	// the length bytes).
	name := strings.TrimSuffix(h, ".")
	if len(name) > 253 {
		return fmt.Errorf("name is %d bytes long, more than 253", len(name))
	}
	for i, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %d of %q is empty or longer than 63 bytes", i+1, h)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("character %q not allowed in host name %q", c, h)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %d of %q begins or ends with '-'", i+1, h)
		}
	}
	// A name's last label is never all digits (RFC 3696 §2): this is an
	// IPv4 address mistyped (256.1.1.1, 10.0.1), not a name to look up.
	last := name[strings.LastIndexByte(name, '.')+1:]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("%q is not a valid IPv4 address, nor a host name (its last label is all digits)", h)
	}
	return nil
}

// String returns the canonical form "scheme://host:port[/path]", which
// ParseTarget parses back to the same Target (a WebSocket target's empty
// Path comes back as DefaultWSPath, which Dial uses for it).
func (t Target) String() string {
	s := t.Scheme + "://" + t.Addr()
	if t.IsWebSocket() {
		s += t.Path
	}
	return s
}

// Addr returns "host:port" (IPv6 in brackets) for net.Dial.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// URL returns "ws://host:port/path" or "wss://host:port/path" for WebSocket
// targets, and "" for the others. An empty Path means DefaultWSPath.
func (t Target) URL() string {
	if !t.IsWebSocket() {
		return ""
	}
	p := t.Path
	if p == "" {
		p = DefaultWSPath
	}
	return t.Scheme + "://" + t.Addr() + p
}
