package allocator

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The scenario tables below drive an Allocator through steps. After every
// step the runner checks all invariants against brute force, and after every
// Assign it checks that a failed Assign changed nothing and that repeating a
// successful Assign returns the same result and changes nothing.

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

type step struct {
	pools   []Pool   // SetPools when non-nil
	assign  *Request // Assign, expecting want or reason+msg
	want    []Assignment
	reason  Reason
	msg     string
	release string
	// Checks done after the step when set.
	invalid *[]string
	lookup  map[string][]Assignment
	holders map[string][]string
}

type scenario struct {
	name  string
	steps []step
}

func setPools(ps ...Pool) step { return step{pools: append([]Pool{}, ps...)} }
func release(s string) step    { return step{release: s} }
func assign(r Request, want ...Assignment) step {
	return step{assign: &r, want: want}
}
func fails(r Request, reason Reason, msg string) step {
	return step{assign: &r, reason: reason, msg: msg}
}
func invalid(s ...string) step { return step{invalid: &s} }
func holders(pool string, s ...string) step {
	return step{holders: map[string][]string{pool: s}}
}
func lookup(svc string, as ...Assignment) step {
	return step{lookup: map[string][]Assignment{svc: as}}
}

// got is an Assignment, written short: got("lan", "198.51.100.1").
func got(pool, a string) Assignment { return Assignment{Addr: addr(a), Pool: pool} }

func pool(name string, ranges ...string) Pool {
	return Pool{Name: name, Ranges: rng(ranges...), AutoAssign: true}
}

// req builds a single-stack IPv4 request of service "ns/name".
func req(service string, pools ...string) Request {
	ns, _, _ := strings.Cut(service, "/")
	return Request{Service: service, Namespace: ns, Families: []Family{IPv4}, Pools: pools}
}

func with(r Request, fn func(*Request)) Request { fn(&r); return r }
func withPool(p Pool, fn func(*Pool)) Pool      { fn(&p); return p }

func requested(r Request, a ...string) Request {
	return with(r, func(r *Request) { r.Requested = addrs(a...) })
}
func current(r Request, a ...string) Request {
	return with(r, func(r *Request) { r.Current = addrs(a...) })
}
func families(r Request, requireAll bool, f ...Family) Request {
	return with(r, func(r *Request) { r.Families, r.RequireAll = f, requireAll })
}
func shared(r Request, key string, ports ...Port) Request {
	return with(r, func(r *Request) { r.SharingKey, r.Ports = key, ports })
}

func tcp(p int32) Port { return Port{Protocol: "TCP", Port: p} }
func udp(p int32) Port { return Port{Protocol: "UDP", Port: p} }

func runScenarios(t *testing.T, scenarios []scenario) {
	t.Helper()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			a := New()
			for i, st := range sc.steps {
				runStep(t, a, i, st)
				if t.Failed() {
					t.FailNow()
				}
			}
		})
	}
}

func runStep(t *testing.T, a *Allocator, i int, st step) {
	t.Helper()
	switch {
	case st.pools != nil:
		a.SetPools(st.pools)
	case st.release != "":
		a.Release(st.release)
	case st.assign != nil:
		runAssign(t, a, i, st)
	}
	checkInvariants(t, a)
	if st.invalid != nil {
		if d := cmp.Diff(*st.invalid, a.Invalid()); d != "" {
			t.Errorf("step %d: Invalid() (-want +got):\n%s", i, d)
		}
	}
	for svc, want := range st.lookup {
		if d := cmp.Diff(want, a.Lookup(svc), addrCmp); d != "" {
			t.Errorf("step %d: Lookup(%s) (-want +got):\n%s", i, svc, d)
		}
	}
	for p, want := range st.holders {
		if d := cmp.Diff(want, a.Holders(p)); d != "" {
			t.Errorf("step %d: Holders(%s) (-want +got):\n%s", i, p, d)
		}
	}
}

func runAssign(t *testing.T, a *Allocator, i int, st step) {
	t.Helper()
	before := snapshot(a)
	res, err := a.Assign(*st.assign)
	if st.reason != "" {
		if err == nil {
			t.Fatalf("step %d: Assign(%s) = %v, want error %s: %s", i, st.assign.Service, res, st.reason, st.msg)
		}
		if ReasonOf(err) != st.reason || err.Error() != st.msg {
			t.Errorf("step %d: Assign(%s) error\n got: %s: %s\nwant: %s: %s", i, st.assign.Service, ReasonOf(err), err, st.reason, st.msg)
		}
		if d := cmp.Diff(before, snapshot(a)); d != "" {
			t.Errorf("step %d: failed Assign changed state (-before +after):\n%s", i, d)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d: Assign(%s) failed: %s: %v", i, st.assign.Service, ReasonOf(err), err)
	}
	if d := cmp.Diff(st.want, res, addrCmp); d != "" {
		t.Errorf("step %d: Assign(%s) (-want +got):\n%s", i, st.assign.Service, d)
	}
	after := snapshot(a)
	again, err := a.Assign(*st.assign)
	if err != nil || !cmp.Equal(res, again, addrCmp) {
		t.Errorf("step %d: repeated Assign(%s) = %v, %v; want %v", i, st.assign.Service, again, err, res)
	}
	if d := cmp.Diff(after, snapshot(a)); d != "" {
		t.Errorf("step %d: repeated Assign changed state (-first +second):\n%s", i, d)
	}
}

// snapshot captures everything observable about allocations.
func snapshot(a *Allocator) map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]string{}
	for name, s := range a.services {
		out["service "+name] = sprintf("%+v", *s)
	}
	for addr, h := range a.addrs {
		for _, s := range h.holders {
			out["addr "+addr.String()] += s.name + " "
		}
	}
	for name, p := range a.pools {
		out["pool "+name] = sprintf("%d %d", p.v4.used, p.v6.used)
	}
	return out
}

func TestSnapshotSeesChanges(t *testing.T) {
	// The no-change checks above are only worth something if snapshot
	// notices changes.
	a := New()
	a.SetPools([]Pool{pool("lan", "198.51.100.0/30")})
	before := snapshot(a)
	if _, err := a.Assign(req("default/a", "lan")); err != nil {
		t.Fatal(err)
	}
	if cmp.Equal(before, snapshot(a)) {
		t.Fatal("snapshot did not change after an Assign")
	}
}
