package dps

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTopicBuilders(t *testing.T) {
	tests := []struct{ got, want string }{
		{RegisterTopic("1"), "$dps/registrations/PUT/iotdps-register/?$rid=1"},
		{RegisterTopic("7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55"), "$dps/registrations/PUT/iotdps-register/?$rid=7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55"},
		{PollTopic("2", "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"),
			"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"},
		{ResponseTopic(202, "1", 3), "$dps/registrations/res/202/?$rid=1&retry-after=3"},
		{ResponseTopic(429, "9", 0), "$dps/registrations/res/429/?$rid=9&retry-after=0"},
		{ResponseTopic(200, "1", -1), "$dps/registrations/res/200/?$rid=1"},
		{ResponseTopic(401, "2", -5), "$dps/registrations/res/401/?$rid=2"},
		{SubscribeFilter, "$dps/registrations/res/#"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseRequestTopic(t *testing.T) {
	tests := []struct {
		in   string
		want Request
	}{
		{"$dps/registrations/PUT/iotdps-register/?$rid=1", Request{Kind: Register, RID: "1"}},
		{"$dps/registrations/PUT/iotdps-register/?$rid=7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55",
			Request{Kind: Register, RID: "7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55"}},
		{"$dps/registrations/PUT/iotdps-register/?$RID=x=y", Request{Kind: Register, RID: "x=y"}},
		{"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d",
			Request{Kind: Poll, RID: "1", OperationID: "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"}},
		{"$dps/registrations/GET/iotdps-get-operationstatus/?operationId=op&$rid=3", Request{Kind: Poll, RID: "3", OperationID: "op"}},
		{"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationid=op%2E", Request{Kind: Poll, RID: "3", OperationID: "op%2E"}},
	}
	for _, tt := range tests {
		got, err := ParseRequestTopic(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRequestTopic(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRequestTopicErrors(t *testing.T) {
	const reg = "$dps/registrations/PUT/iotdps-register/"
	const poll = "$dps/registrations/GET/iotdps-get-operationstatus/"
	tests := []struct {
		in, want string
		typo     bool
	}{
		{"", "dps: topic @0: not a DPS request topic", false},
		{"$dps/registrations/res/202/?$rid=1", "dps: topic @0: not a DPS request topic", false},
		{"$dps/registrations/PUT/iotdps-register?$rid=1", "dps: topic @0: not a DPS request topic", false},
		{"devices/x/messages/events/", "dps: topic @0: not a DPS request topic", false},
		{reg, `dps: topic @39: missing "?$rid=" query`, false},
		{reg + "$rid=1", `dps: topic @39: expected "?" before the query`, false},
		{reg + "?", "dps: topic @40: empty query parameter", false},
		{reg + "?$rid", `dps: topic @40: query parameter "$rid" has no "="`, false},
		{reg + "?=1", "dps: topic @40: query parameter with empty name", false},
		{reg + "?$rid=", "dps: topic @45: empty $rid", false},
		{reg + "?$rid=1&$rid=2", "dps: topic @47: duplicate $rid", false},
		{reg + "?$rid=1&", "dps: topic @47: empty query parameter", false},
		{reg + "?$rid=1&operationId=x", `dps: topic @47: unknown parameter "operationId" in register topic`, false},
		{reg + "?$rid=1&foo=bar", `dps: topic @47: unknown parameter "foo" in register topic`, false},
		{reg + "?rid=1", `dps: topic @40: "rid" without "$": the key is "$rid"`, true},
		{poll + "?rid=1&operationId=x", `dps: topic @51: "rid" without "$": the key is "$rid"`, true},
		{poll + "?$rid=1", "dps: topic @57: missing operationId", false},
		{poll + "?$rid=1&operationId=", "dps: topic @70: empty operationId", false},
		{poll + "?$rid=1&operationId=a&operationId=b", "dps: topic @72: duplicate operationId", false},
		{poll + "?operationId=a", "dps: topic @64: missing $rid", false},
	}
	for _, tt := range tests {
		_, err := ParseRequestTopic(tt.in)
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ParseRequestTopic(%q) = %v, want ErrInvalidTopic", tt.in, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseRequestTopic(%q)\n got %q\nwant %q", tt.in, err, tt.want)
		}
		if errors.Is(err, ErrRIDWithoutDollar) != tt.typo {
			t.Errorf("ParseRequestTopic(%q): errors.Is(ErrRIDWithoutDollar) = %v", tt.in, !tt.typo)
		}
	}
}

func TestParseResponseTopic(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Response
	}{
		{"first answer (I-393)", "$dps/registrations/res/202/?$rid=1&retry-after=3",
			Response{Status: 202, RID: "1", RetryAfter: 3 * time.Second, HasRetryAfter: true}},
		{"final answer", "$dps/registrations/res/200/?$rid=1", Response{Status: 200, RID: "1"}},
		{"401 (I-43157)", "$dps/registrations/res/401/?$rid=2", Response{Status: 401, RID: "2"}},
		{"EC parser test order", "$dps/registrations/res/202/?retry-after=120&$rid=1",
			Response{Status: 202, RID: "1", RetryAfter: 120 * time.Second, HasRetryAfter: true}},
		{"CS test Retry-After", "$dps/registrations/res/429/?$rid=9&Retry-After=32",
			Response{Status: 429, RID: "9", RetryAfter: 32 * time.Second, HasRetryAfter: true}},
		{"retry-after 0", "$dps/registrations/res/202/?$rid=1&retry-after=0",
			Response{Status: 202, RID: "1", HasRetryAfter: true}},
		{"uuid rid", "$dps/registrations/res/202/?$rid=7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55&retry-after=3",
			Response{Status: 202, RID: "7d1e3a86-6c4e-4d44-9d83-1a0a2f7f6a55", RetryAfter: 3 * time.Second, HasRetryAfter: true}},
		{"other params kept in order", "$dps/registrations/res/500/?x=1&$rid=4&y=",
			Response{Status: 500, RID: "4", Params: []Param{{"x", "1"}, {"y", ""}}}},
		{"rid typo next to $rid is just a param", "$dps/registrations/res/200/?$rid=1&rid=1",
			Response{Status: 200, RID: "1", Params: []Param{{"rid", "1"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponseTopic(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseResponseTopic(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseResponseTopicErrors(t *testing.T) {
	const res = "$dps/registrations/res/"
	tests := []struct {
		in, want string
		typo     bool
	}{
		{"", `dps: topic @0: not a DPS response topic (want prefix "$dps/registrations/res/")`, false},
		{"$dps/registrations/unknown", `dps: topic @0: not a DPS response topic (want prefix "$dps/registrations/res/")`, false},
		{res, "dps: topic @23: status must be three digits 100–599", false},
		{res + "20/?$rid=1", "dps: topic @23: status must be three digits 100–599", false},
		{res + "2000/?$rid=1", "dps: topic @23: status must be three digits 100–599", false},
		{res + "099/?$rid=1", "dps: topic @23: status must be three digits 100–599", false},
		{res + "600/?$rid=1", "dps: topic @23: status must be three digits 100–599", false},
		{res + "ok/?$rid=1", "dps: topic @23: status must be three digits 100–599", false},
		{res + "200?$rid=1", `dps: topic @26: expected "/" after the status`, false},
		{res + "200", `dps: topic @26: expected "/" after the status`, false},
		{res + "200/", `dps: topic @27: missing "?$rid=" query`, false},
		{res + "200/$rid=1", `dps: topic @27: expected "?" before the query`, false},
		{res + "202/?retry-after=3", "dps: topic @41: missing $rid", false},
		{res + "202/?$rid=", "dps: topic @33: empty $rid", false},
		{res + "202/?rid=1&retry-after=3", `dps: topic @28: "rid" without "$": the key is "$rid"`, true},
		{res + "202/?retry-after=3&RID=1", `dps: topic @42: "rid" without "$": the key is "$rid"`, true},
		{res + "202/?$rid=1&retry-after=x", `dps: topic @47: retry-after "x" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=-1", `dps: topic @47: retry-after "-1" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=+1", `dps: topic @47: retry-after "+1" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=1.5", `dps: topic @47: retry-after "1.5" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=", `dps: topic @47: retry-after "" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=2147483648", `dps: topic @47: retry-after "2147483648" is not a whole number of seconds`, false},
		{res + "202/?$rid=1&retry-after=3&Retry-After=4", "dps: topic @49: duplicate retry-after", false},
		{res + "202/?$rid=1&&retry-after=3", "dps: topic @35: empty query parameter", false},
	}
	for _, tt := range tests {
		_, err := ParseResponseTopic(tt.in)
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ParseResponseTopic(%q) = %v, want ErrInvalidTopic", tt.in, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseResponseTopic(%q)\n got %q\nwant %q", tt.in, err, tt.want)
		}
		if errors.Is(err, ErrRIDWithoutDollar) != tt.typo {
			t.Errorf("ParseResponseTopic(%q): errors.Is(ErrRIDWithoutDollar) = %v", tt.in, !tt.typo)
		}
	}
}

func TestRequestKindString(t *testing.T) {
	for k, want := range map[RequestKind]string{Register: "register", Poll: "poll", 0: "RequestKind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("RequestKind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

// checkTopicError asserts that err is a topic *Error with an offset inside s.
func checkTopicError(t *testing.T, s string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrInvalidTopic) {
		t.Fatalf("%q: error %v is not a topic *Error", s, err)
	}
	if e.Offset < -1 || e.Offset > len(s) {
		t.Fatalf("%q: offset %d out of range", s, e.Offset)
	}
}

func FuzzParseResponseTopic(f *testing.F) {
	for _, s := range []string{
		"$dps/registrations/res/202/?$rid=1&retry-after=3",
		"$dps/registrations/res/200/?$rid=1",
		"$dps/registrations/res/202/?retry-after=120&$rid=1",
		"$dps/registrations/res/429/?$rid=9&Retry-After=32",
		"$dps/registrations/res/202/?rid=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseResponseTopic(s)
		if err != nil {
			checkTopicError(t, s, err)
			return
		}
		if r.Status < 100 || r.Status > 599 || r.RID == "" || strings.Contains(r.RID, "&") {
			t.Fatalf("ParseResponseTopic(%q) = %+v", s, r)
		}
		ra := -1
		if r.HasRetryAfter {
			ra = int(r.RetryAfter / time.Second)
		}
		built := ResponseTopic(r.Status, r.RID, ra)
		r2, err := ParseResponseTopic(built)
		if err != nil {
			t.Fatalf("ParseResponseTopic(%q) (built from %q) = %v", built, s, err)
		}
		r.Params = nil
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip of %q via %q: %+v, want %+v", s, built, r2, r)
		}
	})
}

func FuzzParseRequestTopic(f *testing.F) {
	for _, s := range []string{
		"$dps/registrations/PUT/iotdps-register/?$rid=1",
		"$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d",
		"$dps/registrations/GET/iotdps-get-operationstatus/?operationId=x&$rid=2",
		"$dps/registrations/PUT/iotdps-register/?rid=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRequestTopic(s)
		if err != nil {
			checkTopicError(t, s, err)
			return
		}
		var built string
		switch r.Kind {
		case Register:
			built = RegisterTopic(r.RID)
		case Poll:
			built = PollTopic(r.RID, r.OperationID)
		default:
			t.Fatalf("ParseRequestTopic(%q) kind %v", s, r.Kind)
		}
		r2, err := ParseRequestTopic(built)
		if err != nil || r2 != r {
			t.Fatalf("round trip of %q via %q: %+v, %v; want %+v", s, built, r2, err, r)
		}
	})
}
