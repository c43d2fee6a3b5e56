package emulator

import (
	"strings"
	"sync"
	"time"

	"github.com/dps-conform/dps-conform/dps"
)

// operation is one registration request being assigned (Part A §6). The
// assignment runs in the background; the operation is final once the
// assignment has returned and the retry-after of the 202 answer has passed,
// so a device that polls early sees 202 assigning first.
type operation struct {
	id      string
	regID   string // as the connection gave it
	key     string // regKey(regID)
	created time.Time
	readyAt time.Time // created + retry-after

	// Set once when the assignment returns, under operations.mu.
	done   bool
	doneAt time.Time
	result dps.DeviceRegistrationResult
	err    error
}

// opState is a snapshot of an operation for answering a poll.
type opState struct {
	id, regID string
	readyAt   time.Time
	done      bool
	result    dps.DeviceRegistrationResult
	err       error
}

// operations is the operation table of one server: bounded by max entries,
// finished ones forgotten ttl after they finished.
type operations struct {
	max int
	ttl time.Duration

	mu     sync.Mutex
	byID   map[string]*operation
	latest map[string]*operation // by regKey: the newest operation of a device
	order  []*operation          // creation order, for expiry
	swept  time.Time             // last expiry sweep
}

func newOperations(max int, ttl time.Duration) *operations {
	return &operations{max: max, ttl: ttl, byID: map[string]*operation{}, latest: map[string]*operation{}}
}

// regKey folds a registration id for comparisons: ids are case-insensitive
// (Part A §11).
func regKey(id string) string { return strings.ToLower(id) }

// inProgressLocked reports whether the latest operation of the device
// with key is in progress: not done, or done before its retry-after. o.mu
// is held.
func (o *operations) inProgressLocked(key string, now time.Time) bool {
	p := o.latest[key]
	return p != nil && (!p.done || now.Before(p.readyAt))
}

// addResult is what add did.
type addResult int

const (
	opAdded      addResult = iota
	opTableFull            // the table is full even after expiring old entries
	opInProgress           // exclusive: the device's latest operation is in progress
)

// add records a new operation. With exclusive it refuses one for a device
// whose latest operation is still in progress (not done, or done before
// its retry-after), in the same critical section as the insert: two
// registers of one device at the same moment cannot both pass (Part A §8,
// 409).
func (o *operations) add(op *operation, now time.Time, exclusive bool) addResult {
	op.key = regKey(op.regID)
	o.mu.Lock()
	defer o.mu.Unlock()
	if exclusive && o.inProgressLocked(op.key, now) {
		return opInProgress
	}
	o.expireLocked(now)
	if o.max > 0 && len(o.byID) >= o.max {
		return opTableFull
	}
	o.byID[op.id] = op
	o.latest[op.key] = op
	o.order = append(o.order, op)
	return opAdded
}

// expireLocked drops finished operations older than ttl.
func (o *operations) expireLocked(now time.Time) {
	if o.ttl <= 0 {
		return
	}
	// Sweep at most every ttl/16, unless the table is full: adds stay O(1)
	// amortised.
	if now.Sub(o.swept) < o.ttl/16 && (o.max <= 0 || len(o.byID) < o.max) {
		return
	}
	o.swept = now
	keep := o.order[:0]
	for _, op := range o.order {
		if op.done && now.Sub(op.doneAt) >= o.ttl && !now.Before(op.readyAt) {
			delete(o.byID, op.id)
			if o.latest[op.key] == op {
				delete(o.latest, op.key)
			}
			continue
		}
		keep = append(keep, op)
	}
	clear(o.order[len(keep):])
	o.order = keep
}

// finish stores the outcome of an operation's assignment.
func (o *operations) finish(id string, res dps.DeviceRegistrationResult, err error, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if op := o.byID[id]; op != nil {
		op.done, op.doneAt, op.result, op.err = true, now, res, err
	}
}

// lookup returns the state of operation id if it belongs to regID.
func (o *operations) lookup(id, regID string) (opState, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op := o.byID[id]
	if op == nil || op.key != regKey(regID) {
		return opState{}, false
	}
	return opState{id: op.id, regID: op.regID, readyAt: op.readyAt, done: op.done, result: op.result, err: op.err}, true
}

// len is the number of operations in the table.
func (o *operations) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byID)
}
