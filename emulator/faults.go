package emulator

import (
	"fmt"
	"slices"
	"strings"
)

// Fault names one documented DPS behaviour that the emulator can be told to
// break (ARCHITECTURE.md §4 "Fault switches"). Every service spec must fail
// against its matching fault: that is how the suite proves it catches what it
// claims to. Names are kebab-case.
type Fault string

// The fault switches. Each breaks exactly one behaviour; FaultInfo.Breaks
// names the DPS-PROTOCOL.md Part A section (or MQTT clause) it violates.
const (
	FaultAcceptTLS10                  Fault = "accept-tls10"
	FaultAcceptTLS13                  Fault = "accept-tls13"
	FaultAcceptMQTT5                  Fault = "accept-mqtt5"
	FaultAcceptBadUsername            Fault = "accept-bad-username"
	FaultAcceptClientIDMismatch       Fault = "accept-clientid-mismatch"
	FaultAcceptCleanSession0          Fault = "accept-clean-session-0"
	FaultSessionPresent               Fault = "session-present"
	FaultAcceptBadSignature           Fault = "accept-bad-signature"
	FaultAcceptExpiredToken           Fault = "accept-expired-token"
	FaultAcceptOtherDeviceToken       Fault = "accept-other-device-token"
	FaultAcceptWrongSKN               Fault = "accept-wrong-skn"
	FaultAcceptWrongScope             Fault = "accept-wrong-scope"
	FaultNoCloseAfter401              Fault = "no-close-after-401"
	FaultGrantQoS2                    Fault = "grant-qos2"
	FaultDeliverQoS2                  Fault = "deliver-qos2"
	FaultDeliverQoS0                  Fault = "deliver-qos0"
	FaultCloseOnOtherFilter           Fault = "close-on-other-filter"
	FaultPoll202Assigned              Fault = "poll-202-assigned"
	FaultAcceptAnyFilter              Fault = "accept-any-filter"
	FaultAcceptUndocumentedTopic      Fault = "accept-undocumented-topic"
	FaultAcceptQoS2Publish            Fault = "accept-qos2-publish"
	FaultNoPubackFirst                Fault = "no-puback-first"
	FaultOmitRetryAfter               Fault = "omit-retry-after"
	FaultWrongRID                     Fault = "wrong-rid"
	FaultRIDNotFirst                  Fault = "rid-not-first"
	FaultUpperCaseRetryAfter          Fault = "upper-case-retry-after"
	FaultAssignBeforeRetryAfter       Fault = "assign-before-retry-after"
	FaultIncompleteRegistrationState  Fault = "incomplete-registration-state"
	FaultAcceptRegistrationIDMismatch Fault = "accept-registration-id-mismatch"
	FaultNoErrorBody                  Fault = "no-error-body"
	FaultNo404UnknownOperation        Fault = "no-404-unknown-operation"
	FaultNoPollThrottle               Fault = "no-poll-throttle"
	FaultNoRegisterThrottle           Fault = "no-register-throttle"
	FaultNo409                        Fault = "no-409"
	FaultNoSizeLimit                  Fault = "no-size-limit"
	FaultIgnoreMalformed              Fault = "ignore-malformed"
	FaultAcceptInvalidConnect         Fault = "accept-invalid-connect"
	FaultRefuseTLS12                  Fault = "refuse-tls12"
	FaultAcceptPlaintext              Fault = "accept-plaintext"
	FaultRequirePassword              Fault = "require-password"
	FaultWSStrictPath                 Fault = "ws-strict-path"
	FaultWSStrictSubprotocol          Fault = "ws-strict-subprotocol"
	FaultWSNoSubprotocol              Fault = "ws-no-subprotocol"
	FaultWSPacketPerMessage           Fault = "ws-packet-per-message"
	FaultRefuseClientVersion          Fault = "refuse-client-version"
	FaultRefuseKeepAlive0             Fault = "refuse-keepalive-0"
	FaultMaxClientID23                Fault = "max-client-id-23"
	FaultStrictSAS                    Fault = "strict-sas"
	FaultCloseAfterConnack            Fault = "close-after-connack"
	FaultAssignDisabled               Fault = "assign-disabled"
	FaultRequireRegistrationIDBody    Fault = "require-registration-id-body"
	FaultNeverAssign                  Fault = "never-assign"
	FaultGrantQoS0                    Fault = "grant-qos0"
	FaultStrictPollBody               Fault = "strict-poll-body"
	FaultIgnoreQoS0Requests           Fault = "ignore-qos0-requests"
	FaultNoPingresp                   Fault = "no-pingresp"
	FaultKeepSubscription             Fault = "keep-subscription"
	FaultCaseSensitiveRegistrationID  Fault = "case-sensitive-registration-id"
	FaultAuthAtConnect                Fault = "auth-at-connect"
	FaultNoCloseAfterRefusal          Fault = "no-close-after-refusal"
	FaultNarrowRegistrationID         Fault = "narrow-registration-id"
	FaultNoClockSkew                  Fault = "no-clock-skew"
	FaultAcceptTokenWithoutSE         Fault = "accept-token-without-se"
	FaultPoll202NoRegistrationState   Fault = "poll-202-no-registration-state"
	FaultAssignedStateStatus          Fault = "assigned-state-status"
	FaultPrimaryKeyOnly               Fault = "primary-key-only"
	FaultWrongEnrollmentGroupID       Fault = "wrong-enrollment-group-id"
)

// FaultInfo describes one fault switch.
type FaultInfo struct {
	Name Fault
	// Breaks is the rule the fault violates: a DPS-PROTOCOL.md Part A
	// section ("Part A §5") and, where one applies, an MQTT 3.1.1 clause.
	Breaks string
	// Description says in one line what the emulator does differently.
	Description string
}

var faultTable = []FaultInfo{
	{FaultAcceptTLS10, "Part A §1 (D-TLS: TLS 1.2 only)", "accept TLS 1.0 and 1.1 handshakes (with the CBC-SHA suites they need)"},
	{FaultAcceptTLS13, "Part A §1 (D-TLS: TLS 1.2 only)", "accept TLS 1.3 handshakes"},
	{FaultAcceptMQTT5, "Part B §0.1, MQTT-3.1.2-2", "answer CONNACK 0x00 instead of 0x01 to a CONNECT with protocol level other than 4"},
	{FaultAcceptBadUsername, "Part A §3", "accept a CONNECT whose username is not of the DPS form instead of CONNACK 0x04"},
	{FaultAcceptClientIDMismatch, "Part A §3", "accept a ClientId that differs from the username's registration id instead of CONNACK 0x02"},
	{FaultAcceptCleanSession0, "Part A §2 (dps-2019)", "accept CleanSession=0 under dps-2019 instead of CONNACK 0x02 and close"},
	{FaultSessionPresent, "Part A §1, MQTT-3.2.2-1", "answer CONNACK with session-present 1"},
	{FaultAcceptBadSignature, "Part A §3, §4", "accept SAS tokens whose signature does not verify, and X.509 devices whose chain or thumbprint matches no enrollment"},
	{FaultAcceptExpiredToken, "Part A §3, §4", "accept SAS tokens past their expiry (and the 5-minute skew), and X.509 client certificates outside their validity"},
	{FaultAcceptOtherDeviceToken, "Part A §4", "accept a SAS token whose sr names another registration or scope"},
	{FaultAcceptWrongSKN, "Part A §4", "accept a SAS token whose skn is neither absent, empty nor \"registration\""},
	{FaultAcceptWrongScope, "Part A §3", "serve a device whose username names another id scope instead of answering 401"},
	{FaultNoCloseAfter401, "Part A §3", "keep the connection open after answering 401"},
	{FaultGrantQoS2, "Part A §9", "grant QoS 2 in SUBACK when the device asks for it (instead of 1)"},
	{FaultDeliverQoS2, "Part A §6", "deliver answers at QoS 2 whatever the granted QoS (instead of min(granted, 1))"},
	{FaultDeliverQoS0, "Part A §6", "deliver answers at QoS 0 whatever the granted QoS (instead of min(granted, 1))"},
	{FaultCloseOnOtherFilter, "Part A §9, MQTT-3.8.4-1", "close the connection on a SUBSCRIBE to any other filter instead of answering SUBACK 0x80"},
	{FaultAcceptAnyFilter, "Part A §9", "grant any SUBSCRIBE filter instead of SUBACK 0x80"},
	{FaultAcceptUndocumentedTopic, "Part A §9", "ignore a PUBLISH to an undocumented topic instead of closing the connection"},
	{FaultAcceptQoS2Publish, "Part A §9 (IoT Hub: QoS 2 publish closes)", "serve a QoS 2 request (PUBREC/PUBREL/PUBCOMP) instead of closing the connection"},
	{FaultNoPubackFirst, "Part A §6", "send the answer PUBLISH before the PUBACK of a QoS 1 request"},
	{FaultOmitRetryAfter, "Part A §5, §6, §8", "leave retry-after out of 202 and 429 answers (a 503 keeps its own)"},
	{FaultWrongRID, "Part A §5", "echo a $rid different from the request's"},
	{FaultRIDNotFirst, "Part A §5", "write retry-after before $rid in answer topics"},
	{FaultUpperCaseRetryAfter, "Part A §5", "write the retry-after key as \"Retry-After\""},
	{FaultPoll202Assigned, "Part A §6", "answer a poll of a pending operation 202 with status \"assigned\" in the body (instead of \"assigning\")"},
	{FaultAssignBeforeRetryAfter, "Part A §6", "answer 200 to a poll that comes before the retry-after of the register answer has elapsed"},
	{FaultIncompleteRegistrationState, "Part A §6", "leave deviceId, createdDateTimeUtc, lastUpdatedDateTimeUtc, substatus and etag out of the final registrationState"},
	{FaultAcceptRegistrationIDMismatch, "Part A §7", "accept a register body whose registrationId differs from the connection's instead of answering 400"},
	{FaultNoErrorBody, "Part A §8", "send error answers (4xx/5xx) with an empty body"},
	{FaultNo404UnknownOperation, "Part A §8", "answer a poll for an unknown operationId with 202 assigning instead of 404"},
	{FaultNoPollThrottle, "Part A §8", "never throttle polls (no 429 after 5 polls per 10 s)"},
	{FaultNoRegisterThrottle, "Part A §8", "never throttle registrations (no 429 over the per-minute budget)"},
	{FaultNo409, "Part A §8", "accept a second concurrent registration of one device instead of answering 409"},
	{FaultNoSizeLimit, "Part A §7", "accept packets over the 96 KB limit instead of closing the connection"},
	{FaultIgnoreMalformed, "MQTT-4.8.0-1", "skip a malformed or invalid packet and keep the connection instead of closing it"},
	{FaultAcceptInvalidConnect, "MQTT-4.8.0-1, MQTT-3.1.4-1", "answer a malformed or invalid CONNECT with CONNACK 0 and keep the connection instead of closing it"},
	{FaultRefuseTLS12, "Part A §1 (D-TLS: TLS 1.2 required)", "accept only TLS 1.3 handshakes (MinVersion 1.3) on the MQTT and WSS listeners"},
	{FaultAcceptPlaintext, "D-MQTT: no non-secure connections", "serve plaintext MQTT on the TLS port when the first byte is a CONNECT (0x10) instead of failing the handshake"},
	{FaultRequirePassword, "Part B §1.6 (X.509: no password)", "refuse a CONNECT without a password (or with an empty one) with CONNACK 0x04"},
	{FaultWSStrictPath, "Part A §10", "accept the WebSocket upgrade only on /$iothub/websocket (404 on / and /mqtt)"},
	{FaultWSStrictSubprotocol, "Part A §10", "accept only the WebSocket subprotocol \"mqtt\" (refuse \"MQTT\" with 400)"},
	{FaultWSNoSubprotocol, "D-MQTT, RFC 6455 §4.2.2 (subprotocol mqtt)", "complete the WebSocket upgrade without selecting a subprotocol (no Sec-WebSocket-Protocol in the 101)"},
	{FaultWSPacketPerMessage, "Part A §10, MQTT-6.0.0-2 (WebSocket frames are a byte stream)", "read each WebSocket message as exactly one whole MQTT packet: a message holding part of a packet (the Node SDK's one field per frame) or more than one closes the connection (1002)"},
	{FaultRefuseClientVersion, "Part B §1.2", "refuse a username with anything after api-version (e.g. &ClientVersion=) with CONNACK 0x04"},
	{FaultRefuseKeepAlive0, "Part B §10.1", "refuse a CONNECT with keep-alive 0 with CONNACK 0x02"},
	{FaultMaxClientID23, "Part B §1.1, §10.1", "refuse a ClientId longer than 23 characters with CONNACK 0x02"},
	{FaultStrictSAS, "Part A §4", "answer 401 to SAS tokens not in the documented form (order sr, sig, se, skn; lower-case %2f; skn=registration)"},
	{FaultCloseAfterConnack, "D-MQTT (a documented CONNECT opens a session)", "close the connection right after CONNACK 0x00"},
	{FaultAssignDisabled, "Part A §8", "assign a device whose enrollment is disabled instead of answering 200 with status \"disabled\""},
	{FaultRequireRegistrationIDBody, "Part A §7", "answer 400 to a register request whose body has no registrationId (empty or payload only)"},
	{FaultNeverAssign, "D-MQTT (poll until 200 assigned)", "answer every poll 202 assigning, never completing the assignment"},
	{FaultGrantQoS0, "Part A §9 (QoS 0 and 1 granted as asked)", "grant QoS 0 in SUBACK to the documented filter whatever the device asks"},
	{FaultStrictPollBody, "Part A §7 (poll bodies are ignored)", "answer 400 to a poll whose body is not empty (the single space of Node and Python, the registration JSON of C)"},
	{FaultIgnoreQoS0Requests, "Part A §6 (QoS 0 requests: C, Java, FreeRTOS)", "leave register and poll requests published at QoS 0 unanswered"},
	{FaultNoPingresp, "MQTT-3.12.4-1", "leave PINGREQ unanswered (the keep-alive of a device that waits between polls)"},
	{FaultKeepSubscription, "Part A §2 (dps-2023: no state carried over)", "keep the subscription of a CleanSession=0 connection for the next CleanSession=0 connection of the same device"},
	{FaultCaseSensitiveRegistrationID, "Part A §11 (registration ids compared case-insensitively)", "compare registration ids case-sensitively: refuse a ClientId that differs from the username's registration id only in letter case with CONNACK 0x02, and answer 400 to a register body whose registrationId differs from the connection's only in letter case"},
	{FaultAuthAtConnect, "Part A §3 (proof of possession judged at the register request)", "judge proof of possession at CONNECT: refuse a CONNECT whose SAS token, id scope or client certificate fails attestation with CONNACK 0x05 (not authorized) instead of accepting it and answering the register 401"},
	{FaultNoCloseAfterRefusal, "Part A §2, §3 (a refusal CONNACK and close), MQTT-3.2.2-5", "keep the connection open after every refusal CONNACK (bad username 0x04, ClientId mismatch 0x02, CleanSession=0 under dps-2019 0x02, protocol level 0x01, …), reading and ignoring what the device sends until it closes, instead of closing it"},
	{FaultNarrowRegistrationID, "Part A §11 (registration ids of letters, digits and - . _ :)", "validate registration ids narrowly, as letters, digits and '-' only (the 2018 symmetric key page's rule): refuse a CONNECT whose registration id holds '.', '_' or ':' with CONNACK 0x02"},
	{FaultNoClockSkew, "Part A §4 (allow 5 minutes of clock skew)", "refuse a SAS token (401) as soon as its expiry se has passed, allowing no clock skew instead of 5 minutes"},
	{FaultAcceptTokenWithoutSE, "Part A §4 (sig, se and sr required)", "accept a SAS token without se as one that never expires (its signature over sr and a newline) instead of answering its register 401"},
	{FaultPoll202NoRegistrationState, "Part A §6 (polls answered 202 with registrationState{registrationId, status:\"assigning\"})", "answer a poll of a pending operation 202 with a body of operationId and status only, without registrationState"},
	{FaultAssignedStateStatus, "Part A §6 (200 with status assigned and a full registrationState)", "answer the final poll 200 with status assigned but a registrationState whose status is still assigning"},
	{FaultWrongEnrollmentGroupID, "Part A §6 (x509 or symmetricKey sub-objects), Part B §4.5 (symmetricKey {enrollmentGroupId})", "answer the final poll of a symmetric key device with registrationState.symmetricKey.enrollmentGroupId its registration id, not its enrollment group's id (nor none, for an individual enrollment)"},
	{FaultPrimaryKeyOnly, "Part A §4 (try the primary then the secondary key)", "check a SAS token against the enrollment's primary key only (for a group, the key derived from its primary key): a token signed with the secondary key is answered 401"},
}

// Faults returns every fault switch with what it breaks, in a stable order.
func Faults() []FaultInfo {
	return slices.Clone(faultTable)
}

// ParseFault returns the fault named s. An unknown name is an error that
// lists the known ones.
func ParseFault(s string) (Fault, error) {
	for _, f := range faultTable {
		if string(f.Name) == s {
			return f.Name, nil
		}
	}
	names := make([]string, len(faultTable))
	for i, f := range faultTable {
		names[i] = string(f.Name)
	}
	return "", fmt.Errorf("emulator: unknown fault %q (known: %s)", s, strings.Join(names, ", "))
}

// faultSet is the set of enabled faults of one server.
type faultSet map[Fault]bool

func newFaultSet(fs []Fault) (faultSet, error) {
	set := faultSet{}
	for _, f := range fs {
		if _, err := ParseFault(string(f)); err != nil {
			return nil, err
		}
		set[f] = true
	}
	return set, nil
}

func (s faultSet) has(f Fault) bool { return s[f] }
