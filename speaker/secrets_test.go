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

func TestCachedSecrets(t *testing.T) {
	now := time.Unix(0, 0)
	next := &countingSecrets{data: map[[2]string]string{{"bgp", "password"}: "s3cret"}}
	c := newCachedSecrets(next, 10*time.Second)
	c.now = func() time.Time { return now }
	steps := []struct {
		name, secret, key string
		advance           time.Duration
		wantValue         string
		wantOK            bool
		wantReads         int
	}{
		{name: "first read goes to the API", secret: "bgp", key: "password", wantValue: "s3cret", wantOK: true, wantReads: 1},
		{name: "within the TTL it is cached", secret: "bgp", key: "password", advance: 9 * time.Second, wantValue: "s3cret", wantOK: true, wantReads: 1},
		{name: "after the TTL it is read again", secret: "bgp", key: "password", advance: 2 * time.Second, wantValue: "s3cret", wantOK: true, wantReads: 2},
		{name: "a missing Secret is read", secret: "gone", key: "password", wantReads: 3},
		{name: "and its absence cached", secret: "gone", key: "password", advance: time.Second, wantReads: 3},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		v, ok, err := c.get(t.Context(), st.secret, st.key)
		if err != nil || v != st.wantValue || ok != st.wantOK || next.reads != st.wantReads {
			t.Errorf("%s: got (%q, %v, %v) after %d reads, want (%q, %v, nil) after %d",
				st.name, v, ok, err, next.reads, st.wantValue, st.wantOK, st.wantReads)
		}
	}
	next.err = errors.New("apiserver down")
	now = now.Add(time.Minute)
	if v, ok, err := c.get(t.Context(), "bgp", "password"); err == nil || !errors.Is(err, errStale) || v != "s3cret" || !ok {
		t.Errorf("during an outage: got (%q, %v, %v), want the last answer with an error wrapping errStale", v, ok, err)
	}
	if _, _, err := c.get(t.Context(), "never-read", "password"); err == nil || errors.Is(err, errStale) {
		t.Errorf("during an outage, a Secret never read: error %v, want the API's error alone", err)
	}
	next.err = nil
	if _, ok, _ := c.get(t.Context(), "bgp", "password"); !ok || next.reads != 6 {
		t.Errorf("an error was cached: ok=%v after %d reads", ok, next.reads)
	}
}
