package speaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// secretTTL is how long a Secret read stays good. The speaker recomputes
// its plan on every change in the cluster; without a cache each of those
// would GET every password Secret again. Nothing watches Secrets, so the
// speaker also syncs again this long after each read: a Secret created,
// changed or deleted is noticed within about twice this time.
const secretTTL = 10 * time.Second

// apiSecrets reads Secrets by name: the speaker never lists or watches
// Secrets, so its RBAC can name the few it may read.
type apiSecrets struct {
	client typedcorev1.SecretInterface
}

// secretTimeout bounds one Secret read: the sync waits for it, and layer 2
// and forwarding must not wait for an API server that is away.
const secretTimeout = 5 * time.Second

func (a *apiSecrets) get(ctx context.Context, name, key string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, secretTimeout)
	defer cancel()
	sec, err := a.client.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("get secret %s: %w", name, err)
	}
	v, ok := sec.Data[key]
	return string(v), ok, nil
}

// errStale wraps the error of the last refresh of a Secret whose earlier
// answer is served with it, so that the caller can keep using the last
// password it read through an API outage.
var errStale = errors.New("serving the last answer read")

// cachedSecrets remembers what a secretGetter answered, missing keys
// included. A Secret read for the first time is read at once. After that,
// get never waits for the API: an answer older than ttl is served as it
// is while a refresh runs in the background, and changed() is called when
// a refresh changes the answer (or its error). While the last refresh
// failed, the last answer is served with that error, wrapped in errStale.
// So a sync never waits on an API server that is away for a Secret it
// already knows. Safe for concurrent use.
type cachedSecrets struct {
	next secretGetter
	ttl  time.Duration
	now  func() time.Time
	// changed is called after a refresh changed an answer; may be nil.
	changed func()
	// async runs a refresh; tests run it inline.
	async func(func())

	mu         sync.Mutex
	entries    map[[2]string]secretEntry
	refreshing map[[2]string]bool
}

type secretEntry struct {
	value string
	ok    bool
	// err is the last refresh's error, if it failed.
	err error
	// at is when it was last refreshed, failed or not; readAt when value
	// and ok were read.
	at, readAt time.Time
}

func newCachedSecrets(next secretGetter, ttl time.Duration, changed func()) *cachedSecrets {
	return &cachedSecrets{
		next: next, ttl: ttl, now: time.Now, changed: changed, async: func(f func()) { go f() },
		entries: map[[2]string]secretEntry{}, refreshing: map[[2]string]bool{},
	}
}

func (c *cachedSecrets) get(ctx context.Context, name, key string) (string, bool, error) {
	k := [2]string{name, key}
	c.mu.Lock()
	e, hit := c.entries[k]
	if hit && c.now().Sub(e.at) >= c.ttl && !c.refreshing[k] {
		c.refreshing[k] = true
		c.async(func() { c.refresh(k) })
	}
	c.mu.Unlock()
	if hit {
		if e.err != nil {
			return e.value, e.ok, fmt.Errorf("%w (from %v ago): %w", errStale, c.now().Sub(e.readAt).Truncate(time.Second), e.err)
		}
		return e.value, e.ok, nil
	}
	v, ok, err := c.next.get(ctx, name, key)
	if err != nil {
		return "", false, err
	}
	c.mu.Lock()
	now := c.now()
	c.entries[k] = secretEntry{value: v, ok: ok, at: now, readAt: now}
	c.mu.Unlock()
	return v, ok, nil
}

// refresh reads k again, keeping the last good answer if the read fails.
func (c *cachedSecrets) refresh(k [2]string) {
	v, ok, err := c.next.get(context.Background(), k[0], k[1])
	c.mu.Lock()
	old := c.entries[k]
	now := c.now()
	e := secretEntry{value: v, ok: ok, err: err, at: now, readAt: now}
	if err != nil {
		e.value, e.ok, e.readAt = old.value, old.ok, old.readAt
	}
	c.entries[k] = e
	delete(c.refreshing, k)
	c.mu.Unlock()
	if c.changed != nil && (e.value != old.value || e.ok != old.ok || errText(e.err) != errText(old.err)) {
		c.changed()
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
