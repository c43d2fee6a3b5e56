package dps

import (
	"errors"
	"strings"
	"testing"
)

func TestParseUsernameSDKForms(t *testing.T) {
	const base = "0neFEEDC0DE/registrations/myRegistrationId/api-version="
	tests := []struct {
		name        string
		in          string
		want        Username
		wantDecoded string
	}{
		{"docs (D-MQTT)", base + "2019-03-31",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", ""}, ""},
		{"EC raw user agent (test_az_iot_provisioning_client.c)", base + "2019-03-31&ClientVersion=c/1.2.3",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", "c/1.2.3"}, "c/1.2.3"},
		{"C 2021-06-01", base + "2021-06-01&ClientVersion=1.15.0",
			Username{"0neFEEDC0DE", "myRegistrationId", "2021-06-01", "1.15.0"}, "1.15.0"},
		{"Node encodeURIComponent", base + "2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.2",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", "azure-iot-provisioning-device%2F1.9.2"},
			"azure-iot-provisioning-device/1.9.2"},
		{"Python quote(ua, safe='')", base + "2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.13.1%283.11.4%3BLinux%206.5.0%3Bx86_64%29",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", "azure-iot-device-provisioning-py%2F2.13.1%283.11.4%3BLinux%206.5.0%3Bx86_64%29"},
			"azure-iot-device-provisioning-py/2.13.1(3.11.4;Linux 6.5.0;x86_64)"},
		{"Java api-version as ClientVersion", base + "2019-03-31&ClientVersion=2019-03-31",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", "2019-03-31"}, "2019-03-31"},
		{"EC CSR preview", base + "2025-07-01-preview",
			Username{"0neFEEDC0DE", "myRegistrationId", "2025-07-01-preview", ""}, ""},
		{"CS preview with escaped product info", base + "2021-11-01-preview&ClientVersion=Microsoft.Azure.Devices.Provisioning.Client%2F1.0%20%28.NET%29",
			Username{"0neFEEDC0DE", "myRegistrationId", "2021-11-01-preview", "Microsoft.Azure.Devices.Provisioning.Client%2F1.0%20%28.NET%29"},
			"Microsoft.Azure.Devices.Provisioning.Client/1.0 (.NET)"},
		{"plus kept in ClientVersion", base + "2019-03-31&ClientVersion=a+b",
			Username{"0neFEEDC0DE", "myRegistrationId", "2019-03-31", "a+b"}, "a+b"},
		{"id with all special characters", "0ne00055500/registrations/dev:1.2_3-x/api-version=2019-03-31",
			Username{"0ne00055500", "dev:1.2_3-x", "2019-03-31", ""}, ""},
		{"128-character id", "0ne/registrations/" + strings.Repeat("a", 128) + "/api-version=2019-03-31",
			Username{"0ne", strings.Repeat("a", 128), "2019-03-31", ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseUsername(tt.in)
			if err != nil {
				t.Fatalf("ParseUsername(%q) = %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseUsername(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want the input %q", s, tt.in)
			}
			dec, err := got.DecodedClientVersion()
			if err != nil || dec != tt.wantDecoded {
				t.Errorf("DecodedClientVersion() = %q, %v; want %q", dec, err, tt.wantDecoded)
			}
		})
	}
}

func TestParseUsernameErrors(t *testing.T) {
	const ok = "0ne/registrations/dev/api-version=2019-03-31"
	tests := []struct {
		in   string
		want string // full Error() text
	}{
		{"", "dps: username @0: empty"},
		{"0neFEEDC0DE", `dps: username @11: missing "/registrations/"`},
		{"/registrations/dev/api-version=2019-03-31", "dps: username @0: empty id scope"},
		{"0ne/devices/dev/api-version=2019-03-31", `dps: username @3: expected "/registrations/" after the id scope`},
		{"0ne/Registrations/dev/api-version=2019-03-31", `dps: username @3: expected "/registrations/" after the id scope`},
		{"0ne/registrations//api-version=2019-03-31", "dps: username @18: registration id: empty"},
		{"0ne/registrations/dev", `dps: username @21: missing "/api-version="`},
		{"0ne/registrations/", "dps: username @18: registration id: empty"},
		{"0ne/registrations/dev!/api-version=2019-03-31",
			`dps: username @21: registration id: invalid character '!' (U+0021); allowed: letters, digits, - . _ :`},
		{"0ne/registrations/dev%2f1/api-version=2019-03-31",
			`dps: username @21: registration id: invalid character '%' (U+0025); allowed: letters, digits, - . _ :`},
		{"0ne/registrations/dev/version=2019-03-31", "dps: username @22: api-version missing"},
		{"0ne/registrations/dev/Api-Version=2019-03-31", "dps: username @22: api-version missing"},
		{"0ne/registrations/dev/api-version=", "dps: username @34: empty api-version"},
		{"0ne/registrations/dev/api-version=&ClientVersion=1", "dps: username @34: empty api-version"},
		{"0ne/registrations/dev/api-version=2019 03", `dps: username @38: invalid character ' ' (U+0020) in api-version`},
		{"0ne/registrations/dev/api-version=2019-03-31/x", `dps: username @44: invalid character '/' (U+002F) in api-version`},
		{"0ne/registrations/dev/extra/api-version=2019-03-31", "dps: username @22: api-version missing"},
		{ok + "&", "dps: username @45: empty parameter"},
		{ok + "&&ClientVersion=1", "dps: username @45: empty parameter"},
		{ok + "&ClientVersion", `dps: username @45: parameter "ClientVersion" has no "="`},
		{ok + "&=1", "dps: username @45: parameter with empty name"},
		{ok + "&Foo=bar", `dps: username @45: unknown parameter "Foo"`},
		{ok + "&ClientVersion=a&ClientVersion=b", "dps: username @61: duplicate ClientVersion"},
	}
	for _, tt := range tests {
		_, err := ParseUsername(tt.in)
		if err == nil {
			t.Errorf("ParseUsername(%q) succeeded", tt.in)
			continue
		}
		if !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("ParseUsername(%q) = %v, not ErrInvalidUsername", tt.in, err)
		}
		if err.Error() != tt.want {
			t.Errorf("ParseUsername(%q)\n got %q\nwant %q", tt.in, err.Error(), tt.want)
		}
		// Offset points into Value, the whole username, also for an
		// error found in the registration id.
		var e *Error
		if !errors.As(err, &e) || e.Value != tt.in || e.Offset < 0 || e.Offset > len(e.Value) {
			t.Errorf("ParseUsername(%q) = %#v: want Value the whole username and Offset within it", tt.in, e)
		}
	}
}

func TestUsernameString(t *testing.T) {
	tests := []struct {
		u    Username
		want string
	}{
		{Username{IDScope: "0neFEEDC0DE", RegistrationID: "myRegistrationId"},
			"0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31"},
		{Username{IDScope: "0ne", RegistrationID: "d", APIVersion: "2021-06-01", ClientVersion: "1.15.0"},
			"0ne/registrations/d/api-version=2021-06-01&ClientVersion=1.15.0"},
	}
	for _, tt := range tests {
		if got := tt.u.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.u, got, tt.want)
		}
	}
}

func TestDecodedClientVersionError(t *testing.T) {
	u := Username{ClientVersion: "bad%zz"}
	if _, err := u.DecodedClientVersion(); !errors.Is(err, ErrInvalidUsername) {
		t.Errorf("DecodedClientVersion(%q) = %v, want ErrInvalidUsername", u.ClientVersion, err)
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		"0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31",
		"0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31&ClientVersion=c/1.2.3",
		"0ne/registrations/dev/api-version=2019-03-31&ClientVersion=a%2Fb",
		"0ne/registrations/dev",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalidUsername) {
				t.Fatalf("ParseUsername(%q) error %v is not a username *Error", s, err)
			}
			if e.Offset < 0 || e.Offset > len(s) {
				t.Fatalf("ParseUsername(%q) offset %d out of range", s, e.Offset)
			}
			return
		}
		// String may differ from s only in the ClientVersion key's case and
		// an empty ClientVersion being left out; parsing it gives u again.
		u2, err := ParseUsername(u.String())
		if err != nil || u2 != u {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, u2, err, u)
		}
		_, _ = u.DecodedClientVersion()
	})
}
