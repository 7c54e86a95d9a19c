package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
)

func TestAddrRanges(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	tests := []struct {
		in   []netip.Addr
		want []string
	}{
		{nil, nil},
		{addrs("198.51.100.1"), []string{"198.51.100.1"}},
		{addrs("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.7", "198.51.100.255", "198.51.101.0"),
			[]string{"198.51.100.1-198.51.100.3", "198.51.100.7", "198.51.100.255-198.51.101.0"}},
		{addrs("2001:db8::1", "2001:db8::2"), []string{"2001:db8::1-2001:db8::2"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, addrRanges(tc.in)); diff != "" {
			t.Errorf("addrRanges(%v) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestNodeStatus(t *testing.T) {
	a, b, c := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")
	host := func(x netip.Addr) bgp.Advertisement { return bgp.Advertisement{Prefix: netip.PrefixFrom(x, 32)} }
	plan := &Plan{Eligible: true,
		Routes:  map[string][]bgp.Advertisement{"r1": {host(a), host(b), host(c)}, "r2": {host(a), host(b), host(c)}},
		L2Owned: []netip.Addr{c}}
	withheld := map[netip.Addr]string{c: "the kernel refused its forwarding rules"}
	announced := withholding(plan, withheld)
	sess := []*v1alpha1.BerthBGPSession{{Peer: "r1", State: "Established"}, {Peer: "r2", State: "Active", LastError: "connection refused"}}
	got := nodeStatus(plan, announced, withheld, map[netip.Addr][]string{c: {"demo/web"}}, sess, true)
	want := &v1alpha1.BerthNodeStatusStatus{
		Eligible: true, Forwarding: true, SessionsEstablished: 1, SessionsTotal: 2,
		BGPAddresses: 2, BGP: []string{"198.51.100.1-198.51.100.2"},
		Sessions:          []v1alpha1.BerthBGPSession{*sess[0], *sess[1]},
		WithheldAddresses: 1,
		Withheld:          []v1alpha1.BerthWithheldAddress{{Address: "198.51.100.3", Services: []string{"demo/web"}, Reason: withheld[c]}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodeStatus (-want +got):\n%s", diff)
	}
}

// fakeNodeStatus records what the speaker writes.
type fakeNodeStatus struct {
	writes []*v1alpha1.BerthNodeStatusStatus
}

func (f *fakeNodeStatus) apply(_ context.Context, _ types.UID, st *v1alpha1.BerthNodeStatusStatus) error {
	f.writes = append(f.writes, st)
	return nil
}

// fakeSessionEvents records session Events as "peer up|down message".
type fakeSessionEvents struct{ events []string }

func (f *fakeSessionEvents) session(_ context.Context, peer string, up bool, message string) {
	state := "down"
	if up {
		state = "up"
	}
	f.events = append(f.events, peer+" "+state+" "+message)
}

// TestWriteNodeStatusCoalesces checks that the node's status is written
// only when it changed, and at most once per interval: changes within the
// interval are written together once it has passed. A change of the
// withheld addresses, which the other speakers move layer-2 addresses by,
// is written at once.
func TestWriteNodeStatusCoalesces(t *testing.T) {
	e := newDegradeEnv(t)
	w := &fakeNodeStatus{}
	e.s.status = nodeStatusState{writer: w, interval: 5 * time.Second}
	e.s.metrics = NewMetrics(prometheus.NewRegistry())
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	st := func(n int32) *v1alpha1.BerthNodeStatusStatus { return &v1alpha1.BerthNodeStatusStatus{BGPAddresses: n} }
	steps := []struct {
		at     time.Duration
		st     *v1alpha1.BerthNodeStatusStatus
		writes int
	}{
		{0, st(1), 1},
		{time.Second, st(1), 1},                                                // unchanged
		{2 * time.Second, st(2), 1},                                            // changed within the interval: later
		{3 * time.Second, st(3), 1},                                            // and again
		{5 * time.Second, st(3), 2},                                            // the interval passed: the latest
		{6 * time.Second, st(3), 2},                                            // unchanged
		{20 * time.Second, st(4), 3},                                           // a change after a quiet spell: at once
		{21 * time.Second, withheld(st(4), "198.51.100.5"), 4},                 // withheld: at once
		{22 * time.Second, withheld(st(5), "198.51.100.5"), 4},                 // the same withheld: later
		{23 * time.Second, withheld(st(5), "198.51.100.5", "198.51.100.6"), 5}, // more withheld: at once
		{24 * time.Second, st(5), 6},                                           // none withheld: at once
	}
	for i, step := range steps {
		e.s.writeNodeStatus(t.Context(), step.st, t0.Add(step.at))
		if len(w.writes) != step.writes {
			t.Fatalf("step %d: %d writes, want %d", i, len(w.writes), step.writes)
		}
	}
	if w.writes[4].BGPAddresses != 5 {
		t.Errorf("the withheld write holds %d, want the latest, 5", w.writes[4].BGPAddresses)
	}
	if w.writes[1].BGPAddresses != 3 {
		t.Errorf("the coalesced write holds %d, want the latest, 3", w.writes[1].BGPAddresses)
	}
}

func TestSessionChanges(t *testing.T) {
	e := newDegradeEnv(t)
	ev := &fakeSessionEvents{}
	e.s.node, e.s.status = "n1", nodeStatusState{events: ev}
	steps := [][]*v1alpha1.BerthBGPSession{
		{{Peer: "r1", State: "Active"}},
		{{Peer: "r1", State: "Established"}},
		{{Peer: "r1", State: "Established"}},
		{{Peer: "r1", State: "Idle", LastError: "hold timer expired"}},
	}
	for _, s := range steps {
		e.s.sessionChanges(t.Context(), s)
	}
	want := []string{"r1 up node n1: the session is Established", "r1 down node n1: the session is Idle: hold timer expired"}
	if diff := cmp.Diff(want, ev.events); diff != "" {
		t.Errorf("session Events (-want +got):\n%s", diff)
	}
}

// TestNodeStatusSize measures the BerthNodeStatus of a node at the scale
// Berth is sized for, 10,000 Services on 100 nodes, in the worst case for
// its size: no two of its BGP addresses consecutive (so no ranges), half
// of them IPv6, its share of layer-2 owners (100) and 100 withheld
// addresses. It must stay far below etcd's 1.5 MiB request limit.
func TestNodeStatusSize(t *testing.T) {
	plan := &Plan{Eligible: true, Routes: map[string][]bgp.Advertisement{}}
	withheld := map[netip.Addr]string{}
	holders := map[netip.Addr][]string{}
	v4, v6 := netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("2001:db8::")
	for i := range 10000 {
		a := &v4
		if i%2 == 1 {
			a = &v6
		}
		*a = a.Next().Next() // never consecutive
		plan.Routes["r1"] = append(plan.Routes["r1"], bgp.Advertisement{Prefix: netip.PrefixFrom(*a, a.BitLen())})
		if i%100 == 0 {
			plan.L2Owned = append(plan.L2Owned, *a)
		}
		if i%100 == 1 {
			withheld[*a] = "sync forwarding: writing nftables table: sending 57 operations over netlink: netlink receive: operation not permitted"
			holders[*a] = []string{fmt.Sprintf("namespace-%04d/service-%05d", i/100, i)}
		}
	}
	plan.Routes["r2"] = plan.Routes["r1"]
	sess := []*v1alpha1.BerthBGPSession{{Peer: "r1", State: "Established"}, {Peer: "r2", State: "Established"}}
	st := nodeStatus(plan, withholding(plan, withheld), withheld, holders, sess, true)
	data, err := json.Marshal(&v1alpha1.BerthNodeStatus{ObjectMeta: metav1.ObjectMeta{Name: "node-042"}, Status: *st})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURED: BerthNodeStatus of a node announcing 10,000 non-consecutive addresses (100 on layer 2, 100 withheld): %d bytes of JSON", len(data))
	if st.BGPAddresses != 9900 || st.L2Addresses != 100 || st.WithheldAddresses != 100 {
		t.Errorf("counts %d BGP, %d layer 2, %d withheld; want 9900, 100, 100", st.BGPAddresses, st.L2Addresses, st.WithheldAddresses)
	}
	if len(data) > 512<<10 {
		t.Errorf("%d bytes: more than a third of etcd's request limit", len(data))
	}
}

// withheld returns st withholding addrs.
func withheld(st *v1alpha1.BerthNodeStatusStatus, addrs ...string) *v1alpha1.BerthNodeStatusStatus {
	for _, a := range addrs {
		st.Withheld = append(st.Withheld, v1alpha1.BerthWithheldAddress{Address: a, Reason: "broken"})
	}
	st.WithheldAddresses = int32(len(addrs))
	return st
}
