package cli

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dps-conform/dps-conform/device"
	"github.com/dps-conform/dps-conform/internal/testnet"
	"github.com/dps-conform/dps-conform/packets"
)

// TestProvisionUnreachable: a closed loopback port gives exit 3 and one line.
func TestProvisionUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"provision", "--target", "mqtts://" + addr,
		"--id-scope", "0ne1", "--registration-id", "r1", "--symmetric-key", vectorKey, "--timeout", "10s"}, &stdout, &stderr)
	if code != ExitTargetUnreachable {
		t.Errorf("exit %d, want %d; stderr %q", code, ExitTargetUnreachable, stderr.String())
	}
	if stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "dps-conform provision: ") {
		t.Errorf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), vectorKey) {
		t.Error("key in stderr")
	}
}

// TestProvisionSilentTarget: a target that accepts TCP and says nothing
// (a plain MQTT broker that never answers DPS, a wedged server) is exit 3
// with one line that names the target; it said only "waiting for
// CONNACK: context deadline exceeded".
func TestProvisionSilentTarget(t *testing.T) {
	target := "mqtt://" + testnet.Silent(t)
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"provision", "--target", target,
		"--id-scope", "0ne1", "--registration-id", "r1", "--symmetric-key", vectorKey, "--timeout", "300ms"}, &stdout, &stderr)
	want := "dps-conform provision: timed out (--timeout): target " + target + ": device: waiting for CONNACK"
	if code != ExitTargetUnreachable || stdout.Len() != 0 || !strings.HasPrefix(stderr.String(), want) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 3 and one line starting %q", code, stdout.String(), stderr.String(), want)
	}
}

// TestProvisionSilentTLSPort: a TLS target that accepts TCP and never
// answers the ClientHello ends after device.DefaultHandshakeTimeout with
// exit 3 and one line naming the target and what went unanswered; it
// waited out the whole --timeout (2 min by default).
func TestProvisionSilentTLSPort(t *testing.T) {
	t.Parallel()
	addr := testnet.Silent(t) // closed after the parallel subtests
	for _, target := range []string{"mqtts://" + addr, "wss://" + addr + "/$iothub/websocket"} {
		for _, bound := range []string{"", "300ms"} {
			t.Run(target[:strings.Index(target, ":")]+"/"+cmp.Or(bound, "default"), func(t *testing.T) {
				t.Parallel()
				var stdout, stderr bytes.Buffer
				args := []string{"provision", "--target", target,
					"--id-scope", "0ne1", "--registration-id", "r1", "--symmetric-key", vectorKey, "--timeout", "30s"}
				within := device.DefaultHandshakeTimeout.String()
				if bound != "" {
					args, within = append(args, "--handshake-timeout", bound), bound
				}
				code := Main(context.Background(), args, &stdout, &stderr)
				want := "dps-conform provision: device: transport: dial " + target + ": tls: no answer to a ClientHello within " + within + " (is it a TLS port?)\n"
				if code != ExitTargetUnreachable || stdout.Len() != 0 || stderr.String() != want {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit 3 and %q", code, stdout.String(), stderr.String(), want)
				}
			})
		}
	}
}

// TestProvisionErrorClassification maps every device error class to its
// exit status.
func TestProvisionErrorClassification(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"assigned", nil, ExitConformant},
		{"connack refused", &device.ConnectRefusedError{ReturnCode: packets.ConnackRefusedNotAuthorized}, ExitNonConformant},
		{"suback refused", fmt.Errorf("x: %w", &device.SubscribeRefusedError{Code: packets.SubackFailure}), ExitNonConformant},
		{"401", &device.StatusError{Status: 401}, ExitNonConformant},
		{"429 exhausted", fmt.Errorf("%w: 5 attempts: %w", device.ErrLimit, &device.StatusError{Status: 429}), ExitNonConformant},
		{"failed", &device.AssignmentError{Status: "failed"}, ExitNonConformant},
		{"malformed", &device.MalformedResponseError{Topic: "t", Msg: "m"}, ExitNonConformant},
		{"closed", fmt.Errorf("waiting: %w", device.ErrConnectionClosed), ExitTargetUnreachable},
		{"timeout", device.ErrTimeout, ExitTargetUnreachable},
		{"deadline", context.DeadlineExceeded, ExitTargetUnreachable},
		{"limit", fmt.Errorf("%w: retry-after", device.ErrLimit), ExitTargetUnreachable},
		{"429 retry-after beyond --timeout", fmt.Errorf("%w: %w: %w", device.ErrBeyondDeadline, device.ErrLimit, &device.StatusError{Status: 429}), ExitTargetUnreachable},
		{"config", fmt.Errorf("%w: x", device.ErrConfig), ExitUsage},
		{"other", errors.New("dial tcp: refused"), ExitTargetUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := provisionError(tc.err)
			if got := ExitCode(err); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
			if tc.err != nil && !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("message %q lost %q", err, tc.err)
			}
		})
	}
}

var _ = time.Second

// TestProvisionUsageErrors: flags whose values would make the service
// refuse the device (and so read as its verdict) are usage errors (exit 2)
// naming the flag, found before anything is dialled.
func TestProvisionUsageErrors(t *testing.T) {
	base := []string{"provision", "--target", "mqtts://127.0.0.1:1", "--symmetric-key", "YWJj"}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"id scope with a slash", []string{"--id-scope", "x/y", "--registration-id", "dev-1"}, `--id-scope "x/y": '/' at byte 1`},
		{"bad registration id", []string{"--id-scope", "0ne00000A0A", "--registration-id", "dev 1"}, "--registration-id: "},
		{"no id scope", []string{"--registration-id", "dev-1"}, "--id-scope is required"},
		{"no connection attempt", []string{"--id-scope", "0ne00000A0A", "--registration-id", "dev-1", "--connect-attempts", "0"}, "--connect-attempts 0: want 1 or more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Main(context.Background(), append(slices.Clone(base), tc.args...), &stdout, &stderr)
			if code != ExitUsage || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr lacks %q:\n%s", code, ExitUsage, tc.want, stderr.String())
			}
		})
	}
}
