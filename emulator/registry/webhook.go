package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// maxWebhookResponse bounds the body read from a custom allocation webhook.
const maxWebhookResponse = 1 << 20

// AllocationRequest is the body DPS POSTs to a custom allocation webhook
// (learn.microsoft.com/azure/iot-dps/concepts-custom-allocation, "Custom
// allocation policy request"). Exactly one of IndividualEnrollment and
// EnrollmentGroup is set; symmetric keys are removed from it.
type AllocationRequest struct {
	IndividualEnrollment *IndividualEnrollment `json:"individualEnrollment,omitempty"`
	EnrollmentGroup      *EnrollmentGroup      `json:"enrollmentGroup,omitempty"`
	DeviceRuntimeContext DeviceRuntimeContext  `json:"deviceRuntimeContext"`
	// LinkedHubs are the host names the webhook may choose from.
	LinkedHubs []string `json:"linkedHubs"`
}

// DeviceRuntimeContext is AllocationRequest.deviceRuntimeContext.
type DeviceRuntimeContext struct {
	RegistrationID        string                              `json:"registrationId"`
	CurrentIoTHubHostName string                              `json:"currentIotHubHostName,omitempty"`
	CurrentDeviceID       string                              `json:"currentDeviceId,omitempty"`
	X509                  *dps.X509RegistrationResult         `json:"x509,omitempty"`
	SymmetricKey          *dps.SymmetricKeyRegistrationResult `json:"symmetricKey,omitempty"`
	// Payload is the device's register request payload, passed through.
	Payload json.RawMessage `json:"payload,omitempty"`
}

// AllocationResponse is the webhook's answer ("Custom allocation policy
// response"): the chosen hub, an optional initial twin and an optional
// payload returned to the device as registrationState.payload.
type AllocationResponse struct {
	IoTHubHostName string          `json:"iotHubHostName"`
	InitialTwin    json.RawMessage `json:"initialTwin,omitempty"`
	Payload        json.RawMessage `json:"payload,omitempty"`
}

// callWebhook runs the custom allocation policy. Every failure (transport
// error, timeout, non-2xx status, bad JSON, an initialTwin or payload that
// is not a JSON object, a hub that is not a candidate) is a 400207
// allocation failure. null counts as absent for both.
func (r *Registry) callWebhook(ctx context.Context, a *Attestation, c common, ind *IndividualEnrollment, grp *EnrollmentGroup, deviceID string, prev *record, payload json.RawMessage, cands []LinkedHub) (string, json.RawMessage, json.RawMessage, *allocFailure) {
	fail := func(format string, args ...any) *allocFailure {
		return &allocFailure{errCodeCustomAllocationFailed, "Custom allocation failed" + fmt.Sprintf(format, args...)}
	}
	if c.custom == nil || c.custom.WebhookURL == "" {
		return "", nil, nil, fail(": no webhook configured")
	}
	req := AllocationRequest{
		DeviceRuntimeContext: DeviceRuntimeContext{RegistrationID: a.RegistrationID},
		LinkedHubs:           []string{},
	}
	if len(payload) > 0 && string(payload) != "null" {
		req.DeviceRuntimeContext.Payload = payload
	}
	if prev != nil {
		req.DeviceRuntimeContext.CurrentIoTHubHostName = prev.State.AssignedHub
		req.DeviceRuntimeContext.CurrentDeviceID = prev.State.DeviceID
	}
	var st dps.DeviceRegistrationResult
	r.attestationResult(a, &st)
	req.DeviceRuntimeContext.X509, req.DeviceRuntimeContext.SymmetricKey = st.X509, st.SymmetricKey
	if ind != nil {
		en := *ind
		en.Attestation = redactAttestation(en.Attestation)
		req.IndividualEnrollment = &en
	} else {
		g := *grp
		g.Attestation = redactAttestation(g.Attestation)
		req.EnrollmentGroup = &g
	}
	for _, h := range cands {
		req.LinkedHubs = append(req.LinkedHubs, h.Name)
	}
	body, err := json.Marshal(&req)
	if err != nil {
		return "", nil, nil, fail(": %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(wctx, http.MethodPost, c.custom.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return "", nil, nil, fail(": bad webhook URL")
	}
	hr.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := r.client.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (Assign returns ctx's error): not the
			// webhook's fault, nothing to warn about.
			return "", nil, nil, fail(": %v", ctx.Err())
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return "", nil, nil, fail(": webhook did not answer within %s", r.timeout)
		}
		// The URL may carry a function key: log the host only.
		r.log.Warn("registry: custom allocation webhook", "host", hr.URL.Host, "err", redactURLError(err))
		return "", nil, nil, fail(": webhook unreachable")
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxWebhookResponse+1))
	if err != nil {
		return "", nil, nil, fail(": reading the webhook answer: %v", redactURLError(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", nil, nil, fail(" with status code: %d", resp.StatusCode)
	}
	if len(data) > maxWebhookResponse {
		return "", nil, nil, fail(": webhook answer larger than %d bytes", maxWebhookResponse)
	}
	var out AllocationResponse
	if err := json.Unmarshal(data, &out); err != nil {
		// Say what was wrong in the webhook's terms, not Go's.
		why := "it is not valid JSON"
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			why = fmt.Sprintf("its member %q is a JSON %s", te.Field, te.Value)
		case errors.As(err, &te):
			why = fmt.Sprintf("it is a JSON %s, not an object", te.Value)
		}
		return "", nil, nil, fail(": webhook answer is not an AllocationResponse: %s", why)
	}
	if out.IoTHubHostName == "" {
		return "", nil, nil, fail(": webhook answer has no iotHubHostName")
	}
	if string(out.Payload) == "null" {
		out.Payload = nil
	}
	if string(out.InitialTwin) == "null" {
		out.InitialTwin = nil
	}
	// The payload goes back to the device as registrationState.payload,
	// which SPEC models.tsp types "any JSON object" (DPS-PROTOCOL.md Part B
	// §4.5; D-PAYLOAD: the payload "must be a JSON object"), and EC's parser
	// refuses anything but an object or null. No source says what DPS does
	// with a string, array, number or boolean there; the strictest
	// documented reading is that such an answer is not an allocation, so it
	// fails like any other unusable webhook answer: 400207 (Part B §4.7,
	// "custom allocation failed"), never a payload the device cannot parse.
	//
	// initialTwin is stored with the registration as the twin the hub is
	// given: {tags, properties{desired}} (Part B, enrollment fields), the
	// shape of an enrollment's initialTwin. A string, array, number or
	// boolean there is no twin, and fails the same way.
	for _, m := range []struct {
		name string
		raw  json.RawMessage
	}{{"initialTwin", out.InitialTwin}, {"payload", out.Payload}} {
		if len(m.raw) > 0 {
			if k := jsonKind(m.raw); k != "object" {
				return "", nil, nil, fail(": webhook answer is not an AllocationResponse: its member %q is a JSON %s, not an object", m.name, k)
			}
		}
	}
	for _, h := range cands {
		if strings.EqualFold(h.Name, out.IoTHubHostName) {
			return h.Name, out.InitialTwin, out.Payload, nil
		}
	}
	return "", nil, nil, fail(": webhook chose %q, which is not a linked hub of the enrollment", out.IoTHubHostName)
}

// jsonKind names the kind of the JSON value raw, which json.Unmarshal has
// already accepted, in the words of json.UnmarshalTypeError.Value.
func jsonKind(raw json.RawMessage) string {
	switch b := bytes.TrimLeft(raw, " \t\r\n"); {
	case len(b) == 0:
		return "empty value"
	case b[0] == '{':
		return "object"
	case b[0] == '[':
		return "array"
	case b[0] == '"':
		return "string"
	case b[0] == 't' || b[0] == 'f':
		return "boolean"
	case b[0] == 'n':
		return "null"
	default:
		return "number"
	}
}

// redactAttestation removes key material before an enrollment leaves the
// registry.
func redactAttestation(a AttestationMechanism) AttestationMechanism {
	if a.SymmetricKey != nil {
		a.SymmetricKey = &SymmetricKeyAttestation{}
	}
	return a
}

// redactURLError drops the URL (which may hold a function key) from a
// transport error.
func redactURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// SlowAllocationWebhook is a custom allocation webhook that assigns every
// device to the first of its request's linkedHubs, after delay: an
// enrollment that uses it keeps each registration "assigning" for that
// long, as a webhook (an Azure Function, say) doing slow work does. The
// conformance suites' emulators serve it for DPS-REG-009, which needs a
// registration still in progress to register over. A request cancelled
// before the delay gets no answer.
func SlowAllocationWebhook(delay time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		var req AllocationRequest
		if err := json.NewDecoder(io.LimitReader(hr.Body, maxWebhookResponse)).Decode(&req); err != nil || len(req.LinkedHubs) == 0 {
			http.Error(w, "not an allocation request with linkedHubs", http.StatusBadRequest)
			return
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-hr.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(AllocationResponse{IoTHubHostName: req.LinkedHubs[0]})
	})
}

// SlowGroup is a symmetric key enrollment group with primary key key whose
// allocation is the custom webhook at webhookURL: with a
// SlowAllocationWebhook there, the group of slow assignments the suites'
// emulators enroll for DPS-REG-009.
func SlowGroup(id, key, webhookURL string) EnrollmentGroup {
	return EnrollmentGroup{
		EnrollmentGroupID: id,
		Attestation: AttestationMechanism{
			Type:         AttestationSymmetricKey,
			SymmetricKey: &SymmetricKeyAttestation{PrimaryKey: key},
		},
		AllocationPolicy:           AllocationCustom,
		CustomAllocationDefinition: &CustomAllocationDefinition{WebhookURL: webhookURL},
	}
}
