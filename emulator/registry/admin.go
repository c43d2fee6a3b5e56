package registry

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/dps-conform/dps-conform/dps"
)

// Error codes of the admin API. The service publishes no catalogue; these
// keep its "HTTP status × 1000 + n" shape (DPS-PROTOCOL.md §4.6–§4.7).
const (
	adminBadRequest         = 400000
	adminNotFound           = dps.ErrorCodeEnrollmentNotFound // 404201
	adminMethodNotAllowed   = 405000
	adminPreconditionFailed = 412000
	adminTooLarge           = 413000
	adminInternal           = 500000
)

// maxAdminBody bounds an admin request body.
const maxAdminBody = 1 << 20

// AdminHandler serves the admin API on the service API's paths, so existing
// tooling can drive it:
//
//	PUT/GET/DELETE /enrollments/{registrationId}
//	PUT/GET/DELETE /enrollmentGroups/{enrollmentGroupId}
//	GET/DELETE     /registrations/{registrationId}
//
// The api-version query parameter is accepted and ignored. Bodies are JSON in
// the service schema; PUT answers 200 with the stored entry (etag and
// timestamps filled). If-Match ("*" or an etag, quoted or not) makes PUT and
// DELETE conditional (412 on mismatch). Errors are
// {"errorCode":…,"message":…,"trackingId":…,"timestampUtc":…}.
// Request bodies are never logged.
func (r *Registry) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/enrollments/{id}", r.handleEnrollment)
	mux.HandleFunc("/enrollmentGroups/{id}", r.handleGroup)
	mux.HandleFunc("/registrations/{id}", r.handleRegistration)
	mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
		r.writeError(w, http.StatusNotFound, adminNotFound, "No such admin API path: "+req.URL.Path)
	})
	return mux
}

// errPrecondition and errNotFound carry admin outcomes out of transactions.
var (
	errPrecondition = errors.New("etag mismatch")
	errNotFound     = errors.New("not found")
)

func (r *Registry) handleEnrollment(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	key := idKey(id)
	switch req.Method {
	case http.MethodGet:
		// The service shows the device's registrationState with its
		// individual enrollment.
		var en IndividualEnrollment
		found := false
		err := r.view(func(tx *bolt.Tx) error {
			var err error
			if found, err = getJSON(tx, bucketEnrollments, key, &en); err != nil || !found {
				return err
			}
			var rec record
			ok, err := r.getRegistration(tx, key, &rec)
			if ok && rec.EnrollmentGroupID == "" {
				en.RegistrationState = &rec.State
			}
			return err
		})
		switch {
		case err != nil:
			r.internal(w, err)
		case !found:
			r.writeError(w, http.StatusNotFound, adminNotFound, "Enrollment not found.")
		default:
			w.Header().Set("ETag", quoteETag(en.ETag))
			writeJSON(w, http.StatusOK, &en)
		}
	case http.MethodDelete:
		var en IndividualEnrollment
		r.del(w, req, bucketEnrollments, key, &en, func() string { return en.ETag }, "Enrollment not found.")
	case http.MethodPut:
		var en IndividualEnrollment
		if !r.decode(w, req, &en) {
			return
		}
		if en.RegistrationID == "" {
			en.RegistrationID = id
		}
		if !dps.EqualRegistrationID(en.RegistrationID, id) {
			r.writeError(w, http.StatusBadRequest, adminBadRequest, fmt.Sprintf("registrationId %q in the body differs from %q in the path", en.RegistrationID, id))
			return
		}
		if err := validateIndividual(&en, r.hubs, r.policy); err != nil {
			r.writeError(w, http.StatusBadRequest, adminBadRequest, err.Error())
			return
		}
		r.put(w, req, bucketEnrollments, key, func(tx *bolt.Tx) (any, error) {
			return &en, upsertIndividual(tx, &en, r.now(), true)
		}, func(tx *bolt.Tx) (string, bool, error) {
			var old IndividualEnrollment
			found, err := getJSON(tx, bucketEnrollments, key, &old)
			return old.ETag, found, err
		})
	default:
		r.methodNotAllowed(w, "GET, PUT, DELETE")
	}
}

func (r *Registry) handleGroup(w http.ResponseWriter, req *http.Request) {
	id := req.PathValue("id")
	key := idKey(id)
	switch req.Method {
	case http.MethodGet:
		var g EnrollmentGroup
		r.getGroup(w, key, &g)
	case http.MethodDelete:
		var g EnrollmentGroup
		r.del(w, req, bucketGroups, key, &g, func() string { return g.ETag }, "Enrollment group not found.")
	case http.MethodPut:
		var g EnrollmentGroup
		if !r.decode(w, req, &g) {
			return
		}
		if g.EnrollmentGroupID == "" {
			g.EnrollmentGroupID = id
		}
		if !strings.EqualFold(g.EnrollmentGroupID, id) {
			r.writeError(w, http.StatusBadRequest, adminBadRequest, fmt.Sprintf("enrollmentGroupId %q in the body differs from %q in the path", g.EnrollmentGroupID, id))
			return
		}
		if err := validateGroup(&g, r.hubs, r.policy); err != nil {
			r.writeError(w, http.StatusBadRequest, adminBadRequest, err.Error())
			return
		}
		r.put(w, req, bucketGroups, key, func(tx *bolt.Tx) (any, error) {
			return &g, upsertGroup(tx, &g, r.now(), true)
		}, func(tx *bolt.Tx) (string, bool, error) {
			var old EnrollmentGroup
			found, err := getJSON(tx, bucketGroups, key, &old)
			return old.ETag, found, err
		})
	default:
		r.methodNotAllowed(w, "GET, PUT, DELETE")
	}
}

func (r *Registry) handleRegistration(w http.ResponseWriter, req *http.Request) {
	key := idKey(req.PathValue("id"))
	switch req.Method {
	case http.MethodGet:
		var rec record
		found := false
		err := r.view(func(tx *bolt.Tx) error {
			var err error
			found, err = r.getRegistration(tx, key, &rec)
			return err
		})
		switch {
		case err != nil:
			r.internal(w, err)
		case !found:
			r.writeError(w, http.StatusNotFound, adminNotFound, "Registration not found.")
		default:
			w.Header().Set("ETag", quoteETag(rec.State.ETag))
			writeJSON(w, http.StatusOK, rec.State)
		}
	case http.MethodDelete:
		var rec record
		r.del(w, req, bucketRegistrations, key, &rec, func() string { return rec.State.ETag }, "Registration not found.")
	default:
		r.methodNotAllowed(w, "GET, DELETE")
	}
}

func (r *Registry) view(fn func(tx *bolt.Tx) error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	return r.db.View(fn)
}

func (r *Registry) update(fn func(tx *bolt.Tx) error) error {
	if r.closed.Load() {
		return ErrClosed
	}
	// Bump the generation after the commit (or rollback), before the
	// caller answers: no later Attest or Assign sees cached groups older
	// than this write.
	defer r.gen.Add(1)
	return r.db.Update(fn)
}

func (r *Registry) getGroup(w http.ResponseWriter, key []byte, g *EnrollmentGroup) {
	found := false
	err := r.view(func(tx *bolt.Tx) error {
		var err error
		found, err = getJSON(tx, bucketGroups, key, g)
		return err
	})
	switch {
	case err != nil:
		r.internal(w, err)
	case !found:
		r.writeError(w, http.StatusNotFound, adminNotFound, "Enrollment group not found.")
	default:
		w.Header().Set("ETag", quoteETag(g.ETag))
		writeJSON(w, http.StatusOK, g)
	}
}

func (r *Registry) del(w http.ResponseWriter, req *http.Request, b, key []byte, v any, etag func() string, notFound string) {
	// check judges the stored record (nil when absent) before removal.
	check := func(data []byte) error {
		found, err := decodeStored(b, key, data, v)
		switch {
		case err != nil:
			return err
		case !found:
			return errNotFound
		case !ifMatch(req, etag(), true):
			return errPrecondition
		}
		return nil
	}
	var err error
	switch {
	case r.closed.Load():
		err = ErrClosed
	case r.mem != nil && bytes.Equal(b, bucketRegistrations):
		err = r.mem.delete(key, check) // registrations in memory: no state dir
	default:
		err = r.update(func(tx *bolt.Tx) error {
			if err := check(tx.Bucket(b).Get(key)); err != nil {
				return err
			}
			return tx.Bucket(b).Delete(key)
		})
	}
	switch {
	case errors.Is(err, errNotFound):
		r.writeError(w, http.StatusNotFound, adminNotFound, notFound)
	case errors.Is(err, errPrecondition):
		r.writeError(w, http.StatusPreconditionFailed, adminPreconditionFailed, "Precondition failed: the etag in If-Match does not match.")
	case err != nil:
		r.internal(w, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (r *Registry) put(w http.ResponseWriter, req *http.Request, b, key []byte, store func(tx *bolt.Tx) (any, error), current func(tx *bolt.Tx) (string, bool, error)) {
	var out any
	err := r.update(func(tx *bolt.Tx) error {
		etag, found, err := current(tx)
		if err != nil {
			return err
		}
		if !ifMatch(req, etag, found) {
			return errPrecondition
		}
		out, err = store(tx)
		return err
	})
	switch {
	case errors.Is(err, errPrecondition):
		r.writeError(w, http.StatusPreconditionFailed, adminPreconditionFailed, "Precondition failed: the etag in If-Match does not match.")
	case err != nil:
		r.internal(w, err)
	default:
		w.Header().Set("ETag", quoteETag(etagOf(out)))
		writeJSON(w, http.StatusOK, out)
	}
}

// ifMatch applies an If-Match header: absent matches everything; "*"
// matches an existing entry; otherwise one of the listed etags (quoted or
// not, W/ ignored) must equal the current one.
func ifMatch(req *http.Request, etag string, exists bool) bool {
	h := strings.TrimSpace(req.Header.Get("If-Match"))
	if h == "" {
		return true
	}
	if h == "*" {
		return exists
	}
	if !exists {
		return false
	}
	for _, v := range strings.Split(h, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		v = strings.Trim(v, `"`)
		if v == etag {
			return true
		}
	}
	return false
}

func quoteETag(s string) string { return `"` + s + `"` }

func etagOf(v any) string {
	switch x := v.(type) {
	case *IndividualEnrollment:
		return x.ETag
	case *EnrollmentGroup:
		return x.ETag
	}
	return ""
}

// decode reads a JSON body; unknown members are ignored, as the service
// does, so documents printed by other tools load.
func (r *Registry) decode(w http.ResponseWriter, req *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(req.Body, maxAdminBody+1))
	if err != nil {
		r.writeError(w, http.StatusBadRequest, adminBadRequest, "reading the body failed")
		return false
	}
	if len(data) > maxAdminBody {
		r.writeError(w, http.StatusRequestEntityTooLarge, adminTooLarge, fmt.Sprintf("body larger than %d bytes", maxAdminBody))
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		msg := "body is not valid JSON"
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		// Offsets count from 0, as everywhere in dps-conform (json's own
		// count one past the bad byte, or the end of the value).
		off := dps.JSONErrorOffset(data, err)
		switch {
		case errors.As(err, &se) && off >= len(data):
			msg = fmt.Sprintf("body is not valid JSON: it ends inside a value (%d bytes)", len(data))
		case errors.As(err, &se):
			msg = fmt.Sprintf("body is not valid JSON at byte offset %d (from 0): %s", off, se.Error())
		case errors.As(err, &te):
			msg = fmt.Sprintf("body at byte offset %d (from 0): %s", off, dps.JSONTypeError(te, "a JSON object"))
		}
		r.writeError(w, http.StatusBadRequest, adminBadRequest, msg)
		return false
	}
	return true
}

func (r *Registry) methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	r.writeError(w, http.StatusMethodNotAllowed, adminMethodNotAllowed, "Method not allowed; allowed: "+allow)
}

func (r *Registry) internal(w http.ResponseWriter, err error) {
	r.log.Error("registry: admin API", "err", err)
	r.writeError(w, http.StatusInternalServerError, adminInternal, "Internal error.")
}

func (r *Registry) writeError(w http.ResponseWriter, status, code int, msg string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	writeJSON(w, status, dps.ErrorBody{
		ErrorCode:    code,
		TrackingID:   h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32],
		Message:      msg,
		TimestampUTC: dps.FormatTimestamp(r.now()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"errorCode":500000,"message":"encoding failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
