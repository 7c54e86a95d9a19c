package aws

import (
	"maps"
	"slices"
	"sync"
	"time"

	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"k8s.io/apimachinery/pkg/types"
)

// madeFor bounds how long an ELB resource this process created, which
// describes do not show, is taken to be on its way rather than gone. ELB
// shows new resources within seconds; past this, Berth looks again as if
// it had not made it (and a create then meets the existing one).
const madeFor = 2 * time.Minute

// ledger remembers ARNs per Service, each with a value V and when it was
// noted: the target groups that AWS would not delete yet (once detached
// they are no longer found through the NLB), and the target groups and
// listeners this process created that describes may not show yet (ELB is
// eventually consistent). It is safe for concurrent use. After a restart
// what it held is found again by name and tags, once AWS shows it.
type ledger[V any] struct {
	mu sync.Mutex
	m  map[types.UID]map[string]noted[V]
}

type noted[V any] struct {
	v    V
	when time.Time
}

// add notes arn with v; one noted already keeps its time.
func (l *ledger[V]) add(uid types.UID, arn string, v V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[types.UID]map[string]noted[V]{}
	}
	if l.m[uid] == nil {
		l.m[uid] = map[string]noted[V]{}
	}
	n, ok := l.m[uid][arn]
	if !ok {
		n.when = time.Now()
	}
	n.v = v
	l.m[uid][arn] = n
}

func (l *ledger[V]) done(uid types.UID, arn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m[uid], arn)
	if len(l.m[uid]) == 0 {
		delete(l.m, uid)
	}
}

// forget drops everything noted for the Service.
func (l *ledger[V]) forget(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, uid)
}

// has reports whether arn is noted for the Service.
func (l *ledger[V]) has(uid types.UID, arn string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.m[uid][arn]
	return ok
}

// list returns the Service's ARNs, sorted.
func (l *ledger[V]) list(uid types.UID) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.m[uid]))
}

// recent returns the Service's ARNs noted less than d ago, with their
// values.
func (l *ledger[V]) recent(uid types.UID, d time.Duration) map[string]V {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]V{}
	for arn, n := range l.m[uid] {
		if time.Since(n.when) < d {
			out[arn] = n.v
		}
	}
	return out
}

// madeNLBs remembers, per Service, the NLB this process created as
// CreateLoadBalancer described it, until describes show it: a retry then
// carries on with it instead of creating it again (which, with other
// settings such as a new Elastic IP list, AWS would refuse). It is safe
// for concurrent use.
type madeNLBs struct {
	mu sync.Mutex
	m  map[types.UID]madeNLB
}

type madeNLB struct {
	lb   elbtypes.LoadBalancer
	when time.Time
}

func (m *madeNLBs) add(uid types.UID, lb elbtypes.LoadBalancer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = map[types.UID]madeNLB{}
	}
	m.m[uid] = madeNLB{lb: lb, when: time.Now()}
}

func (m *madeNLBs) forget(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, uid)
}

// recent returns the Service's NLB if it was created less than d ago.
func (m *madeNLBs) recent(uid types.UID, d time.Duration) *elbtypes.LoadBalancer {
	m.mu.Lock()
	defer m.mu.Unlock()
	if made, ok := m.m[uid]; ok && time.Since(made.when) < d {
		return &made.lb
	}
	return nil
}
