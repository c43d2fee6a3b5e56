package registry

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/dps-conform/dps-conform/dps"
)

// Error codes of failed assignments (DPS-PROTOCOL.md §4.7).
const (
	errCodeCustomAllocationFailed = dps.ErrorCodeCustomAllocationFailed // 400207
	errCodeHubNotSpecified        = dps.ErrorCodeHubNotSpecified        // 400208
	errCodeEnrollmentNotFound     = dps.ErrorCodeEnrollmentNotFound     // 404201
)

// allocFailure is an assignment that ends in status "failed".
type allocFailure struct {
	code int
	msg  string
}

// Assign allocates a hub to an attested device, applies the enrollment's
// reprovision policy and records the registration.
//
// It returns the full registrationState. A disabled enrollment (individual,
// or the group when the device has no individual enrollment) gives Status
// "disabled" and records nothing. A failed allocation (custom webhook error
// or timeout: errorCode 400207; no hub to choose from: 400208; enrollment
// deleted since Attest: 404201) gives Status "failed" with ErrorCode and
// ErrorMessage, and records nothing. An error is returned only for internal
// failures (storage, cancelled ctx); an "assigned" result has been committed
// to the database with fsync when Assign returns.
//
// payload is the register request's payload (custom allocation data); it is
// passed to the custom allocation webhook as deviceRuntimeContext.payload.
func (r *Registry) Assign(ctx context.Context, a *Attestation, payload json.RawMessage) (dps.DeviceRegistrationResult, error) {
	if a == nil || (a.individual == nil && a.group == nil) {
		return dps.DeviceRegistrationResult{}, errors.New("registry: Assign needs an Attestation from Attest")
	}
	if r.closed.Load() {
		return dps.DeviceRegistrationResult{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return dps.DeviceRegistrationResult{}, err
	}
	// Re-read the enrollment: it may have been changed, disabled or
	// deleted since Attest.
	var ind *IndividualEnrollment
	var grp *EnrollmentGroup
	var prev *record
	gen := r.gen.Load() // before the transaction: see cachedGroups
	err := r.db.View(func(tx *bolt.Tx) error {
		if a.individual != nil {
			var en IndividualEnrollment
			found, err := getJSON(tx, bucketEnrollments, idKey(a.individual.RegistrationID), &en)
			if err != nil {
				return err
			}
			if found {
				ind = &en
			}
		} else {
			groups, err := r.cachedGroups(tx, gen)
			if err != nil {
				return err
			}
			for i := range groups {
				if strings.EqualFold(groups[i].EnrollmentGroupID, a.group.EnrollmentGroupID) {
					grp = &groups[i] // shared: read only
					break
				}
			}
		}
		var rec record
		found, err := r.getRegistration(tx, idKey(a.RegistrationID), &rec)
		if err != nil {
			return err
		}
		if found && rec.State.Status == dps.StatusAssigned {
			prev = &rec
		}
		return nil
	})
	if err != nil {
		return dps.DeviceRegistrationResult{}, err
	}
	if ind == nil && grp == nil {
		return failed(a, allocFailure{errCodeEnrollmentNotFound, "Enrollment not found."}), nil
	}
	var c common
	var twin *InitialTwin
	var rp *ReprovisionPolicy
	deviceID := a.RegistrationID
	if ind != nil {
		c, twin, rp = ind.common(), ind.InitialTwin, ind.ReprovisionPolicy
		if ind.DeviceID != "" {
			deviceID = ind.DeviceID
		}
	} else {
		c, twin, rp = grp.common(), grp.InitialTwin, grp.ReprovisionPolicy
	}
	if c.status == ProvisioningDisabled && !a.ignoreDisabled {
		return dps.DeviceRegistrationResult{RegistrationID: a.RegistrationID, Status: dps.StatusDisabled}, nil
	}
	policy := ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	if rp != nil {
		policy = *rp
	}

	now := r.now()
	ts := dps.FormatTimestamp(now)
	res := dps.DeviceRegistrationResult{
		RegistrationID:         a.RegistrationID,
		CreatedDateTimeUTC:     ts,
		DeviceID:               deviceID,
		Status:                 dps.StatusAssigned,
		Substatus:              dps.SubstatusInitialAssignment,
		LastUpdatedDateTimeUTC: ts,
		ETag:                   newETag(),
	}
	r.attestationResult(a, &res)
	rec := record{EnrollmentGroupID: a.EnrollmentGroupID}
	if twin != nil {
		rec.InitialTwin, _ = json.Marshal(twin)
	}

	switch {
	case prev != nil && !policy.UpdateHubAssignment:
		// "Never re-provision": the device stays where it is, a hub it
		// is already on (reprovisionSubstatus).
		res.CreatedDateTimeUTC = prev.State.CreatedDateTimeUTC
		res.AssignedHub = prev.State.AssignedHub
		res.Substatus = dps.SubstatusReprovisionedToInitialAssignment
		res.Payload = prev.State.Payload
		rec.InitialHub = prev.InitialHub
		rec.InitialTwin = prev.InitialTwin
	default:
		hub, whTwin, whPayload, fail := r.allocate(ctx, a, c, ind, grp, deviceID, prev, payload)
		if fail != nil {
			if err := ctx.Err(); err != nil {
				// Cancelled during the webhook call: an error, not a
				// failed registration.
				return dps.DeviceRegistrationResult{}, err
			}
			return failed(a, *fail), nil
		}
		res.AssignedHub = hub
		res.Payload = whPayload
		if whTwin != nil {
			rec.InitialTwin = whTwin
		}
		rec.InitialHub = hub
		if prev != nil {
			res.CreatedDateTimeUTC = prev.State.CreatedDateTimeUTC
			rec.InitialHub = prev.InitialHub
			res.Substatus = reprovisionSubstatus(prev, hub, policy)
		}
	}
	if res.Substatus == dps.SubstatusReprovisionedToInitialAssignment && beforeReprovisionedSubstatus(a.apiVersion) {
		res.Substatus = dps.SubstatusInitialAssignment
	}
	if err := ctx.Err(); err != nil {
		return dps.DeviceRegistrationResult{}, err
	}
	rec.State = res
	// With a state dir the commit ends with fdatasync before returning
	// (DB.NoSync is false), so an "assigned" answer survives kill -9;
	// concurrent assignments share one commit (group commit, without a
	// timer: a lone assignment commits at once) instead of queueing one
	// fsync each. put may run more than once: it only puts.
	data, err := json.Marshal(&rec)
	if err != nil {
		return dps.DeviceRegistrationResult{}, fmt.Errorf("registry: encode %s: %w", bucketRegistrations, err)
	}
	key := idKey(a.RegistrationID)
	put := func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRegistrations).Put(key, data)
	}
	if r.mem != nil {
		r.mem.put(key, data)
	} else {
		err = r.commits.run(put)
	}
	if err != nil {
		return dps.DeviceRegistrationResult{}, fmt.Errorf("registry: record registration: %w", err)
	}
	r.log.Debug("registry: assigned", "registrationId", a.RegistrationID, "hub", res.AssignedHub, "substatus", res.Substatus)
	return res, nil
}

// reprovisionSubstatus is the substatus of a device registering again with
// updateHubAssignment true (DPS-PROTOCOL.md Part B §4.5, §9; SPEC
// models.tsp):
//
//   - the hub it is already on, or the hub of its first assignment:
//     reprovisionedToInitialAssignment, "re-provisioned to a previously
//     assigned IoT hub", whatever migrateDeviceData says;
//   - another hub: deviceDataMigrated or deviceDataReset after
//     migrateDeviceData, the two values SPEC defines for a device
//     "assigned to a different IoT hub" (Part B §9: deviceDataMigrated
//     "when the hub changes").
//
// Part A and Part B do not name the substatus of a registration that keeps
// the device on its hub. The reading above is the SPEC wording's, and two
// sources back it. The .NET SDK's ProvisioningRegistrationSubstatusType doc
// says ReprovisionedToInitialAssignment "is returned if the device
// previously existed in hub" from api-version 2019-04-15, and
// InitialAssignment before (Part B §1.2). Azure/azure-iot-cli-extension's
// live DPS test registered a device of a default-policy group twice onto
// its one hub: through the runtime REST API at api-version 2021-10-01 it
// expected reprovisionedToInitialAssignment the second time (commit
// 40cb7db6), and through the Python device SDK (api-version 2019-03-31) it
// expects initialAssignment, with the note "The device sdk always returns a
// substatus of initialAssignment, when that should not be the case if a
// device is reregistered" (commit b252c25f). Assign therefore answers
// initialAssignment instead for api-versions before 2019-04-15
// (beforeReprovisionedSubstatus). "Never re-provision" keeps the device on
// its hub and gets the same substatus (Assign).
func reprovisionSubstatus(prev *record, hub string, p ReprovisionPolicy) dps.Substatus {
	switch {
	case strings.EqualFold(hub, prev.State.AssignedHub), strings.EqualFold(hub, prev.InitialHub):
		return dps.SubstatusReprovisionedToInitialAssignment
	case p.MigrateDeviceData:
		return dps.SubstatusDeviceDataMigrated
	default:
		return dps.SubstatusDeviceDataReset
	}
}

// beforeReprovisionedSubstatus reports whether api-version v predates
// 2019-04-15, the first to answer reprovisionedToInitialAssignment (the
// .NET SDK's ProvisioningRegistrationSubstatusType doc). api-versions are
// dates with an optional "-preview" suffix, so they compare as text; an
// empty one is taken as current.
func beforeReprovisionedSubstatus(v string) bool {
	return v != "" && v < "2019-04-15"
}

// failed is the registrationState of a failed assignment.
func failed(a *Attestation, f allocFailure) dps.DeviceRegistrationResult {
	return dps.DeviceRegistrationResult{
		RegistrationID: a.RegistrationID,
		Status:         dps.StatusFailed,
		ErrorCode:      f.code,
		ErrorMessage:   f.msg,
	}
}

// attestationResult fills registrationState.x509 or .symmetricKey.
func (r *Registry) attestationResult(a *Attestation, res *dps.DeviceRegistrationResult) {
	switch a.Kind {
	case X509:
		x := &dps.X509RegistrationResult{EnrollmentGroupID: a.EnrollmentGroupID}
		if a.leaf != nil {
			x.CertificateInfo = certInfo(a.leaf)
		}
		if a.signer != nil {
			x.SigningCertificateInfo = certInfo(a.signer)
		}
		res.X509 = x
	default:
		res.SymmetricKey = &dps.SymmetricKeyRegistrationResult{EnrollmentGroupID: a.EnrollmentGroupID}
	}
}

// certInfo describes c the way the service does (§4.5): thumbprints and
// serial number in upper-case hex.
func certInfo(c *x509.Certificate) *dps.X509CertificateInfo {
	s1 := sha1.Sum(c.Raw)
	s256 := sha256.Sum256(c.Raw)
	return &dps.X509CertificateInfo{
		SubjectName:      c.Subject.String(),
		SHA1Thumbprint:   strings.ToUpper(hex.EncodeToString(s1[:])),
		SHA256Thumbprint: strings.ToUpper(hex.EncodeToString(s256[:])),
		IssuerName:       c.Issuer.String(),
		NotBeforeUTC:     dps.FormatTimestamp(c.NotBefore),
		NotAfterUTC:      dps.FormatTimestamp(c.NotAfter),
		SerialNumber:     strings.ToUpper(c.SerialNumber.Text(16)),
		Version:          c.Version,
	}
}

// candidates returns the hubs an enrollment may be assigned to: its iotHubs
// when set, else the linked hubs that apply allocation policies (all of them
// when none is marked).
func (r *Registry) candidates(c common) []LinkedHub {
	var out []LinkedHub
	if len(c.hubs) > 0 {
		for _, name := range c.hubs {
			for _, h := range r.hubs {
				if strings.EqualFold(h.Name, name) {
					out = append(out, h)
				}
			}
		}
		return out
	}
	for _, h := range r.hubs {
		if h.ApplyAllocationPolicy {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		out = append(out, r.hubs...)
	}
	return out
}

// AssignMayWait reports whether Assign of a may wait on I/O: with a state
// dir (an assigned registration is fdatasync'd before Assign returns), or
// when a's enrollment, as attested, allocates through the custom webhook.
// Otherwise Assign is CPU work on in-memory state, which a caller that
// waits for it anyway may run on its own goroutine. (An admin change
// between Attest and Assign that makes the enrollment custom still calls
// the webhook, within its timeout.)
func (r *Registry) AssignMayWait(a *Attestation) bool {
	if r.mem == nil || a == nil {
		return true
	}
	var c common
	switch {
	case a.individual != nil:
		c = a.individual.common()
	case a.group != nil:
		c = a.group.common()
	default:
		return true
	}
	return c.policy == AllocationCustom // never the service default (Config refuses it)
}

// allocate picks the hub. It returns the webhook's initial twin and payload
// for the custom policy.
func (r *Registry) allocate(ctx context.Context, a *Attestation, c common, ind *IndividualEnrollment, grp *EnrollmentGroup, deviceID string, prev *record, payload json.RawMessage) (hub string, twin, outPayload json.RawMessage, fail *allocFailure) {
	policy := c.policy
	if policy == "" {
		policy = r.policy
	}
	if policy == "" {
		policy = AllocationHashed
	}
	cands := r.candidates(c)
	noHub := &allocFailure{errCodeHubNotSpecified, "No IoT hub could be selected: no linked hub matches the enrollment."}
	switch policy {
	case AllocationStatic:
		name := c.hubName
		if name == "" && len(c.hubs) == 1 {
			name = c.hubs[0]
		}
		if name == "" && len(cands) == 1 {
			name = cands[0].Name
		}
		for _, h := range r.hubs {
			if strings.EqualFold(h.Name, name) {
				return h.Name, nil, nil, nil
			}
		}
		return "", nil, nil, noHub
	case AllocationGeoLatency:
		if len(cands) == 0 {
			return "", nil, nil, noHub
		}
		best := math.MaxInt
		var ties []LinkedHub
		for _, h := range cands {
			switch {
			case h.LatencyMs < best:
				best, ties = h.LatencyMs, []LinkedHub{h}
			case h.LatencyMs == best:
				ties = append(ties, h)
			}
		}
		return hashHub(a.RegistrationID, ties).Name, nil, nil, nil
	case AllocationCustom:
		return r.callWebhook(ctx, a, c, ind, grp, deviceID, prev, payload, cands)
	default:
		if len(cands) == 0 {
			return "", nil, nil, noHub
		}
		return hashHub(a.RegistrationID, cands).Name, nil, nil, nil
	}
}

// hashHub is weighted rendezvous hashing: each hub scores
// -ln(u)/weight with u uniform in (0,1) drawn from SHA-256 of the lower-case
// registration id and hub name; the lowest score wins. The choice depends
// only on the id and the candidate set, each hub wins with probability
// weight/Σweights, and adding a hub moves only the devices it wins.
func hashHub(regID string, hubs []LinkedHub) LinkedHub {
	var best LinkedHub
	bestScore := math.Inf(1)
	for _, h := range hubs {
		w := h.AllocationWeight
		if w <= 0 {
			w = 1
		}
		sum := sha256.Sum256([]byte(strings.ToLower(regID) + "\x00" + strings.ToLower(h.Name)))
		u := (float64(binary.BigEndian.Uint64(sum[:8])>>11) + 0.5) / (1 << 53)
		score := -math.Log(u) / float64(w)
		if score < bestScore {
			best, bestScore = h, score
		}
	}
	return best
}
