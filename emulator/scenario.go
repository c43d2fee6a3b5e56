package emulator

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/dps"
	"github.com/dps-conform/dps-conform/emulator/registry"
)

// Scenario scripts the emulator's answers for the device role: the
// situations of DPS-PROTOCOL.md Part A and Part B §4.3 that a device must
// handle (throttling, 401, transient 5xx, a lost connection, a withheld
// CONNACK, a disabled enrollment, a failed allocation). Counts are per
// registration id: "the first N register requests of each device". The
// zero Scenario is the normal flow.
type Scenario struct {
	// Name is how reports name the scenario.
	Name string
	// Register429 answers the first N register requests with 429 and a
	// retry-after of ThrottleRetryAfter; Poll429 does the same to polls.
	Register429, Poll429 int
	// Always401 answers every register request with 401 (errorCode
	// 401000) and closes the connection, whatever the credentials.
	Always401 bool
	// Register500 answers the first N register requests with 500 and no
	// retry-after (a transient service error).
	Register500 int
	// OmitOperationID answers the first poll with a 202 whose body has no
	// operationId (EC mqtt_state_machine.md: a poll may return without it).
	OmitOperationID bool
	// DropAtPoll closes the connection on the first poll of each device,
	// without answering it (a connection lost mid-poll).
	DropAtPoll bool
	// WithholdConnack leaves the first N CONNECTs of each device
	// unanswered until the device gives up or the CONNECT timeout closes
	// the connection.
	WithholdConnack int
	// DisabledEnrollment enrolls the device with provisioningStatus
	// disabled: its registration ends in a 200 answer with status
	// "disabled" (Part A §8). Enroll makes the enrollment so; the emulator
	// answers from the registry as for any device.
	DisabledEnrollment bool
	// FailedAllocation enrolls the device with custom allocation whose
	// webhook answers 500: its registration ends in a 200 answer with
	// status "failed" and registrationState errorCode 400207 (Part A §8;
	// Part B §4.4, §4.7). Enroll makes the enrollment and the webhook;
	// the emulator answers from the registry as for any device.
	FailedAllocation bool
	// ThrottleRetryAfter is the retry-after of scripted 429 answers; zero
	// means 2 s.
	ThrottleRetryAfter time.Duration
}

// The named scenarios of `dps-conform device --scenario NAME` that the
// emulator scripts; TLS scenarios (hostile certificates) are a matter of
// the server certificate and live with the device command.
var scenarioTable = []Scenario{
	{Name: "normal"},
	{Name: "register-429", Register429: 1},
	{Name: "poll-429", Poll429: 1},
	{Name: "unauthorized-401", Always401: true},
	{Name: "transient-500", Register500: 2},
	{Name: "poll-no-operation-id", OmitOperationID: true},
	{Name: "disconnect-mid-poll", DropAtPoll: true},
	{Name: "connack-withheld", WithholdConnack: 2},
	{Name: "enrollment-disabled", DisabledEnrollment: true},
	{Name: "enrollment-failed", FailedAllocation: true},
}

// Enroll makes e, the individual enrollment of the device under test, as
// the scenario wants it (DisabledEnrollment, FailedAllocation), and
// returns the HTTP client the registry must call its custom allocation
// webhook with (registry.Options.HTTPClient); nil when the default will
// do.
func (s *Scenario) Enroll(e *registry.IndividualEnrollment) *http.Client {
	if s.DisabledEnrollment {
		e.ProvisioningStatus = registry.ProvisioningDisabled
	}
	if !s.FailedAllocation {
		return nil
	}
	e.AllocationPolicy = registry.AllocationCustom
	e.CustomAllocationDefinition = &registry.CustomAllocationDefinition{WebhookURL: failingWebhookURL}
	return &http.Client{Transport: failingWebhook{}}
}

// failingWebhookURL is the custom allocation webhook of FailedAllocation's
// enrollment. failingWebhook answers it in process: nothing is dialled.
const failingWebhookURL = "http://enrollment-failed.invalid/allocate"

// failingWebhook is the http.RoundTripper of FailedAllocation's registry:
// it answers every webhook call 500, which the registry takes for a failed
// custom allocation (status failed, errorCode 400207, Part B §4.7).
type failingWebhook struct{}

func (failingWebhook) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		r.Body.Close()
	}
	return &http.Response{
		Status: "500 Internal Server Error", StatusCode: http.StatusInternalServerError,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: r,
	}, nil
}

// Scenarios lists the named scenarios, in a stable order.
func Scenarios() []Scenario { return append([]Scenario(nil), scenarioTable...) }

// LookupScenario returns the scenario called name.
func LookupScenario(name string) (Scenario, error) {
	for _, s := range scenarioTable {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(scenarioTable))
	for i, s := range scenarioTable {
		names[i] = s.Name
	}
	sort.Strings(names)
	return Scenario{}, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(names, ", "))
}

func (sc *Scenario) throttle() int {
	if sc.ThrottleRetryAfter <= 0 {
		return 2
	}
	return retryAfterSeconds(sc.ThrottleRetryAfter)
}

// scenarioState counts, per registration id and event, what a scenario
// has done so far.
type scenarioState struct {
	mu     sync.Mutex
	counts map[string]int
}

// next increments the count of event for regID and reports whether it is
// still within n (the event is the n-th or earlier).
func (st *scenarioState) next(event, regID string, n int) bool {
	if n <= 0 {
		return false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.counts == nil {
		st.counts = map[string]int{}
	}
	k := event + "\x00" + regKey(regID)
	st.counts[k]++
	return st.counts[k] <= n
}

// scriptRegister is the scripted answer to a register request, if any.
func (ss *session) scriptRegister() (answer, bool) {
	s := ss.srv
	sc := s.cfg.Scenario
	switch {
	case sc == nil:
		return answer{}, false
	case sc.Always401:
		a := s.errorAnswer(401, dps.ErrorCodeUnauthorized, "Unauthorized", -1)
		a.close = true
		ss.log.Info("scenario: 401", "scenario", sc.Name)
		return a, true
	case s.scenario.next("register500", ss.regID, sc.Register500):
		ss.log.Info("scenario: 500", "scenario", sc.Name)
		return s.errorAnswer(500, errorCodeInternal, "Internal server error.", -1), true
	case s.scenario.next("register429", ss.regID, sc.Register429):
		ss.log.Info("scenario: 429 on register", "scenario", sc.Name)
		return s.errorAnswer(429, errorCodeThrottled, "Too many requests.", sc.throttle()), true
	}
	return answer{}, false
}

// scriptPoll is the scripted answer to a poll, if any; an answer with drop
// set closes the connection without answering.
func (ss *session) scriptPoll() (answer, bool) {
	s := ss.srv
	sc := s.cfg.Scenario
	switch {
	case sc == nil:
		return answer{}, false
	case sc.DropAtPoll && s.scenario.next("drop", ss.regID, 1):
		ss.log.Info("scenario: closing the connection mid-poll", "scenario", sc.Name)
		return answer{drop: true}, true
	case s.scenario.next("poll429", ss.regID, sc.Poll429):
		ss.log.Info("scenario: 429 on poll", "scenario", sc.Name)
		return s.errorAnswer(429, errorCodeThrottled, "Too many requests.", sc.throttle()), true
	case sc.OmitOperationID && s.scenario.next("noop", ss.regID, 1):
		ss.log.Info("scenario: 202 without operationId", "scenario", sc.Name)
		// statusAnswer would write "operationId":"" (the field is always
		// written); the scenario leaves the member out altogether.
		return answer{status: 202, retryAfter: s.retryAfterParam(), body: []byte(`{"status":"assigning"}`)}, true
	}
	return answer{}, false
}

// withholdConnack reports whether this CONNECT gets no CONNACK; the
// session then reads until the device gives up.
func (ss *session) withholdConnack() bool {
	sc := ss.srv.cfg.Scenario
	if sc == nil || !ss.srv.scenario.next("connack", ss.regID, sc.WithholdConnack) {
		return false
	}
	ss.log.Info("scenario: CONNACK withheld", "scenario", sc.Name)
	ss.drain()
	return true
}
