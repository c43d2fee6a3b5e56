package dps

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Topic names and filters (D-MQTT; DPS-PROTOCOL.md §2–§5, Part A §5).
const (
	// SubscribeFilter is the only filter DPS accepts (D-MQTT: "#" only lets
	// DPS append properties).
	SubscribeFilter = "$dps/registrations/res/#"

	// RegisterPrefix starts the topic of every register request.
	RegisterPrefix = "$dps/registrations/PUT/iotdps-register/"
	// PollPrefix starts the topic of every operation status request.
	PollPrefix = "$dps/registrations/GET/iotdps-get-operationstatus/"
	// ResponsePrefix starts the topic of every answer.
	ResponsePrefix = "$dps/registrations/res/"

	ridKey         = "$rid"
	retryAfterKey  = "retry-after"
	operationIDKey = "operationId"
)

// RegisterTopic is the register request topic
// "$dps/registrations/PUT/iotdps-register/?$rid={rid}" (D-MQTT, §3.1).
//
// The topic builders do not validate: they write what they are given, so
// that a test can send what a device should not. A value the parsers
// refuse (an empty rid, one holding '&', a status outside 100..599) gives
// a topic they refuse too.
func RegisterTopic(rid string) string {
	return RegisterPrefix + "?" + ridKey + "=" + rid
}

// PollTopic is the operation status request topic
// "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={operationId}"
// (D-MQTT, §5).
func PollTopic(rid, operationID string) string {
	return PollPrefix + "?" + ridKey + "=" + rid + "&" + operationIDKey + "=" + operationID
}

// ResponseTopic is the topic of a service answer, exactly
// "$dps/registrations/res/{status}/?$rid={rid}" followed, when retryAfter is
// not negative, by "&retry-after={retryAfter}". $rid comes first and
// retry-after is lower case because the Python and .NET v1 SDKs need $rid
// first and the C and EC SDKs search for "retry-after" case-sensitively
// (DPS-PROTOCOL.md Part A §5, §4.2). rid is echoed byte for byte.
func ResponseTopic(status int, rid string, retryAfter int) string {
	s := ResponsePrefix + strconv.Itoa(status) + "/?" + ridKey + "=" + rid
	if retryAfter >= 0 {
		s += "&" + retryAfterKey + "=" + strconv.Itoa(retryAfter)
	}
	return s
}

// RequestKind says which device request a topic carries.
type RequestKind int

const (
	// Register is PUT iotdps-register.
	Register RequestKind = iota + 1
	// Poll is GET iotdps-get-operationstatus.
	Poll
)

// String returns "register" or "poll".
func (k RequestKind) String() string {
	switch k {
	case Register:
		return "register"
	case Poll:
		return "poll"
	}
	return "RequestKind(" + strconv.Itoa(int(k)) + ")"
}

// Request is a parsed device request topic.
type Request struct {
	Kind        RequestKind
	RID         string // the $rid value, raw (to be echoed byte for byte)
	OperationID string // the operationId value, raw; Poll only
}

// Param is one query parameter of a topic, as on the wire.
type Param struct {
	Key, Value string
}

// Response is a parsed service response topic.
type Response struct {
	Status        int
	RID           string        // the $rid value, raw
	RetryAfter    time.Duration // whole seconds
	HasRetryAfter bool
	// Params are the other query parameters, in topic order.
	Params []Param
}

// ParseRequestTopic parses a device request topic: register
// ("$dps/registrations/PUT/iotdps-register/?$rid={rid}") or poll
// ("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}").
// Query keys may come in any order and in any letter case; $rid (and for a
// poll operationId) is required and non-empty; other parameters are rejected,
// since DPS "only supports the documented topic names" (D-MQTT). The typo
// "rid" for "$rid" is reported as ErrRIDWithoutDollar.
func ParseRequestTopic(topic string) (Request, error) {
	var (
		r      Request
		prefix string
	)
	switch {
	case strings.HasPrefix(topic, RegisterPrefix):
		r.Kind, prefix = Register, RegisterPrefix
	case strings.HasPrefix(topic, PollPrefix):
		r.Kind, prefix = Poll, PollPrefix
	default:
		return Request{}, topicError(topic, 0, "not a DPS request topic")
	}
	params, err := parseQuery(topic, len(prefix))
	if err != nil {
		return Request{}, err
	}
	if err := checkRID(topic, params); err != nil {
		return Request{}, err
	}
	opOff := -1
	for _, p := range params {
		switch {
		case strings.EqualFold(p.Key, ridKey):
			r.RID = p.Value
		case r.Kind == Poll && strings.EqualFold(p.Key, operationIDKey):
			r.OperationID, opOff = p.Value, p.off+len(p.Key)+1
		default:
			return Request{}, topicError(topic, p.off, fmt.Sprintf("unknown parameter %q in %s topic", p.Key, r.Kind))
		}
	}
	if r.Kind == Poll {
		// D-MQTT: "…/?$rid={request_id}&operationId={operationId}".
		if opOff < 0 {
			return Request{}, topicError(topic, len(topic), "missing operationId")
		}
		if r.OperationID == "" {
			return Request{}, topicError(topic, opOff, "empty operationId")
		}
	}
	return r, nil
}

// ParseResponseTopic parses a service response topic
// "$dps/registrations/res/{status}/?{query}". The status is three digits
// (100–599). Query keys may come in any order and in any letter case: the EC
// parser test uses "retry-after=120&$rid=1", the .NET tests "Retry-After=32"
// (DPS-PROTOCOL.md §4.1, Part A §5). $rid is required and non-empty;
// retry-after, when present, is a whole number of seconds; other parameters
// are kept in Params. The typo "rid" for "$rid" is reported as
// ErrRIDWithoutDollar.
func ParseResponseTopic(topic string) (Response, error) {
	if !strings.HasPrefix(topic, ResponsePrefix) {
		return Response{}, topicError(topic, 0, `not a DPS response topic (want prefix "`+ResponsePrefix+`")`)
	}
	off := len(ResponsePrefix)
	end := off
	for end < len(topic) && '0' <= topic[end] && topic[end] <= '9' {
		end++
	}
	if end-off != 3 || topic[off] < '1' || topic[off] > '5' {
		return Response{}, topicError(topic, off, "status must be three digits 100–599")
	}
	var r Response
	r.Status, _ = strconv.Atoi(topic[off:end])
	if !strings.HasPrefix(topic[end:], "/") {
		return Response{}, topicError(topic, end, `expected "/" after the status`)
	}
	params, err := parseQuery(topic, end+1)
	if err != nil {
		return Response{}, err
	}
	for _, p := range params {
		switch {
		case strings.EqualFold(p.Key, ridKey):
			r.RID = p.Value
		case strings.EqualFold(p.Key, retryAfterKey):
			// The observed value is whole seconds ("retry-after=3", I-393).
			n, err := strconv.ParseUint(p.Value, 10, 31)
			if err != nil {
				return Response{}, topicError(topic, p.off+len(p.Key)+1,
					fmt.Sprintf("retry-after %q is not a whole number of seconds", p.Value))
			}
			r.RetryAfter, r.HasRetryAfter = time.Duration(n)*time.Second, true
		default:
			r.Params = append(r.Params, p.Param)
		}
	}
	if err := checkRID(topic, params); err != nil {
		return Response{}, err
	}
	return r, nil
}

type param struct {
	Param
	off int // byte offset of the key in the topic
}

// parseQuery parses "?k=v&k=v…" starting at topic[off]. Keys of $rid,
// retry-after and operationId may appear once each (compared
// case-insensitively); empty parameters and parameters without "=" are
// errors.
func parseQuery(topic string, off int) ([]param, error) {
	if off >= len(topic) {
		return nil, topicError(topic, off, `missing "?$rid=" query`)
	}
	if topic[off] != '?' {
		return nil, topicError(topic, off, `expected "?" before the query`)
	}
	var ps []param
	for off < len(topic) {
		off++ // skip '?' or '&'
		kv, k, v, hasEq, end := cutParam(topic, off)
		if problem := paramProblem("query parameter", kv, k, hasEq); problem != "" {
			return nil, topicError(topic, off, problem)
		}
		for _, known := range [...]string{ridKey, retryAfterKey, operationIDKey} {
			if !strings.EqualFold(k, known) {
				continue
			}
			for _, p := range ps {
				if strings.EqualFold(p.Key, known) {
					return nil, topicError(topic, off, "duplicate "+known)
				}
			}
		}
		ps = append(ps, param{Param{k, v}, off})
		off = end
	}
	return ps, nil
}

// checkRID reports a missing or empty $rid, and the "rid" typo.
func checkRID(topic string, ps []param) error {
	for _, p := range ps {
		if strings.EqualFold(p.Key, ridKey) {
			if p.Value == "" {
				return topicError(topic, p.off+len(p.Key)+1, "empty $rid")
			}
			return nil
		}
	}
	for _, p := range ps {
		if strings.EqualFold(p.Key, "rid") {
			e := topicError(topic, p.off, `"rid" without "$": the key is "$rid"`)
			e.Err = ErrRIDWithoutDollar
			return e
		}
	}
	return topicError(topic, len(topic), "missing $rid")
}

func topicError(topic string, off int, msg string) *Error {
	return newError(ErrInvalidTopic, "topic", topic, off, msg)
}
