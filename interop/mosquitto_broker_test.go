package interop

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/emulator/emulatortest"
	"github.com/dps-conform/dps-conform/transport"
)

// freePort returns a loopback port that was free a moment ago: mosquitto
// takes its port from its configuration file, so the test picks one.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// startMosquitto runs the broker with interop/mosquitto/<conf> after
// replacing the placeholders, and waits (bounded) until it accepts TCP.
func startMosquitto(t *testing.T, conf string, vars map[string]string) int {
	t.Helper()
	bin := lookPeer(t, "mosquitto", "apt-get install mosquitto")
	tmpl, err := os.ReadFile(filepath.Join("mosquitto", conf))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	text := strings.ReplaceAll(string(tmpl), "{{PORT}}", strconv.Itoa(port))
	for k, v := range vars {
		text = strings.ReplaceAll(text, "{{"+k+"}}", v)
	}
	if strings.Contains(text, "{{") {
		t.Fatalf("%s: placeholder left after substitution:\n%s", conf, text)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, conf)
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out := startPeer(t, bin, "-c", file)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on 127.0.0.1:%d within 10 s: %v\n%s", port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMosquittoBrokerIsNotDPS points the device client at a real MQTT
// broker that is not DPS. mosquitto accepts the CONNECT, grants the
// subscription and acknowledges the register PUBLISH, but nobody answers
// it: Provision must fail with ErrTimeout within its response timeout,
// never report an assignment.
func TestMosquittoBrokerIsNotDPS(t *testing.T) {
	certFile, keyFile, roots := mosquittoTLSFiles(t)

	tests := []struct {
		name   string
		conf   string
		vars   map[string]string
		scheme string
	}{
		{"plain", "plain.conf", nil, "mqtt"},
		{"tls", "tls.conf", map[string]string{"CERTFILE": certFile, "KEYFILE": keyFile}, "mqtts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := startMosquitto(t, tt.conf, tt.vars)
			var (
				mu     sync.Mutex
				events []string
			)
			cfg := device.Config{
				Target:          transport.Target{Scheme: tt.scheme, Host: "127.0.0.1", Port: port},
				Dial:            transport.DialOptions{TLSConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}},
				IDScope:         emulatortest.IDScope,
				RegistrationID:  emulatortest.SymDeviceID,
				SymmetricKey:    emulatortest.SymDeviceKey,
				ResponseTimeout: 2 * time.Second,
				Trace: func(ev device.Event) {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, ev.String())
				},
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := device.Provision(ctx, cfg)
			if err == nil {
				t.Fatalf("Provision against mosquitto succeeded: %+v", res)
			}
			if !errors.Is(err, device.ErrTimeout) {
				t.Fatalf("Provision error %v, want one wrapping device.ErrTimeout", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("Provision outlived its response timeout: ended only with the test context (%v)", err)
			}
			if res != nil && (res.Status != "" || res.RegistrationState != nil || res.OperationID != "") {
				t.Errorf("Provision reported a registration with its error: %+v", res)
			}
			// The failure is a DPS-level one: mosquitto did everything
			// MQTT asks (CONNACK 0, SUBACK granted, PUBACK).
			mu.Lock()
			trace := strings.Join(events, "\n")
			mu.Unlock()
			for _, w := range []string{"CONNACK", "SUBACK", "PUBACK"} {
				if !strings.Contains(trace, w) {
					t.Errorf("trace lacks %s; mosquitto should have sent it:\n%s", w, trace)
				}
			}
			if strings.Contains(err.Error(), "sig=") {
				t.Errorf("error leaks the SAS signature: %v", err)
			}
			t.Logf("Provision against mosquitto: %v", err)
		})
	}
}
