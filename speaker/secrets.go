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
// would GET every password Secret again. A Secret created or changed is
// picked up within this time (a missing one is retried after it).
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

// errStale wraps the error of a read that failed while an earlier answer
// is known: that answer is returned with it, so that the caller can keep
// using the last password it read through an API outage.
var errStale = errors.New("serving the last answer read")

// cachedSecrets remembers what a secretGetter answered, missing keys
// included, for ttl. Errors are not cached: a failed read is tried again
// next time, and meanwhile returns the last answer (of any age) with an
// error wrapping errStale. Safe for concurrent use.
type cachedSecrets struct {
	next secretGetter
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	entries map[[2]string]secretEntry
}

type secretEntry struct {
	value string
	ok    bool
	at    time.Time
}

func newCachedSecrets(next secretGetter, ttl time.Duration) *cachedSecrets {
	return &cachedSecrets{next: next, ttl: ttl, now: time.Now, entries: map[[2]string]secretEntry{}}
}

func (c *cachedSecrets) get(ctx context.Context, name, key string) (string, bool, error) {
	k := [2]string{name, key}
	c.mu.Lock()
	e, hit := c.entries[k]
	c.mu.Unlock()
	if hit && c.now().Sub(e.at) < c.ttl {
		return e.value, e.ok, nil
	}
	v, ok, err := c.next.get(ctx, name, key)
	if err != nil {
		if hit {
			return e.value, e.ok, fmt.Errorf("%w (from %v ago): %w", errStale, c.now().Sub(e.at).Truncate(time.Second), err)
		}
		return "", false, err
	}
	c.mu.Lock()
	c.entries[k] = secretEntry{value: v, ok: ok, at: c.now()}
	c.mu.Unlock()
	return v, ok, nil
}
