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

// ledger remembers ARNs per Service, with when each was noted: the target
// groups that AWS would not delete yet (once detached they are no longer
// found through the NLB), and the NLBs and groups this process created
// that describes may not show yet (ELB is eventually consistent). It is
// safe for concurrent use. After a restart what it held is found again by
// name and tags, once AWS shows it.
type ledger struct {
	mu sync.Mutex
	m  map[types.UID]map[string]time.Time
}

func (l *ledger) add(uid types.UID, arn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[types.UID]map[string]time.Time{}
	}
	if l.m[uid] == nil {
		l.m[uid] = map[string]time.Time{}
	}
	if _, ok := l.m[uid][arn]; !ok {
		l.m[uid][arn] = time.Now()
	}
}

func (l *ledger) done(uid types.UID, arn string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m[uid], arn)
	if len(l.m[uid]) == 0 {
		delete(l.m, uid)
	}
}

// forget drops everything noted for the Service.
func (l *ledger) forget(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, uid)
}

// list returns the Service's ARNs, sorted.
func (l *ledger) list(uid types.UID) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Sorted(maps.Keys(l.m[uid]))
}

// recent returns the Service's ARNs noted less than d ago, sorted.
func (l *ledger) recent(uid types.UID, d time.Duration) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for arn, when := range l.m[uid] {
		if time.Since(when) < d {
			out = append(out, arn)
		}
	}
	slices.Sort(out)
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
