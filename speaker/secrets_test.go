package speaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

// countingSecrets answers from a map and counts the reads.
type countingSecrets struct {
	data  map[[2]string]string
	err   error
	reads int
}

func (c *countingSecrets) get(_ context.Context, name, key string) (string, bool, error) {
	c.reads++
	if c.err != nil {
		return "", false, c.err
	}
	v, ok := c.data[[2]string{name, key}]
	return v, ok, nil
}

// TestCachedSecrets checks the cache: a first read goes to the API; after
// that a read never waits for it (an expired answer is served while a
// refresh runs), a refresh that changes the answer says so, and a failed
// refresh keeps the last answer, served with an error wrapping errStale.
func TestCachedSecrets(t *testing.T) {
	now := time.Unix(0, 0)
	next := &countingSecrets{data: map[[2]string]string{{"bgp", "password"}: "s3cret"}}
	changes := 0
	c := newCachedSecrets(next, 10*time.Second, func() { changes++ })
	c.now = func() time.Time { return now }
	var pending []func()
	c.async = func(f func()) { pending = append(pending, f) }
	steps := []struct {
		name, secret string
		advance      time.Duration
		apiErr       error
		set          *string // the Secret's new value; "" deletes it
		runRefresh   bool    // run the pending refreshes after the read
		wantValue    string
		wantOK       bool
		wantStale    bool
		wantReads    int
		wantChanges  int
	}{
		{name: "first read goes to the API", secret: "bgp", wantValue: "s3cret", wantOK: true, wantReads: 1},
		{name: "within the TTL it is cached", secret: "bgp", advance: 9 * time.Second, wantValue: "s3cret", wantOK: true, wantReads: 1},
		{name: "expired: served at once, refreshed behind", secret: "bgp", advance: 2 * time.Second, set: ptrTo("n3w"), runRefresh: true,
			wantValue: "s3cret", wantOK: true, wantReads: 2, wantChanges: 1},
		{name: "the refreshed answer", secret: "bgp", wantValue: "n3w", wantOK: true, wantReads: 2, wantChanges: 1},
		{name: "API away: the last answer, with the error", secret: "bgp", advance: 11 * time.Second, apiErr: errors.New("connection refused"), runRefresh: true,
			wantValue: "n3w", wantOK: true, wantReads: 3, wantChanges: 2},
		{name: "and again without waiting for the API", secret: "bgp", apiErr: errors.New("connection refused"),
			wantValue: "n3w", wantOK: true, wantStale: true, wantReads: 3, wantChanges: 2},
		{name: "API back: deleted meanwhile", secret: "bgp", advance: 11 * time.Second, set: ptrTo(""), runRefresh: true,
			wantValue: "n3w", wantOK: true, wantStale: true, wantReads: 4, wantChanges: 3},
		{name: "the deletion is served", secret: "bgp", wantReads: 4, wantChanges: 3},
		{name: "a missing Secret is read", secret: "gone", wantReads: 5, wantChanges: 3},
		{name: "a Secret never read, with the API away: its error", secret: "never", apiErr: errors.New("connection refused"), wantReads: 6, wantChanges: 3},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		next.err = st.apiErr
		if st.set != nil {
			if *st.set == "" {
				delete(next.data, [2]string{st.secret, "password"})
			} else {
				next.data[[2]string{st.secret, "password"}] = *st.set
			}
		}
		v, ok, err := c.get(t.Context(), st.secret, "password")
		stale := errors.Is(err, errStale)
		if st.apiErr != nil && st.secret == "never" {
			if err == nil || stale {
				t.Errorf("%s: error %v, want the API's alone", st.name, err)
			}
		} else if (err != nil) != st.wantStale || stale != st.wantStale {
			t.Errorf("%s: error %v, want one wrapping errStale: %v", st.name, err, st.wantStale)
		}
		if st.runRefresh {
			for _, f := range pending {
				f()
			}
			pending = nil
		}
		if v != st.wantValue || ok != st.wantOK || next.reads != st.wantReads || changes != st.wantChanges {
			t.Errorf("%s: got (%q, %v) after %d reads and %d changes, want (%q, %v) after %d and %d",
				st.name, v, ok, next.reads, changes, st.wantValue, st.wantOK, st.wantReads, st.wantChanges)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }
