package speaker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/berthlb/berth/api/v1alpha1"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/nodeport"
)

// TestL2MovesWhatItsOwnerCannotForward plays the speakers' syncs, one step
// at a time, over three nodes and one layer-2 address: each node plans from
// the withheld addresses the nodes published after the previous step, tries
// to forward what its plan forwards (failing everything while broken),
// withholds what failed, answers for what it owns and does not withhold, and
// publishes what it withholds. It checks who answers at each step: the
// address moves off a node that cannot forward it, does not flap back while
// that node stays broken (it keeps trying, and keeps withholding), and moves
// back once, after the repair. When every node withholds it, nobody answers,
// and every node reports it stranded.
func TestL2MovesWhatItsOwnerCannotForward(t *testing.T) {
	addr := netip.MustParseAddr("198.51.100.5")
	all := []string{"n1", "n2", "n3"}
	o := l2.Owner(addr, all)
	m := l2.Owner(addr, without(all, o))
	rest := without(without(all, o), m)[0]
	type step struct {
		broken []string // nodes whose forwarding fails from this step on
		repair []string // nodes repaired at this step
		want   []string // the nodes answering after it
		// stranded are the nodes that report the address stranded.
		stranded []string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "the owner breaks: the next node takes over, keeps it, and gives it back once after the repair",
			steps: []step{
				{want: []string{o}},
				{broken: []string{o}, want: nil}, // o withholds; the others have not read it yet
				{want: []string{m}},              // everyone leaves o out
				{want: []string{m}},
				{want: []string{m}},
				{want: []string{m}},
				{repair: []string{o}, want: []string{m}}, // o forwards again, and says so
				{want: []string{o}},                      // o is a candidate again: it takes the address back
				{want: []string{o}},
				{want: []string{o}},
			},
		},
		{
			name: "a node that is not the owner breaks: nothing moves",
			steps: []step{
				{want: []string{o}},
				{broken: []string{m}, want: []string{o}},
				{want: []string{o}},
				{repair: []string{m}, want: []string{o}},
				{want: []string{o}},
			},
		},
		{
			name: "the new owner breaks too, then every node: nobody answers, and says so",
			steps: []step{
				{want: []string{o}},
				{broken: []string{o}, want: nil},
				{want: []string{m}},
				{broken: []string{m}, want: nil},
				{want: []string{rest}},
				{broken: []string{rest}, want: nil},
				{want: nil, stranded: all},
				{want: nil, stranded: all},
				{repair: []string{m}, want: nil, stranded: all},
				{want: []string{m}},
				{repair: []string{o, rest}, want: []string{m}},
				{want: []string{o}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nodes := []*corev1.Node{namedNode("n1"), namedNode("n2"), namedNode("n3")}
			base := Snapshot{
				Nodes:    nodes,
				Pools:    []*v1alpha1.BerthIPPool{pool("lan", "198.51.100.0/24")},
				L2Advs:   []*v1alpha1.BerthL2Advertisement{l2adv("all")},
				Services: []*corev1.Service{lbService("web", []string{addr.String()})},
				L2:       L2View{Members: all, Quorate: true},
			}
			broken := map[string]bool{}
			withheld := map[string]map[netip.Addr]string{}
			published := map[string]map[netip.Addr]bool{}
			for i, st := range tc.steps {
				for _, n := range st.broken {
					broken[n] = true
				}
				for _, n := range st.repair {
					delete(broken, n)
				}
				var answering, stranded []string
				owners := map[string]bool{}
				for _, n := range nodes {
					snap := base
					snap.Node, snap.CannotForward = n, published
					p := Compute(snap)
					// The sync: layer 2 withholds what the last sync
					// could not forward, and syncs again at once when
					// that changed.
					for range 3 {
						var err error
						if broken[n.Name] {
							err = errors.New("the table is owned by another process")
						}
						now := unforwarded(p.Forward, err)
						if maps.Equal(now, withheld[n.Name]) {
							break
						}
						withheld[n.Name] = now
					}
					if slices.Contains(withholding(p, withheld[n.Name]).L2Owned, addr) {
						answering = append(answering, n.Name)
					}
					if _, ok := strandedL2(n.Name, p)[addr]; ok {
						stranded = append(stranded, n.Name)
					}
					owners[p.L2[0].Owner] = true
				}
				if len(owners) != 1 {
					t.Fatalf("step %d: the nodes disagree on the owner: %v", i, owners)
				}
				if !slices.Equal(answering, st.want) || !slices.Equal(stranded, st.stranded) {
					t.Fatalf("step %d: %v answer, %v report it stranded; want %v and %v (o=%s m=%s)", i, answering, stranded, st.want, st.stranded, o, m)
				}
				// The statuses are written after the syncs.
				published = map[string]map[netip.Addr]bool{}
				for n, w := range withheld {
					for a := range w {
						if published[n] == nil {
							published[n] = map[netip.Addr]bool{}
						}
						published[n][a] = true
					}
				}
			}
		})
	}
}

// TestCannotForward checks how the nodes' withheld addresses are read from
// their BerthNodeStatus objects, and which updates make a sync.
func TestCannotForward(t *testing.T) {
	st := func(node string, addrs ...string) *v1alpha1.BerthNodeStatus {
		s := &v1alpha1.BerthNodeStatus{}
		s.Name = node
		s.Status = *withheld(&v1alpha1.BerthNodeStatusStatus{}, addrs...)
		return s
	}
	got := cannotForward([]*v1alpha1.BerthNodeStatus{st("n1", "198.51.100.5", "2001:db8::5", "not an address"), st("n2")})
	want := map[string]map[netip.Addr]bool{"n1": {netip.MustParseAddr("198.51.100.5"): true, netip.MustParseAddr("2001:db8::5"): true}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("cannotForward = %v, want %v", got, want)
	}
	busier := st("n1", "198.51.100.5")
	busier.Status.BGPAddresses = 7
	for _, tc := range []struct {
		old, cur *v1alpha1.BerthNodeStatus
		want     bool
	}{
		{st("n1"), st("n1"), false},
		{st("n1", "198.51.100.5"), busier, false},
		{st("n1"), st("n1", "198.51.100.5"), true},
		{st("n1", "198.51.100.5"), st("n1"), true},
	} {
		if got := withheldChanged(tc.old, tc.cur); got != tc.want {
			t.Errorf("withheldChanged(%v, %v) = %v, want %v", tc.old.Status.Withheld, tc.cur.Status.Withheld, got, tc.want)
		}
	}
}

// recordingForwardingEvents records forwarding Events as "service: message".
type recordingForwardingEvents struct{ got []string }

func (r *recordingForwardingEvents) forwarding(_ context.Context, service string, _ bool, message string) {
	r.got = append(r.got, service+": "+message)
}

// TestSyncReadsWithheldStatuses checks the speaker's wiring: the sync reads
// the BerthNodeStatus objects into the plan, a node left out of an address
// keeps forwarding it, and an address every candidate withholds is
// reported once.
func TestSyncReadsWithheldStatuses(t *testing.T) {
	e := newDegradeEnv(t)
	e.idx["statuses"] = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	e.s.listers.statuses = berthlisters.NewBerthNodeStatusLister(e.idx["statuses"])
	ev := &recordingForwardingEvents{}
	e.s.fwdEvents = ev
	addr := netip.MustParseAddr("198.51.100.5")
	e.fwd.err = errors.New("operation not permitted")
	_ = e.sync(t)
	if p := e.s.LastPlan(); !slices.Equal(p.L2Owned, []netip.Addr{addr}) || len(p.L2Retry) != 0 {
		t.Fatalf("before its status says so, n1 owns %v (retries %v)", p.L2Owned, p.L2Retry)
	}
	if len(ev.got) != 1 {
		t.Fatalf("Events %q, want the withdrawal", ev.got)
	}
	st := &v1alpha1.BerthNodeStatus{}
	st.Name = "n1"
	st.Status = *withheld(&v1alpha1.BerthNodeStatusStatus{}, addr.String())
	e.add("statuses", st)
	for range 2 {
		_ = e.sync(t)
		p := e.s.LastPlan()
		if len(p.L2Owned) != 0 || !slices.Equal(p.L2Retry, []netip.Addr{addr}) || p.L2[0].Owner != "" ||
			!slices.ContainsFunc(p.Forward, func(r nodeport.Rule) bool { return r.Address == addr }) {
			t.Fatalf("plan owns %v, retries %v, owner %q, forwards %v", p.L2Owned, p.L2Retry, p.L2[0].Owner, p.Forward)
		}
		if len(e.resp.addrs) != 0 {
			t.Fatalf("answers for %v", e.resp.addrs)
		}
	}
	want := "default/web: no node can forward 198.51.100.5: every eligible node withholds it (n1), so nobody answers for it on layer 2"
	if len(ev.got) != 2 || ev.got[1] != want {
		t.Errorf("Events %q, want the withdrawal and, once, %q", ev.got, want)
	}
}
