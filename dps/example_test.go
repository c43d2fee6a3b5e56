package dps_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

func ExampleBuildSASToken() {
	// Inputs of DPS-PROTOCOL.md §1.5 (V1 key, V4 scope, id and expiry).
	token, err := dps.BuildSASToken(dps.SASOptions{
		IDScope:        "0neFEEDC0DE",
		RegistrationID: "myRegistrationId",
		Key:            "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=",
		Expiry:         time.Unix(1578941692, 0),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(token)

	// The service side: parse, then verify against the device key.
	t, err := dps.ParseSASToken(token)
	if err != nil {
		fmt.Println(err)
		return
	}
	v := dps.Verifier{Now: func() time.Time { return time.Unix(1578941000, 0) }}
	fmt.Println(v.Verify(t, "0neFEEDC0DE", "myRegistrationId", "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg="))
	err = v.Verify(t, "0neFEEDC0DE", "otherDevice", "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=")
	fmt.Println(errors.Is(err, dps.ErrResourceMismatch))
	// Output:
	// SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId&sig=9ElmiQtRHaJo7RnzVGdIHFyBOY3rYMUQXVSzqaJhJ4s%3D&se=1578941692&skn=registration
	// <nil>
	// true
}

func ExampleDeriveDeviceKey() {
	// Vector V3 (D-SYMKEY).
	key, err := dps.DeriveDeviceKey(
		"8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
		"sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6")
	fmt.Println(key, err)
	// Output:
	// Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc= <nil>
}

func ExampleParseUsername() {
	// The Node SDK's username (DPS-PROTOCOL.md §1.2).
	u, err := dps.ParseUsername("0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.2")
	if err != nil {
		fmt.Println(err)
		return
	}
	cv, _ := u.DecodedClientVersion()
	fmt.Println(u.IDScope, u.RegistrationID, u.APIVersion)
	fmt.Println(cv)

	_, err = dps.ParseUsername("0neFEEDC0DE/registrations/myRegistrationId/2019-03-31")
	fmt.Println(err)
	// Output:
	// 0neFEEDC0DE myRegistrationId 2019-03-31
	// azure-iot-provisioning-device/1.9.2
	// dps: username @43: api-version missing
}

func ExampleResponseTopic() {
	fmt.Println(dps.ResponseTopic(202, "1", 3))
	fmt.Println(dps.ResponseTopic(200, "1", -1))
	// Output:
	// $dps/registrations/res/202/?$rid=1&retry-after=3
	// $dps/registrations/res/200/?$rid=1
}

func ExampleParseResponseTopic() {
	// Keys in any order and letter case are accepted.
	r, err := dps.ParseResponseTopic("$dps/registrations/res/429/?Retry-After=32&$rid=9")
	fmt.Println(r.Status, r.RID, r.RetryAfter, r.HasRetryAfter, err)

	// The "rid" typo has its own error.
	_, err = dps.ParseResponseTopic("$dps/registrations/res/202/?rid=1&retry-after=3")
	fmt.Println(errors.Is(err, dps.ErrRIDWithoutDollar), errors.Is(err, dps.ErrInvalidTopic))
	fmt.Println(err)
	// Output:
	// 429 9 32s true <nil>
	// true true
	// dps: topic @28: "rid" without "$": the key is "$rid"
}
