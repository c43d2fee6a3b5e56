package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/dps-conform/dps-conform/dps"
)

// Bucket names of the bbolt database. Keys are lower-cased ids (ids compare
// case-insensitively, DPS-PROTOCOL.md Part A §11); values are JSON.
var (
	bucketMeta          = []byte("meta")
	bucketEnrollments   = []byte("enrollments")
	bucketGroups        = []byte("enrollmentGroups")
	bucketRegistrations = []byte("registrations")

	keyIDScope    = []byte("idScope")
	keyLinkedHubs = []byte("linkedHubs")
	keyPolicy     = []byte("allocationPolicy")
)

// schemaVersion is stored in meta; a database with another version is
// refused rather than misread.
const schemaVersion = "1"

var keySchema = []byte("schema")

// record is a stored registration: the registrationState answered to the
// device plus what reprovisioning needs.
type record struct {
	State dps.DeviceRegistrationResult `json:"state"`
	// InitialHub is the hub of the first assignment (for the substatus
	// reprovisionedToInitialAssignment).
	InitialHub string `json:"initialHub"`
	// EnrollmentGroupID is the group the device registered through; empty
	// for an individual enrollment.
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
	// InitialTwin is the twin the hub was (notionally) given: the
	// enrollment's, or the custom allocation webhook's.
	InitialTwin json.RawMessage `json:"initialTwin,omitempty"`
}

func idKey(id string) []byte { return []byte(strings.ToLower(id)) }

// getJSON reads key of bucket b into v; it reports false when absent.
func getJSON(tx *bolt.Tx, b, key []byte, v any) (bool, error) {
	return decodeStored(b, key, tx.Bucket(b).Get(key), v)
}

// decodeStored decodes the stored JSON data of key in bucket b (or its
// memory stand-in) into v; nil data is absent and reports false.
func decodeStored(b, key, data []byte, v any) (bool, error) {
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("registry: corrupt %s/%s: %w", b, key, err)
	}
	return true, nil
}

func putJSON(tx *bolt.Tx, b, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("registry: encode %s: %w", b, err)
	}
	return tx.Bucket(b).Put(key, data)
}

// memRegistrations holds the registrations of a registry without a state
// dir. Nothing outlives the process then, and the database commit of each
// assignment was most of an assignment's cost (a page write and the B+tree
// growing by one key per device); a map of the same JSON records costs
// almost nothing. Enrollments stay in the database in both modes.
type memRegistrations struct {
	mu sync.RWMutex
	m  map[string][]byte // idKey → JSON record, never modified once stored
}

func (m *memRegistrations) get(key []byte) []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.m[string(key)]
}

func (m *memRegistrations) put(key, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.m[string(key)] = data
}

// delete removes key if check, given its record (nil when absent), returns
// nil; it returns check's error otherwise. The check and the removal hold
// the lock together, as a database transaction would.
func (m *memRegistrations) delete(key []byte, check func(data []byte) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := check(m.m[string(key)]); err != nil {
		return err
	}
	delete(m.m, string(key))
	return nil
}

// getRegistration reads the record of key (an idKey) into rec: from memory
// without a state dir, else from tx. It reports false when absent.
func (r *Registry) getRegistration(tx *bolt.Tx, key []byte, rec *record) (bool, error) {
	if r.mem == nil {
		return getJSON(tx, bucketRegistrations, key, rec)
	}
	return decodeStored(bucketRegistrations, key, r.mem.get(key), rec)
}

// initBuckets creates the buckets and checks the schema version.
func initBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketEnrollments, bucketGroups, bucketRegistrations} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	m := tx.Bucket(bucketMeta)
	switch v := m.Get(keySchema); {
	case v == nil:
		return m.Put(keySchema, []byte(schemaVersion))
	case string(v) != schemaVersion:
		return fmt.Errorf("registry: state schema version %q, this build reads %q", v, schemaVersion)
	}
	return nil
}
