package registry

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCommitter checks group commit: every concurrent put is committed when
// run returns, and a failing request gets its own error without failing the
// requests it shared a transaction with.
func TestCommitter(t *testing.T) {
	errBad := errors.New("bad request")
	tests := []struct {
		name    string
		callers int
		bad     int // index of the caller whose fn fails; -1 none
	}{
		{"lone caller", 1, -1},
		{"storm", 200, -1},
		{"storm with one failure", 200, 17},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, &bolt.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
				t.Fatal(err)
			}
			c := &committer{db: db}
			errs := make([]error, tt.callers)
			var wg sync.WaitGroup
			for i := range tt.callers {
				wg.Go(func() {
					errs[i] = c.run(func(tx *bolt.Tx) error {
						if i == tt.bad {
							return errBad
						}
						return tx.Bucket([]byte("b")).Put(fmt.Appendf(nil, "k%03d", i), []byte("v"))
					})
				})
			}
			wg.Wait()
			err = db.View(func(tx *bolt.Tx) error {
				for i := range tt.callers {
					got := tx.Bucket([]byte("b")).Get(fmt.Appendf(nil, "k%03d", i))
					switch {
					case i == tt.bad && !errors.Is(errs[i], errBad):
						t.Errorf("caller %d: %v, want %v", i, errs[i], errBad)
					case i == tt.bad && got != nil:
						t.Errorf("caller %d failed but its put is stored", i)
					case i != tt.bad && (errs[i] != nil || got == nil):
						t.Errorf("caller %d: err %v, stored %q; want committed", i, errs[i], got)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.leading || len(c.queue) != 0 {
				t.Errorf("committer left leading=%v with %d queued", c.leading, len(c.queue))
			}
		})
	}
}
