package serve

import (
	"fmt"
	"sync"
	"time"
)

// Stall tells /healthz when a loop is stuck: each iteration calls Begin
// and the returned end, and Check fails while an iteration has run for
// longer than the limit. An idle loop is healthy: a process waits for
// work as long as there is none. Safe for concurrent use (a controller's
// several workers share one).
type Stall struct {
	name  string
	limit time.Duration
	now   func() time.Time

	mu       sync.Mutex
	next     uint64
	inFlight map[uint64]time.Time
}

// NewStall returns a Stall for the loop called name, stuck once one
// iteration has lasted limit.
func NewStall(name string, limit time.Duration) *Stall {
	return &Stall{name: name, limit: limit, now: time.Now, inFlight: map[uint64]time.Time{}}
}

// Begin marks the start of an iteration; call end when it returns. A nil
// Stall watches nothing.
func (s *Stall) Begin() (end func()) {
	if s == nil {
		return func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.next
	s.next++
	s.inFlight[id] = s.now()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.inFlight, id)
	}
}

// Check returns an error while an iteration has run for longer than the
// limit.
func (s *Stall) Check() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var oldest time.Time
	for _, t := range s.inFlight {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if d := s.now().Sub(oldest); !oldest.IsZero() && d > s.limit {
		return fmt.Errorf("the %s loop is stuck: one iteration has run for %s (limit %s)", s.name, d.Round(time.Second), s.limit)
	}
	return nil
}
