package emulator

import (
	"sync"
	"time"
)

// window is a sliding-window rate limiter: at most n events in any span of
// length per. It keeps the times of the last n accepted events in a ring, so
// its memory is bounded by n.
type window struct {
	n    int
	per  time.Duration
	ring []time.Time
	next int // index of the oldest entry once the ring is full
}

func newWindow(n int, per time.Duration) *window {
	return &window{n: n, per: per}
}

// allow records an event at now and reports whether it fits; when it does
// not, wait is how long until it would.
func (w *window) allow(now time.Time) (ok bool, wait time.Duration) {
	if len(w.ring) < w.n {
		w.ring = append(w.ring, now)
		return true, 0
	}
	oldest := w.ring[w.next]
	if free := oldest.Add(w.per); now.Before(free) {
		return false, free.Sub(now)
	}
	w.ring[w.next] = now
	w.next = (w.next + 1) % w.n
	return true, 0
}

// idle reports whether every recorded event is older than per, so the
// window can be dropped without changing any future answer.
func (w *window) idle(now time.Time) bool {
	for _, t := range w.ring {
		if now.Sub(t) < w.per {
			return false
		}
	}
	return true
}

// limiter keeps one window per key (per device) and drops idle windows, so
// its size is bounded by the number of devices active within one period.
type limiter struct {
	n   int
	per time.Duration

	mu        sync.Mutex
	windows   map[string]*window
	lastSweep time.Time
}

// newLimiter returns a limiter of n events per period; n <= 0 or per <= 0
// means unlimited.
func newLimiter(n int, per time.Duration) *limiter {
	return &limiter{n: n, per: per, windows: map[string]*window{}}
}

// allow records an event for key at now. When it is refused, wait is the
// time until the next event of key would be accepted.
func (l *limiter) allow(key string, now time.Time) (bool, time.Duration) {
	if l.n <= 0 || l.per <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.per {
		for k, w := range l.windows {
			if w.idle(now) {
				delete(l.windows, k)
			}
		}
		l.lastSweep = now
	}
	w := l.windows[key]
	if w == nil {
		w = newWindow(l.n, l.per)
		l.windows[key] = w
	}
	return w.allow(now)
}

// retryAfterSeconds rounds d up to whole seconds, at least 1: the value of a
// 429 answer's retry-after.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}
