package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/dps-conform/dps-conform/internal/cli"
)

// TestTraceCheckRules: --check judges field captures with the service rules
// of the suite. The committed violations capture has a QoS 2 grant and a
// device that closes right after a 401; the conformant flow has none.
func TestTraceCheckRules(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"trace", "--check", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			"! DPS-SUB-002 MUST conversation 1, frame 10: expected SUBACK granting 1; actual: asked QoS 2, SUBACK id 1 granting [0x02]\n",
			// The device closes 40 ms after the 401: too soon to say the
			// server would not have (RuleEnv.CloseGrace), so no DPS-AUTH-007.
			"1 findings of the service rules (1 MUST), profile dps-2019\n",
		}},
		{[]string{"trace", "--check", "--keylog", "../../testdata/pcaps/register-tls.keylog", "../../testdata/pcaps/register-tls.pcapng"}, cli.ExitConformant, []string{
			"0 findings of the service rules (0 MUST), profile dps-2019\n",
		}},
		{[]string{"trace", "--check", "--format", "json", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			`{"type":"finding","level":"MUST","id":"DPS-SUB-002","conversation":1,"frame":10,`,
		}},
		{[]string{"trace", "--check", "--profile", "dps-2030", "../../testdata/pcaps/violations.pcapng"}, cli.ExitUsage, nil},
		{[]string{"trace", "--check", "--role", "broker", "../../testdata/pcaps/violations.pcapng"}, cli.ExitUsage, nil},
		// The same capture judged as a device: the ?rid= typo, the poll
		// before retry-after, the retry after 401.
		{[]string{"trace", "--check", "--role", "device", "../../testdata/pcaps/violations.pcapng"}, cli.ExitNonConformant, []string{
			"! DPS-DEV-011 MUST", "! DPS-DEV-014 MUST", "findings of the device rules",
		}},
	} {
		var stdout, stderr bytes.Buffer
		code := cli.Main(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", tc.args, code, tc.code, stderr.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tc.args, w, stdout.String())
			}
		}
	}
}
