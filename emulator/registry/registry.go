package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/dps-conform/dps-conform/dps"
)

// Options configure Open.
type Options struct {
	// StateDir holds the database (registry.db); empty means a temporary
	// database removed on Close for the enrollments, and the registrations
	// in memory.
	StateDir string
	// Config is upserted into the state at Open: its id scope, linked hubs
	// and allocation policy replace the stored ones, its enrollments are
	// created or updated. nil keeps the stored state as it is.
	Config *Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// HTTPClient calls custom allocation webhooks; nil means a client of
	// the registry's own, without proxy, whose idle connections Close ends.
	HTTPClient *http.Client
	// WebhookTimeout bounds one webhook call; zero means 10 seconds.
	WebhookTimeout time.Duration
	// Logger receives operational messages (never secrets); nil discards
	// them.
	Logger *slog.Logger
}

// DefaultWebhookTimeout bounds a custom allocation webhook call when
// Options.WebhookTimeout is zero.
const DefaultWebhookTimeout = 10 * time.Second

// DBFileName is the database file name under Options.StateDir.
const DBFileName = "registry.db"

// Registry is the enrollment and registration state. Its methods are safe
// for concurrent use.
type Registry struct {
	db        *bolt.DB
	closed    atomic.Bool
	tempDir   string // removed on Close; "" when StateDir was given
	now       func() time.Time
	client    *http.Client
	ownClient *http.Transport
	timeout   time.Duration
	log       *slog.Logger

	idScope string
	hubs    []LinkedHub
	policy  AllocationPolicy

	// gen counts committed writes other than Assign's (Open, admin API);
	// groups caches the decoded enrollment groups of one generation, so
	// Attest and Assign do not decode every group's JSON per request.
	gen    atomic.Uint64
	groups atomic.Pointer[groupSnapshot]

	commits committer // registrations written by Assign

	// mem holds the registrations instead of the database when there is
	// no state dir; nil with a state dir.
	mem *memRegistrations
}

// groupSnapshot is the decoded enrollmentGroups bucket at generation gen.
// Its groups are shared by concurrent readers and never modified.
type groupSnapshot struct {
	gen    uint64
	groups []EnrollmentGroup
}

// cachedGroups returns every enrollment group, decoded, as of a generation
// not older than the last write that returned. gen must be r.gen as read
// before tx began. The slice and its groups are shared: callers must not
// modify them.
//
// A write bumps gen after its commit. A snapshot is stored under the gen
// read before its transaction began, so every write whose bump that read
// saw had committed before the transaction and is in the snapshot; a write
// committing meanwhile bumps gen past it, and the snapshot is at worst
// discarded by the next call, never served stale. (Reading gen inside the
// transaction would not do: a write could commit after the transaction
// began and bump gen before the read, and the old groups would be stored
// as current.)
func (r *Registry) cachedGroups(tx *bolt.Tx, gen uint64) ([]EnrollmentGroup, error) {
	if snap := r.groups.Load(); snap != nil && snap.gen == gen {
		return snap.groups, nil
	}
	var groups []EnrollmentGroup
	if err := tx.Bucket(bucketGroups).ForEach(func(k, v []byte) error {
		var g EnrollmentGroup
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("registry: corrupt %s/%s: %w", bucketGroups, k, err)
		}
		groups = append(groups, g)
		return nil
	}); err != nil {
		return nil, err
	}
	if r.gen.Load() == gen {
		r.groups.Store(&groupSnapshot{gen: gen, groups: groups})
	}
	return groups, nil
}

// Open opens (creating if needed) the state and upserts o.Config. ctx bounds
// the wait for the database file lock, and the upsert: when ctx ends while
// the enrollments are written, nothing of the config is stored and Open
// returns an error wrapping ctx's (a config of 200,000 enrollments takes
// about 25 s to store, and Ctrl-C must not wait for it).
func Open(ctx context.Context, o Options) (*Registry, error) {
	r := &Registry{now: o.Now, client: o.HTTPClient, timeout: o.WebhookTimeout, log: o.Logger}
	if r.now == nil {
		r.now = time.Now
	}
	if r.timeout <= 0 {
		r.timeout = DefaultWebhookTimeout
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.client == nil {
		r.ownClient = &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}
		r.client = &http.Client{Transport: r.ownClient}
	}
	if o.Config != nil {
		if err := o.Config.validate(); err != nil {
			return nil, fmt.Errorf("registry: config: %w", err)
		}
	}
	dir := o.StateDir
	if dir == "" {
		d, err := os.MkdirTemp("", "dps-registry-")
		if err != nil {
			return nil, fmt.Errorf("registry: temporary state: %w", err)
		}
		dir, r.tempDir = d, d
		r.mem = &memRegistrations{m: map[string][]byte{}}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: state dir: %w", err)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			r.cleanup()
			return nil, fmt.Errorf("registry: open: %w", context.DeadlineExceeded)
		}
	}
	// Without a state dir nothing outlives the process, so fsync buys
	// nothing: the in-memory mode skips it (about 1 ms per assignment).
	bopts := &bolt.Options{Timeout: timeout, NoSync: r.tempDir != "", NoFreelistSync: r.tempDir != ""}
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, bopts)
	if err != nil {
		r.cleanup()
		if errors.Is(err, bolterrors.ErrTimeout) {
			// bbolt's lock timeout: another process holds the database.
			return nil, fmt.Errorf("registry: open %s: %w (%w)", filepath.Join(dir, DBFileName), ErrLocked, err)
		}
		return nil, fmt.Errorf("registry: open %s: %w", filepath.Join(dir, DBFileName), err)
	}
	r.db = db
	r.commits.db = db
	err = db.Update(func(tx *bolt.Tx) error { return r.load(ctx, tx, o.Config) })
	r.gen.Add(1)
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// load creates the buckets, applies cfg and reads the service settings.
func (r *Registry) load(ctx context.Context, tx *bolt.Tx, cfg *Config) error {
	if err := initBuckets(tx); err != nil {
		return err
	}
	m := tx.Bucket(bucketMeta)
	now := r.now()
	if cfg != nil {
		if cfg.IDScope != "" {
			if err := m.Put(keyIDScope, []byte(cfg.IDScope)); err != nil {
				return err
			}
		}
		if err := putJSON(tx, bucketMeta, keyLinkedHubs, cfg.LinkedHubs); err != nil {
			return err
		}
		if err := m.Put(keyPolicy, []byte(cfg.AllocationPolicy)); err != nil {
			return err
		}
		// Checked every 1,000 entries: storing one takes about 0.1 ms.
		stopped := func(i int) error {
			if i%1000 != 999 {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("registry: storing the config's enrollments: %w", err)
			}
			return nil
		}
		for i := range cfg.Enrollments {
			en := cfg.Enrollments[i]
			if err := upsertIndividual(tx, &en, now, false); err != nil {
				return err
			}
			if err := stopped(i); err != nil {
				return err
			}
		}
		for i := range cfg.EnrollmentGroups {
			g := cfg.EnrollmentGroups[i]
			if err := upsertGroup(tx, &g, now, false); err != nil {
				return err
			}
			if err := stopped(i); err != nil {
				return err
			}
		}
	}
	if v := m.Get(keyIDScope); v != nil {
		r.idScope = string(v)
	} else {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("registry: generate id scope: %w", err)
		}
		r.idScope = "0ne" + strings.ToUpper(hex.EncodeToString(b[:]))
		if err := m.Put(keyIDScope, []byte(r.idScope)); err != nil {
			return err
		}
	}
	if _, err := getJSON(tx, bucketMeta, keyLinkedHubs, &r.hubs); err != nil {
		return err
	}
	r.policy = AllocationPolicy(m.Get(keyPolicy))
	return nil
}

// upsertIndividual stores en, keeping createdDateTimeUtc and etag when
// nothing changed. force writes a new etag even when nothing changed.
func upsertIndividual(tx *bolt.Tx, en *IndividualEnrollment, now time.Time, force bool) error {
	en.RegistrationState = nil
	var old IndividualEnrollment
	found, err := getJSON(tx, bucketEnrollments, idKey(en.RegistrationID), &old)
	if err != nil {
		return err
	}
	stamp(&en.CreatedDateTimeUTC, &en.LastUpdatedDateTimeUTC, &en.ETag, found, old.CreatedDateTimeUTC, old.LastUpdatedDateTimeUTC, old.ETag, func() bool {
		a, b := *en, old
		a.CreatedDateTimeUTC, a.LastUpdatedDateTimeUTC, a.ETag = "", "", ""
		b.CreatedDateTimeUTC, b.LastUpdatedDateTimeUTC, b.ETag = "", "", ""
		return !force && sameJSON(a, b)
	}, now)
	return putJSON(tx, bucketEnrollments, idKey(en.RegistrationID), en)
}

// upsertGroup is upsertIndividual for groups.
func upsertGroup(tx *bolt.Tx, g *EnrollmentGroup, now time.Time, force bool) error {
	var old EnrollmentGroup
	found, err := getJSON(tx, bucketGroups, idKey(g.EnrollmentGroupID), &old)
	if err != nil {
		return err
	}
	stamp(&g.CreatedDateTimeUTC, &g.LastUpdatedDateTimeUTC, &g.ETag, found, old.CreatedDateTimeUTC, old.LastUpdatedDateTimeUTC, old.ETag, func() bool {
		a, b := *g, old
		a.CreatedDateTimeUTC, a.LastUpdatedDateTimeUTC, a.ETag = "", "", ""
		b.CreatedDateTimeUTC, b.LastUpdatedDateTimeUTC, b.ETag = "", "", ""
		return !force && sameJSON(a, b)
	}, now)
	return putJSON(tx, bucketGroups, idKey(g.EnrollmentGroupID), g)
}

// stamp sets the service-written fields of an enrollment being stored.
func stamp(created, updated, etag *string, found bool, oldCreated, oldUpdated, oldETag string, unchanged func() bool, now time.Time) {
	ts := dps.FormatTimestamp(now)
	if !found {
		*created, *updated, *etag = ts, ts, newETag()
		return
	}
	*created = oldCreated
	if unchanged() {
		*updated, *etag = oldUpdated, oldETag
		return
	}
	*updated, *etag = ts, newETag()
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// newETag returns base64 of a quoted GUID-like value, the form the service
// uses: "IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=" (§4.5).
func newETag() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms (Go 1.24+).
		panic(err)
	}
	h := hex.EncodeToString(b[:])
	g := fmt.Sprintf("%q", h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32])
	return base64.StdEncoding.EncodeToString([]byte(g))
}

// Close closes the database (and removes it when it is temporary). It is
// safe to call more than once, and concurrently with other methods: those
// running finish (Close waits for their transactions), later calls return
// ErrClosed or an error wrapping bbolt's ErrDatabaseNotOpen.
func (r *Registry) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	var err error
	if r.db != nil {
		// bbolt waits for running transactions; later ones fail with
		// ErrDatabaseNotOpen.
		err = r.db.Close()
	}
	r.cleanup()
	return err
}

func (r *Registry) cleanup() {
	if r.ownClient != nil {
		r.ownClient.CloseIdleConnections()
	}
	if r.tempDir != "" {
		if err := os.RemoveAll(r.tempDir); err != nil {
			r.log.Warn("registry: remove temporary state", "dir", r.tempDir, "err", err)
		}
		r.tempDir = ""
	}
}

// IDScope returns the id scope: the config's, or one generated at first
// Open ("0ne" + 8 upper-case hex digits) and kept in the state.
func (r *Registry) IDScope() string { return r.idScope }

// LinkedHubs returns a copy of the linked hubs in effect.
func (r *Registry) LinkedHubs() []LinkedHub { return append([]LinkedHub(nil), r.hubs...) }

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("registry: closed")

// ErrLocked is returned by Open when another process holds the state
// directory's database (bbolt's file lock did not come free in time).
var ErrLocked = errors.New("registry: state directory in use by another process")

// Registration returns the recorded registration of registrationID
// (case-insensitive): the registrationState of its last assignment.
func (r *Registry) Registration(ctx context.Context, registrationID string) (dps.DeviceRegistrationResult, bool, error) {
	if r.closed.Load() {
		return dps.DeviceRegistrationResult{}, false, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return dps.DeviceRegistrationResult{}, false, err
	}
	var rec record
	var found bool
	err := r.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = r.getRegistration(tx, idKey(registrationID), &rec)
		return err
	})
	return rec.State, found, err
}
