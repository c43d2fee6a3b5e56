package registry

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxLeadRounds bounds how many transactions one caller of committer.run
// commits for others before handing the lead to a waiting caller.
const maxLeadRounds = 8

// committer is group commit without a timer: the first caller of run
// commits at once (a lone device waits for nobody); callers arriving while a
// transaction is in progress queue up and share the next one. With a state
// dir each transaction ends with fsync, so a storm pays one fsync per
// batch. (Without a state dir registrations are kept in memory and never
// come here.)
type committer struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []*commitReq
	leading bool // a caller is committing; queued requests wait for it
}

type commitReq struct {
	fn   func(*bolt.Tx) error
	done chan error    // the request's outcome; buffered
	lead chan struct{} // told to commit for the queue; buffered
}

// run applies fn in a read-write transaction shared with concurrent callers
// and returns once that transaction has committed (with fsync unless the
// database is NoSync). fn may run more than once (when a shared
// transaction fails, each request is retried alone, as bolt.DB.Batch does),
// so it must be idempotent.
func (c *committer) run(fn func(*bolt.Tx) error) error {
	req := &commitReq{fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, req)
	if c.leading {
		c.mu.Unlock()
		select {
		case err := <-req.done:
			return err
		case <-req.lead:
			// The previous leader handed over; req is still queued.
			c.mu.Lock()
		}
	}
	c.leading = true
	for round := 1; ; round++ {
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		c.commit(batch)
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.leading = false
			break
		}
		if round == maxLeadRounds {
			c.queue[0].lead <- struct{}{} // leading stays true
			break
		}
	}
	c.mu.Unlock()
	return <-req.done // req was in the first batch
}

// commit runs batch in one transaction, or each request alone if that
// fails, and reports every outcome.
func (c *committer) commit(batch []*commitReq) {
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, r := range batch {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(batch) == 1 {
		for _, r := range batch {
			r.done <- err
		}
		return
	}
	for _, r := range batch {
		r.done <- c.db.Update(r.fn)
	}
}
