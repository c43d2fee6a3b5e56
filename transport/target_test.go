package transport

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// longName is a host name of 253 bytes, the most DNS allows.
var longName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		want Target
		str  string // canonical String()
	}{
		{"mqtts://h:8883", Target{Scheme: "mqtts", Host: "h", Port: 8883}, "mqtts://h:8883"},
		{"h:8883", Target{Scheme: "mqtts", Host: "h", Port: 8883}, "mqtts://h:8883"},
		{"global.azure-devices-provisioning.net", Target{Scheme: "mqtts", Host: "global.azure-devices-provisioning.net", Port: 8883}, "mqtts://global.azure-devices-provisioning.net:8883"},
		{"mqtts://h", Target{Scheme: "mqtts", Host: "h", Port: 8883}, "mqtts://h:8883"},
		{"mqtts://h/", Target{Scheme: "mqtts", Host: "h", Port: 8883}, "mqtts://h:8883"},
		{"MQTTS://H:1", Target{Scheme: "mqtts", Host: "H", Port: 1}, "mqtts://H:1"},
		{"mqtt://127.0.0.1", Target{Scheme: "mqtt", Host: "127.0.0.1", Port: 1883}, "mqtt://127.0.0.1:1883"},
		{"wss://h/$iothub/websocket", Target{Scheme: "wss", Host: "h", Port: 443, Path: "/$iothub/websocket"}, "wss://h:443/$iothub/websocket"},
		{"wss://h", Target{Scheme: "wss", Host: "h", Port: 443, Path: "/$iothub/websocket"}, "wss://h:443/$iothub/websocket"},
		{"wss://h:8443/", Target{Scheme: "wss", Host: "h", Port: 8443, Path: "/"}, "wss://h:8443/"},
		{"ws://h/mqtt", Target{Scheme: "ws", Host: "h", Port: 80, Path: "/mqtt"}, "ws://h:80/mqtt"},
		{"[::1]:8883", Target{Scheme: "mqtts", Host: "::1", Port: 8883}, "mqtts://[::1]:8883"},
		{"[::1]", Target{Scheme: "mqtts", Host: "::1", Port: 8883}, "mqtts://[::1]:8883"},
		{"wss://[2001:db8::1]:9443/x", Target{Scheme: "wss", Host: "2001:db8::1", Port: 9443, Path: "/x"}, "wss://[2001:db8::1]:9443/x"},
		{"mqtts://my_host.example.:65535", Target{Scheme: "mqtts", Host: "my_host.example.", Port: 65535}, "mqtts://my_host.example.:65535"},
		// 253 bytes, the longest name, plus the root's dot.
		{"mqtts://" + longName + ".", Target{Scheme: "mqtts", Host: longName + ".", Port: 8883}, "mqtts://" + longName + ".:8883"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if err != nil {
				t.Fatalf("ParseTarget(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseTarget(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
			again, err := ParseTarget(got.String())
			if err != nil || again != got {
				t.Errorf("ParseTarget(String()) = %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

func TestParseTargetErrors(t *testing.T) {
	tests := []struct {
		in, part, msg string
	}{
		{"", "target", "empty"},
		{" h:8883", "target", "white space"},
		{"h :8883", "target", "byte 1"},
		{"http://h", "scheme", `"http" is not one of`},
		{"://h", "scheme", `"" is not one of`},
		{"mqtts:/h", "scheme", "separator"},
		{"mqtts://", "host", "empty"},
		{"mqtts://:8883", "host", "empty host"},
		{"mqtts://h:", "host", "empty port"},
		{"mqtts://h:0", "port", `"0" is not`},
		{"mqtts://h:65536", "port", "65536"},
		{"mqtts://h:-1", "port", "-1"},
		{"mqtts://h:+1", "port", "+1"},
		{"mqtts://h:x", "port", `"x"`},
		{"::1", "host", "brackets"},
		{"::1:8883", "host", "brackets"},
		{"[::1", "host", "missing ']'"},
		{"[::1]x", "host", "after ']'"},
		{"[::1]:", "host", "empty port"},
		{"[1.2.3.4]:1", "host", "not an IPv6"},
		{"[fe80::1%eth0]:1", "host", "not an IPv6"},
		{"mqtts://u@h", "host", "user information"},
		{"mqtts://h/x", "path", "takes no path"},
		{"wss://h/x?y=1", "path", "query"},
		{"wss://h/x#f", "path", "fragment"},
		{"mqtts://a..b", "host", "label 2"},
		{"mqtts://a/b:c", "path", "takes no path"},
		{"mqtts://" + strings.Repeat("a", 64) + ".b", "host", "longer than 63"},
		{"mqtts://" + strings.Repeat("a.", 127) + "bb", "host", "more than 253"},
		{"mqtts://h!", "host", `'!'`},
		{"mqtts://-bad-.com", "host", "label 1 of \"-bad-.com\" begins or ends with '-'"},
		{"mqtts://a.b-", "host", "label 2"},
		{"mqtts://256.1.1.1", "host", "not a valid IPv4 address"},
		{"mqtts://10.0.1:8883", "host", "not a valid IPv4 address"},
		{"wss://h/%zz", "path", `"/%zz" is not a valid URL path`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if err == nil {
				t.Fatalf("ParseTarget(%q) = %+v, want error", tt.in, got)
			}
			if !errors.Is(err, ErrInvalidTarget) {
				t.Errorf("error %v does not wrap ErrInvalidTarget", err)
			}
			var te *TargetError
			if !errors.As(err, &te) {
				t.Fatalf("error %T is not *TargetError", err)
			}
			if te.Part != tt.part || te.Input != tt.in {
				t.Errorf("Part, Input = %q, %q; want %q, %q (%v)", te.Part, te.Input, tt.part, tt.in, err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
		})
	}
}

func TestTargetAddrURL(t *testing.T) {
	tests := []struct {
		t         Target
		addr, url string
		tls, isWS bool
	}{
		{Target{Scheme: "mqtts", Host: "h", Port: 8883}, "h:8883", "", true, false},
		{Target{Scheme: "mqtt", Host: "::1", Port: 1883}, "[::1]:1883", "", false, false},
		{Target{Scheme: "wss", Host: "::1", Port: 443, Path: "/"}, "[::1]:443", "wss://[::1]:443/", true, true},
		{Target{Scheme: "ws", Host: "h", Port: 80}, "h:80", "ws://h:80/$iothub/websocket", false, true},
	}
	for _, tt := range tests {
		if got := tt.t.Addr(); got != tt.addr {
			t.Errorf("%+v.Addr() = %q, want %q", tt.t, got, tt.addr)
		}
		if got := tt.t.URL(); got != tt.url {
			t.Errorf("%+v.URL() = %q, want %q", tt.t, got, tt.url)
		}
		if tt.t.IsTLS() != tt.tls || tt.t.IsWebSocket() != tt.isWS {
			t.Errorf("%+v: IsTLS, IsWebSocket = %v, %v", tt.t, tt.t.IsTLS(), tt.t.IsWebSocket())
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"mqtts://h:8883", "h:8883", "wss://h/$iothub/websocket", "[::1]:8883",
		"ws://[2001:db8::1]/mqtt", "mqtt://127.0.0.1:1", "::1", "http://x", "mqtts://h:99999", "wss://h/a?b#c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseTarget(s)
		if err != nil {
			var te *TargetError
			if !errors.As(err, &te) || !errors.Is(err, ErrInvalidTarget) || te.Part == "" {
				t.Fatalf("ParseTarget(%q): untyped error %v", s, err)
			}
			return
		}
		if tg.Port < 1 || tg.Port > 65535 || tg.Host == "" || DefaultPort(tg.Scheme) == 0 {
			t.Fatalf("ParseTarget(%q) = %+v: invalid result", s, tg)
		}
		if tg.IsWebSocket() != (tg.Path != "") {
			t.Fatalf("ParseTarget(%q) = %+v: path only for ws", s, tg)
		}
		again, err := ParseTarget(tg.String())
		if err != nil || again != tg {
			t.Fatalf("round trip %q -> %q -> %+v, %v; want %+v", s, tg.String(), again, err, tg)
		}
	})
}

func ExampleParseTarget() {
	for _, s := range []string{"global.azure-devices-provisioning.net", "wss://[::1]:8443", "mqtts://h:0"} {
		t, err := ParseTarget(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(t, t.Addr())
	}
	// Output:
	// mqtts://global.azure-devices-provisioning.net:8883 global.azure-devices-provisioning.net:8883
	// wss://[::1]:8443/$iothub/websocket [::1]:8443
	// transport: invalid target "mqtts://h:0": port: "0" is not a decimal number in 1..65535
}
