package dps

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Inputs of DPS-PROTOCOL.md §1.5 (V1 key; V4 scope, id and expiry).
const (
	v1Key    = "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="
	v4Scope  = "0neFEEDC0DE"
	v4RegID  = "myRegistrationId"
	v4Expiry = 1578941692

	// Signatures of the computed table of §1.5 (key v1Key).
	sigLower = "9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s="
	sigUpper = "/t1VzEUrQ62f+J+7chJSaFx3rh6pGwFWik1rI4kqc7E="
	sigRaw   = "ad+y+8CaG7/Llhlx9g+tidAW4jsUwb6AluSr0p0mxfk="

	otherKey = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw=="
)

// v2GroupKey is TEST_ENDORSEMENT_KEY of the CLI tests
// (Azure/azure-iot-cli-extension azext_iot/tests/dps/__init__.py), used there
// as a group key for compute-device-key.
const v2GroupKey = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAibym9HQP9vxCGF5dVc1Q" +
	"QsAGe021aUGJzNol1/gycBx3jFsTpwmWbISRwnFvflWd0w2Mc44FAAZNaJOAAxwZvG8GvyLlHh6fGKdh+mSBL4iLH2bZ4Ry22cB3" +
	"CJVjXmdGoz9Y/j3/NwLndBxQC+baNvzvyVQZ4/A2YL7vzIIj2ik4y+ve9ir7U0GbNdnxskqK1KFIITVVtkTIYyyFTIR0BySjPrRI" +
	"Dj7r7Mh5uF9HBppGKQCBoVSVV8dI91lNazmSdpGWyqCkO7iM4VvUMv2HT/ym53aYlUrau+Qq87Tu+uQipWYgRdF11KDfcpMHqqzB" +
	"QQ1NpOJVhrsTrhyJzO7KNw=="

// TestVectorV1 is V1: P tests/unit/common/auth/test_signing_mechanism.py.
func TestVectorV1(t *testing.T) {
	got, err := SignString(v1Key, "sign this message")
	if want := "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="; err != nil || got != want {
		t.Errorf("SignString = %q, %v; want %q", got, err, want)
	}
}

// TestVectorDerivedKeys covers V2 (CLI test), V3 (D-SYMKEY current) and the
// group-key case of the computed table.
func TestVectorDerivedKeys(t *testing.T) {
	tests := []struct {
		name, groupKey, regID, want string
	}{
		{"V2 CLI compute-device-key", v2GroupKey, "myarbitrarydeviceId", "cT/EXZvsplPEpT//p98Pc6sKh8mY3kYgSxavHwMkl7w="},
		{"V3 D-SYMKEY", otherKey, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="},
		{"computed group case", v1Key, v4RegID, "lVrJjFAUqSYm7kAZ2VTNcz8W4Cz8l+0NSmBGj/xHlSM="},
	}
	if len(v2GroupKey) != 424 {
		t.Fatalf("V2 key has %d characters, want 424", len(v2GroupKey))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DeriveDeviceKey(tt.groupKey, tt.regID)
			if err != nil || got != tt.want {
				t.Errorf("DeriveDeviceKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// V3-bad: the 2018 D-SYMKEY page printed a key the algorithm does not give.
	got, _ := DeriveDeviceKey(otherKey, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
	if got == "9GWVnYuoOLXlHc346XjhLRb9pKgIOrKSwxDRSOgnvXo=" {
		t.Error("DeriveDeviceKey produced the wrong V3-bad value")
	}
	// Case matters for the MAC (§1.4).
	lower, _ := DeriveDeviceKey(v1Key, strings.ToLower(v4RegID))
	if lower == tests[2].want {
		t.Error("DeriveDeviceKey ignores the case of the registration id")
	}
}

// TestVectorV4 is V4: EC test_az_iot_provisioning_client_sas.c, whose
// signature is a fixed string, so only the string-to-sign and the token
// layout are checked.
func TestVectorV4(t *testing.T) {
	sr := encodeResource(v4Scope, v4RegID, SRLower)
	if got, want := stringToSign(sr, "1578941692"), "0neFEEDC0DE%2fregistrations%2fmyRegistrationId\n1578941692"; got != want {
		t.Errorf("string-to-sign = %q, want %q", got, want)
	}
	const fixedSig = "cS1eHM/lDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ"
	const want = "SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=cS1eHM%2FlDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ&se=1578941692"
	if got := formatSASToken(sr, fixedSig, "1578941692", "", false); got != want {
		t.Errorf("password\n got %q\nwant %q", got, want)
	}
	if got := formatSASToken(sr, fixedSig, "1578941692", "iothubowner", true); got != want+"&skn=iothubowner" {
		t.Errorf("password with key name = %q", got)
	}
}

// TestBuildSASTokenComputed is the computed table of §1.5.
func TestBuildSASTokenComputed(t *testing.T) {
	derived := "lVrJjFAUqSYm7kAZ2VTNcz8W4Cz8l+0NSmBGj/xHlSM="
	base := SASOptions{IDScope: v4Scope, RegistrationID: v4RegID, Key: v1Key, Expiry: time.Unix(v4Expiry, 0)}
	with := func(f func(*SASOptions)) SASOptions { o := base; f(&o); return o }
	tests := []struct {
		name string
		opt  SASOptions
		want string
	}{
		{"lower (default)", base,
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration"},
		{"upper", with(func(o *SASOptions) { o.Encoding = SRUpper }),
			"SharedAccessSignature sr=0neFEEDC0DE%2Fregistrations%2FmyRegistrationId&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692&skn=registration"},
		{"raw", with(func(o *SASOptions) { o.Encoding = SRRaw }),
			"SharedAccessSignature sr=0neFEEDC0DE/registrations/myRegistrationId&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&se=1578941692&skn=registration"},
		{"upper without skn (Python)", with(func(o *SASOptions) { o.Encoding = SRUpper; o.OmitKeyName = true }),
			"SharedAccessSignature sr=0neFEEDC0DE%2Fregistrations%2FmyRegistrationId&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692"},
		{"other key name", with(func(o *SASOptions) { o.KeyName = "iothubowner" }),
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=iothubowner"},
		{"group-derived key", with(func(o *SASOptions) { o.Key = derived }),
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=UqcB3L%2FHutjn3G6UVEl09sgNdlArJa4XEbAUMLIZUTY%3D&se=1578941692&skn=registration"},
		{"colon in id is escaped", SASOptions{IDScope: "0ne", RegistrationID: "a:b", Key: v1Key, Expiry: time.Unix(1, 0), Encoding: SRLower},
			"SharedAccessSignature sr=0ne%2fregistrations%2fa%3ab&sig=Fg21Xl%2BxUsPxvUUlA4x27w6M1Ygdwphp9yHVzFcSv08%3D&se=1&skn=registration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BuildSASToken(tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("BuildSASToken\n got %q\nwant %q", got, tt.want)
			}
			// Every token we build verifies with its own key.
			tok, err := ParseSASToken(got)
			if err != nil {
				t.Fatal(err)
			}
			v := Verifier{Now: func() time.Time { return time.Unix(0, 0) }}
			if tt.opt.KeyName == "" {
				if err := v.Verify(tok, tt.opt.IDScope, tt.opt.RegistrationID, tt.opt.Key); err != nil {
					t.Errorf("Verify(own token) = %v", err)
				}
			}
		})
	}
}

func TestBuildSASTokenErrors(t *testing.T) {
	good := SASOptions{IDScope: "0ne", RegistrationID: "dev", Key: v1Key, Expiry: time.Unix(v4Expiry, 0)}
	tests := []struct {
		name string
		mod  func(*SASOptions)
		want error
	}{
		{"empty scope", func(o *SASOptions) { o.IDScope = "" }, ErrInvalidSASToken},
		{"empty id", func(o *SASOptions) { o.RegistrationID = "" }, ErrInvalidSASToken},
		{"zero expiry", func(o *SASOptions) { o.Expiry = time.Time{} }, ErrInvalidSASToken},
		{"expiry before 1970", func(o *SASOptions) { o.Expiry = time.Unix(-1, 0) }, ErrInvalidSASToken},
		{"expiry after 9999", func(o *SASOptions) { o.Expiry = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, ErrInvalidSASToken},
		{"unknown encoding", func(o *SASOptions) { o.Encoding = 7 }, ErrInvalidSASToken},
		{"empty key", func(o *SASOptions) { o.Key = "" }, ErrInvalidKey},
		{"key not base64", func(o *SASOptions) { o.Key = "not base64!" }, ErrInvalidKey},
		{"key unpadded", func(o *SASOptions) { o.Key = strings.TrimRight(v1Key, "=") }, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mod(&o)
			tok, err := BuildSASToken(o)
			if !errors.Is(err, tt.want) || tok != "" {
				t.Fatalf("BuildSASToken = %q, %v; want %v", tok, err, tt.want)
			}
			if o.Key != "" && strings.Contains(err.Error(), o.Key) {
				t.Errorf("error %q leaks the key", err)
			}
		})
	}
}

// TestBuildSASTokenRange: the expiries at both ends of the range Build
// accepts give tokens ParseSASToken accepts, with the same expiry.
func TestBuildSASTokenRange(t *testing.T) {
	for _, exp := range []time.Time{time.Unix(0, 0).Add(time.Second), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)} {
		tok, err := BuildSASToken(SASOptions{IDScope: "0ne", RegistrationID: "dev", Key: v1Key, Expiry: exp})
		if err != nil {
			t.Fatalf("BuildSASToken(expiry %v) = %v", exp, err)
		}
		p, err := ParseSASToken(tok)
		if err != nil || !p.ExpiresAt.Equal(exp) {
			t.Errorf("ParseSASToken(%q) = %+v, %v; want expiry %v", tok, p, err, exp)
		}
	}
}

func TestSignAndDeriveErrors(t *testing.T) {
	if _, err := SignString("***", "m"); !errors.Is(err, ErrInvalidKey) || strings.Contains(err.Error(), "***") {
		t.Errorf("SignString(bad key) = %v", err)
	}
	if _, err := DeriveDeviceKey("***", "dev"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("DeriveDeviceKey(bad key) = %v", err)
	}
	if _, err := DeriveDeviceKey(v1Key, ""); !errors.Is(err, ErrInvalidRegistrationID) {
		t.Errorf("DeriveDeviceKey(empty id) = %v", err)
	}
}

func TestSREncodingString(t *testing.T) {
	for e, want := range map[SREncoding]string{SRLower: "lower", SRUpper: "upper", SRRaw: "raw", 9: "SREncoding(9)"} {
		if got := e.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(e), got, want)
		}
	}
}

func TestParseSASToken(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want SASToken
	}{
		{"documented order, lower sr",
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration",
			SASToken{"0neFEEDC0DE%2fregistrations%2fmyRegistrationId", sigLower, "1578941692", time.Unix(v4Expiry, 0).UTC(), "registration", true}},
		{"D-ACCESS order sig, se, skn, sr; upper-case names",
			"SharedAccessSignature SIG=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&Se=1578941692&sKn=registration&SR=0neFEEDC0DE%2fregistrations%2fmyRegistrationId",
			SASToken{"0neFEEDC0DE%2fregistrations%2fmyRegistrationId", sigLower, "1578941692", time.Unix(v4Expiry, 0).UTC(), "registration", true}},
		{"Java empty skn",
			"SharedAccessSignature sr=0ne/registrations/dev&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&se=0&skn=",
			SASToken{"0ne/registrations/dev", sigRaw, "0", time.Unix(0, 0).UTC(), "", true}},
		{"no skn, empty and unknown fields ignored",
			"SharedAccessSignature &sr=x&&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&foo=bar&se=1578941692&",
			SASToken{"x", sigUpper, "1578941692", time.Unix(v4Expiry, 0).UTC(), "", false}},
		{"sig with lower-case escapes (C SDK)",
			"SharedAccessSignature sr=x&sig=%2ft1VzEUrQ62f%2bJ%2b7chJSaFx3rh6pGwFWik1rI4kqc7E%3d&se=1",
			SASToken{"x", sigUpper, "1", time.Unix(1, 0).UTC(), "", false}},
		{"sr kept raw, '=' inside a value",
			"SharedAccessSignature sr=a%2Fb=c&sig=AAAA&se=1",
			SASToken{"a%2Fb=c", "AAAA", "1", time.Unix(1, 0).UTC(), "", false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSASToken(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if *got != tt.want {
				t.Errorf("ParseSASToken\n got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseSASTokenErrors(t *testing.T) {
	const sig = "sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", `dps: sas @0: missing "SharedAccessSignature " prefix`},
		{"no prefix", "sr=x&" + sig + "&se=1", `dps: sas @0: missing "SharedAccessSignature " prefix`},
		{"prefix case", "sharedaccesssignature sr=x&" + sig + "&se=1", `dps: sas @0: missing "SharedAccessSignature " prefix`},
		{"prefix without space", "SharedAccessSignaturesr=x&" + sig + "&se=1", `dps: sas @0: missing "SharedAccessSignature " prefix`},
		{"field without =", "SharedAccessSignature sr=x&" + sig + "&se", `dps: sas @78: field has no "="`},
		{"signature without its name", "SharedAccessSignature sr=x&9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1", `dps: sas @27: field has no "="`},
		{"missing sr", "SharedAccessSignature " + sig + "&se=1", "dps: sas.sr: missing sr"},
		{"missing sig", "SharedAccessSignature sr=x&se=1", "dps: sas.sig: missing sig"},
		// Names fold ASCII case only: "s\u0130g" (dotted capital I) lowers
		// to "sig" under Unicode rules but is an unknown field here, so no
		// redactor can miss a signature the parser took.
		{"sig name with a non-ASCII letter", "SharedAccessSignature sr=x&s\u0130g=AAAA&se=1", "dps: sas.sig: missing sig"},
		{"sig name with long s", "SharedAccessSignature sr=x&\u017fig=AAAA&se=1", "dps: sas.sig: missing sig"},
		{"missing se", "SharedAccessSignature sr=x&" + sig, "dps: sas.se: missing se"},
		{"only prefix", "SharedAccessSignature ", "dps: sas.sr: missing sr"},
		{"empty sr", "SharedAccessSignature sr=&" + sig + "&se=1", "dps: sas.sr: empty sr"},
		{"empty sig", "SharedAccessSignature sr=x&sig=&se=1", "dps: sas.sig: empty sig"},
		{"duplicate sr", "SharedAccessSignature sr=x&" + sig + "&se=1&sr=y", "dps: sas.sr @83: duplicate field sr"},
		{"duplicate differing case", "SharedAccessSignature sr=x&" + sig + "&se=1&SE=2", "dps: sas.se @83: duplicate field SE"},
		{"duplicate skn", "SharedAccessSignature sr=x&" + sig + "&se=1&skn=&skn=registration", "dps: sas.skn @88: duplicate field skn"},
		{"bad escape in sig", "SharedAccessSignature sr=x&sig=%zz&se=1", "dps: sas.sig @31: bad URL encoding"},
		{"sig not base64", "SharedAccessSignature sr=x&sig=not-base64&se=1", "dps: sas.sig: sig is not standard base64"},
		{"sig raw '+' decodes to space", "SharedAccessSignature sr=x&sig=ad+y+8CaG7/Llhlx9g+tidAW4jsUwb6AluSr0p0mxfk=&se=1", "dps: sas.sig: sig is not standard base64"},
		{"sig unpadded (V4 fixed string)", "SharedAccessSignature sr=x&sig=cS1eHM%2FlDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ&se=1", "dps: sas.sig: sig is not standard base64"},
		{"se negative", "SharedAccessSignature sr=x&" + sig + "&se=-1", "dps: sas.se: se is not a decimal number of seconds"},
		{"se fraction", "SharedAccessSignature sr=x&" + sig + "&se=1.5", "dps: sas.se: se is not a decimal number of seconds"},
		{"se empty", "SharedAccessSignature sr=x&" + sig + "&se=", "dps: sas.se: se is not a decimal number of seconds"},
		{"se overflow", "SharedAccessSignature sr=x&" + sig + "&se=99999999999999999999", "dps: sas.se: se out of range"},
		{"se beyond year 9999", "SharedAccessSignature sr=x&" + sig + "&se=253402300800", "dps: sas.se: se out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseSASToken(tt.in)
			if tok != nil || !errors.Is(err, ErrInvalidSASToken) {
				t.Fatalf("ParseSASToken = %+v, %v; want ErrInvalidSASToken", tok, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %q\nwant %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "9ElmiQ") {
				t.Errorf("error %q leaks the signature", err)
			}
		})
	}
}

func TestDecodedResource(t *testing.T) {
	for _, sr := range []string{
		"0neFEEDC0DE%2fregistrations%2fmyRegistrationId",
		"0neFEEDC0DE%2Fregistrations%2FmyRegistrationId",
		"0neFEEDC0DE/registrations/myRegistrationId",
	} {
		got, err := (&SASToken{Resource: sr}).DecodedResource()
		if err != nil || got != "0neFEEDC0DE/registrations/myRegistrationId" {
			t.Errorf("DecodedResource(%q) = %q, %v", sr, got, err)
		}
	}
	if _, err := (&SASToken{Resource: "a%2"}).DecodedResource(); !errors.Is(err, ErrInvalidSASToken) {
		t.Errorf("DecodedResource(bad escape) = %v", err)
	}
}

// TestVerifyAcceptsSDKForms: every token form of the §1.3 table verifies.
func TestVerifyAcceptsSDKForms(t *testing.T) {
	tests := []struct{ name, token string }{
		{"docs / C (lower sr, lower-hex sig)",
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3d&se=1578941692&skn=registration"},
		{"EC (lower sr, upper-hex sig, no skn)",
			"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692"},
		{"Node (sr, sig, skn, se; raw sr)",
			"SharedAccessSignature sr=0neFEEDC0DE/registrations/myRegistrationId&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&skn=registration&se=1578941692"},
		{"Java (raw sr, empty skn)",
			"SharedAccessSignature sr=0neFEEDC0DE/registrations/myRegistrationId&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&se=1578941692&skn="},
		{"Python (upper sr, no skn)",
			"SharedAccessSignature sr=0neFEEDC0DE%2Fregistrations%2FmyRegistrationId&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692"},
		{"CS v1 (upper sr, skn)",
			"SharedAccessSignature sr=0neFEEDC0DE%2Fregistrations%2FmyRegistrationId&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692&skn=registration"},
		{"MQTT.fx (sr, skn, sig, se)",
			"SharedAccessSignature sr=0neFEEDC0DE%2Fregistrations%2FmyRegistrationId&skn=registration&sig=%2Ft1VzEUrQ62f%2BJ%2B7chJSaFx3rh6pGwFWik1rI4kqc7E%3D&se=1578941692"},
		{"D-ACCESS order (sig, se, skn, sr)",
			"SharedAccessSignature sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration&sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId"},
	}
	exp := time.Unix(v4Expiry, 0)
	clocks := []struct {
		name string
		now  time.Time
	}{
		{"well before expiry", exp.Add(-time.Hour)},
		{"years before expiry", exp.AddDate(-5, 0, 0)},
		{"at expiry", exp},
		{"within skew", exp.Add(4*time.Minute + 59*time.Second)},
		{"at the skew limit", exp.Add(DefaultSkew)},
	}
	for _, tt := range tests {
		tok, err := ParseSASToken(tt.token)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for _, c := range clocks {
			v := Verifier{Now: func() time.Time { return c.now }}
			if err := v.Verify(tok, v4Scope, v4RegID, v1Key); err != nil {
				t.Errorf("%s, %s: Verify = %v", tt.name, c.name, err)
			}
			// The registration id is compared case-insensitively; the
			// secondary key is tried after the primary.
			if err := v.Verify(tok, v4Scope, "MYREGISTRATIONID", otherKey, v1Key); err != nil {
				t.Errorf("%s, %s: Verify(upper-case id, secondary key) = %v", tt.name, c.name, err)
			}
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	exp := time.Unix(v4Expiry, 0)
	const good = "SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration"
	before := func() time.Time { return exp.Add(-time.Minute) }
	tests := []struct {
		name   string
		token  string
		v      Verifier
		scope  string
		regID  string
		keys   []string
		want   error
		wantIn string // substring of the message
	}{
		{"wrong key", good, Verifier{Now: before}, v4Scope, v4RegID, []string{otherKey},
			ErrSignatureMismatch, "signature matches none of 1 key(s)"},
		{"wrong primary and secondary", good, Verifier{Now: before}, v4Scope, v4RegID, []string{otherKey, otherKey},
			ErrSignatureMismatch, "none of 2 key(s)"},
		{"expired beyond skew", good, Verifier{Now: func() time.Time { return exp.Add(DefaultSkew + time.Second) }}, v4Scope, v4RegID, []string{v1Key},
			ErrTokenExpired, "expired at 2020-01-13T18:54:52Z, 5m1s ago (skew allowed 5m0s)"},
		{"expired, custom skew", good, Verifier{Now: func() time.Time { return exp.Add(2 * time.Minute) }, Skew: time.Minute}, v4Scope, v4RegID, []string{v1Key},
			ErrTokenExpired, "skew allowed 1m0s"},
		{"expired, no skew", good, Verifier{Now: func() time.Time { return exp.Add(time.Second) }, Skew: -1}, v4Scope, v4RegID, []string{v1Key},
			ErrTokenExpired, "skew allowed 0s"},
		{"wrong scope", good, Verifier{Now: before}, "0neOTHER", v4RegID, []string{v1Key},
			ErrResourceMismatch, `not under id scope "0neOTHER"`},
		{"scope differs in case", good, Verifier{Now: before}, "0NEFEEDC0DE", v4RegID, []string{v1Key},
			ErrResourceMismatch, "not under id scope"},
		{"other device", good, Verifier{Now: before}, v4Scope, "otherDevice", []string{v1Key},
			ErrResourceMismatch, `another registration than "otherDevice"`},
		{"id is a prefix", good, Verifier{Now: before}, v4Scope, "myRegistration", []string{v1Key},
			ErrResourceMismatch, "another registration"},
		{"skn other", strings.Replace(good, "skn=registration", "skn=iothubowner", 1), Verifier{Now: before}, v4Scope, v4RegID, []string{v1Key},
			ErrInvalidSASToken, `skn must be absent, empty or "registration"`},
		{"skn case", strings.Replace(good, "skn=registration", "skn=Registration", 1), Verifier{Now: before}, v4Scope, v4RegID, []string{v1Key},
			ErrInvalidSASToken, "skn must be"},
		{"sr escape casing changed after signing", strings.Replace(good, "%2f", "%2F", -1), Verifier{Now: before}, v4Scope, v4RegID, []string{v1Key},
			ErrSignatureMismatch, "matches none"},
		{"se changed after signing", strings.Replace(good, "se=1578941692", "se=1578941693", 1), Verifier{Now: before}, v4Scope, v4RegID, []string{v1Key},
			ErrSignatureMismatch, "matches none"},
		{"no keys", good, Verifier{Now: before}, v4Scope, v4RegID, nil,
			ErrInvalidKey, "no key"},
		{"key not base64", good, Verifier{Now: before}, v4Scope, v4RegID, []string{"%%%"},
			ErrInvalidKey, "key[0]"},
		{"only empty keys", good, Verifier{Now: before}, v4Scope, v4RegID, []string{"", ""},
			ErrInvalidKey, "no key"},
		{"wrong primary, no secondary", good, Verifier{Now: before}, v4Scope, v4RegID, []string{otherKey, ""},
			ErrSignatureMismatch, "none of 1 key(s)"},
		{"wrong primary, secondary not base64", good, Verifier{Now: before}, v4Scope, v4RegID, []string{otherKey, "%%%"},
			ErrInvalidKey, "key[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := ParseSASToken(tt.token)
			if err != nil {
				t.Fatal(err)
			}
			err = tt.v.Verify(tok, tt.scope, tt.regID, tt.keys...)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Verify = %q, want it to contain %q", err, tt.wantIn)
			}
			for _, secret := range []string{v1Key, otherKey, sigLower, "9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks a secret", err)
				}
			}
			var e *Error
			if errors.As(err, &e) && e.Field == "sas.sig" && e.Value != redacted {
				t.Errorf("sig error Value = %q, want it redacted", e.Value)
			}
		})
	}
}

// TestVerifyTriesEveryKey: an empty or malformed key does not keep a
// good key after it from being tried.
func TestVerifyTriesEveryKey(t *testing.T) {
	tok, err := ParseSASToken("SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration")
	if err != nil {
		t.Fatal(err)
	}
	v := Verifier{Now: func() time.Time { return time.Unix(v4Expiry, 0) }}
	for _, keys := range [][]string{{v1Key, ""}, {"", v1Key}, {"%%%", v1Key}, {otherKey, v1Key}} {
		if err := v.Verify(tok, v4Scope, v4RegID, keys...); err != nil {
			t.Errorf("Verify with keys %q = %v, want nil", keys, err)
		}
	}
}

func TestVerifyNil(t *testing.T) {
	if err := (Verifier{}).Verify(nil, "s", "r", v1Key); !errors.Is(err, ErrInvalidSASToken) {
		t.Errorf("Verify(nil) = %v", err)
	}
	tok := &SASToken{Resource: "a%zz", Signature: sigLower, Expiry: "1"}
	if err := (Verifier{}).Verify(tok, "s", "r", v1Key); !errors.Is(err, ErrInvalidSASToken) {
		t.Errorf("Verify(bad sr escape) = %v", err)
	}
	// A hand-built token with a signature that is not base64.
	tok = &SASToken{Resource: "s/registrations/r", Signature: "!!", Expiry: "1", ExpiresAt: time.Unix(1, 0)}
	err := (Verifier{Now: func() time.Time { return time.Unix(0, 0) }}).Verify(tok, "s", "r", v1Key)
	if !errors.Is(err, ErrInvalidSASToken) {
		t.Errorf("Verify(sig not base64) = %v", err)
	}
}

// FuzzParseSASToken: a refusal is an ErrInvalidSASToken *Error with an
// offset inside the token (or -1); an accepted token verifies without
// panicking and re-formats to a token that parses to the same fields.
func FuzzParseSASToken(f *testing.F) {
	for _, s := range []string{
		"SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=UqcB3L%2FHutjn3G6UVEl09sgNdlArJa4XEbAUMLIZUTY%3D&se=1578941692&skn=registration",
		"SharedAccessSignature sr=0neFEEDC0DE/registrations/myRegistrationId&sig=ad%2By%2B8CaG7%2FLlhlx9g%2BtidAW4jsUwb6AluSr0p0mxfk%3D&skn=registration&se=1578941692",
		"SharedAccessSignature sr=a&sig=AAAA&se=1&skn=",
		"SharedAccessSignature ",
	} {
		f.Add(s)
	}
	v := Verifier{Now: func() time.Time { return time.Unix(v4Expiry, 0) }}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseSASToken(s)
		if err != nil {
			var e *Error
			if !errors.Is(err, ErrInvalidSASToken) || !errors.As(err, &e) {
				t.Fatalf("ParseSASToken(%q) = %v, not an ErrInvalidSASToken *Error", s, err)
			}
			if e.Offset < -1 || e.Offset > len(s) {
				t.Fatalf("ParseSASToken(%q) = %v: offset %d outside the %d-byte token", s, err, e.Offset, len(s))
			}
			return
		}
		if tok.ExpiresAt.Unix() < 0 {
			t.Fatalf("ExpiresAt %v before 1970", tok.ExpiresAt)
		}
		_ = v.Verify(tok, v4Scope, v4RegID, v1Key)
		// Re-formatting the parsed fields gives the same token back.
		again, err := ParseSASToken(formatSASToken(tok.Resource, tok.Signature, tok.Expiry, tok.KeyName, tok.HasKeyName))
		if err != nil || *again != *tok {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, tok)
		}
	})
}
