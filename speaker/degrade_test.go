package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	berthlisters "github.com/berthlb/berth/client/listers/api/v1alpha1"
	"github.com/berthlb/berth/l2"
	"github.com/berthlb/berth/nodeport"
)

// fakeBGP is a BGP back end that keeps a peer whose SetPeers fails as it
// was, as bgp.Server does, and fails what it is told to.
type fakeBGP struct {
	peers  map[string]bgp.Peer
	routes map[string][]bgp.Advertisement
	// setErr and advErr fail a peer's SetPeers or Advertise.
	setErr, advErr map[string]error
}

func (f *fakeBGP) SetPeers(_ context.Context, peers []bgp.Peer) error {
	var errs []error
	next := map[string]bgp.Peer{}
	for _, p := range peers {
		if err := f.setErr[p.Name]; err != nil {
			errs = append(errs, &bgp.PeerError{Peer: p.Name, Err: err})
			if old, ok := f.peers[p.Name]; ok {
				next[p.Name] = old
			}
			continue
		}
		next[p.Name] = p
	}
	f.peers = next
	return errors.Join(errs...)
}

func (f *fakeBGP) Advertise(_ context.Context, peer string, advs []bgp.Advertisement) error {
	if err := f.advErr[peer]; err != nil {
		return &bgp.PeerError{Peer: peer, Family: bgp.IPv6Unicast, Err: err}
	}
	f.routes[peer] = advs
	return nil
}

func (f *fakeBGP) Status(context.Context) ([]bgp.PeerStatus, error) { return nil, nil }

// selfMembers is a quorate membership of this node alone.
type selfMembers struct{}

func (selfMembers) Members() []string                           { return []string{"n1"} }
func (selfMembers) Known() []string                             { return []string{"n1"} }
func (selfMembers) Lease() (uint64, bool)                       { return 1, true }
func (selfMembers) Forget(...string)                            {}
func (r *recordingResponder) Set(m map[netip.Addr]l2.Ownership) { r.addrs = m }

type recordingResponder struct{ addrs map[netip.Addr]l2.Ownership }

// failingForwarder fails Sync while err is set.
type failingForwarder struct {
	fakeForwarder
	err error
}

func (f *failingForwarder) Sync(ctx context.Context, rules []nodeport.Rule) error {
	if f.err != nil {
		return f.err
	}
	return f.fakeForwarder.Sync(ctx, rules)
}

// recordingProblems records the problems reported, by object.
type recordingProblems map[string]string

func (r recordingProblems) report(_ context.Context, object, problem string) { r[object] = problem }

// secretsFunc reads Secrets through a function.
type secretsFunc func(name, key string) (string, bool, error)

func (f secretsFunc) get(_ context.Context, name, key string) (string, bool, error) {
	return f(name, key)
}

// degradeEnv is a speaker on node n1 with two peers, a (no password) and
// b (password in Secret pw-b), layer 2 and forwarding, over fakes.
type degradeEnv struct {
	s        *Speaker
	bgp      *fakeBGP
	fwd      *failingForwarder
	resp     *recordingResponder
	problems recordingProblems
	idx      map[string]cache.Indexer
	secrets  map[string]string // name/key -> value
	// secretErr fails every Secret read while set.
	secretErr error
}

func newDegradeEnv(t *testing.T) *degradeEnv {
	e := &degradeEnv{
		bgp:      &fakeBGP{peers: map[string]bgp.Peer{}, routes: map[string][]bgp.Advertisement{}, setErr: map[string]error{}, advErr: map[string]error{}},
		fwd:      &failingForwarder{},
		resp:     &recordingResponder{},
		problems: recordingProblems{},
		idx:      map[string]cache.Indexer{},
		secrets:  map[string]string{"pw-b/password": "old"},
	}
	for _, kind := range []string{"nodes", "services", "slices", "pools", "peers", "bgpAdvs", "l2Advs"} {
		e.idx[kind] = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	e.add("nodes", node())
	e.add("services", lbService("web", []string{"198.51.100.5"}))
	e.add("pools", pool("main", "198.51.100.0/24"))
	e.add("peers", peer("a", "198.18.0.1"))
	e.add("peers", peer("b", "198.18.0.2", func(s *v1alpha1.BerthBGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "pw-b"} }))
	e.add("bgpAdvs", adv("all"))
	e.add("l2Advs", &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "all"}})
	st := newL2State(selfMembers{}, e.resp, 0)
	e.s = &Speaker{
		node: "n1",
		listers: listers{
			nodes: corelisters.NewNodeLister(e.idx["nodes"]), services: corelisters.NewServiceLister(e.idx["services"]),
			slices: discoverylisters.NewEndpointSliceLister(e.idx["slices"]), pools: berthlisters.NewBerthIPPoolLister(e.idx["pools"]),
			peers: berthlisters.NewBerthBGPPeerLister(e.idx["peers"]), bgpAdvs: berthlisters.NewBerthBGPAdvertisementLister(e.idx["bgpAdvs"]),
			l2Advs: berthlisters.NewBerthL2AdvertisementLister(e.idx["l2Advs"]),
		},
		bgp: e.bgp, fwd: e.fwd, l2: st, wantL2: true,
		secrets: secretsFunc(func(name, key string) (string, bool, error) {
			if e.secretErr != nil {
				return "", false, e.secretErr
			}
			v, ok := e.secrets[name+"/"+key]
			return v, ok, nil
		}),
		problems: e.problems,
		metrics:  NewMetrics(prometheus.NewRegistry()),
		applied:  map[string]bgp.Peer{},
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
	}
	t.Cleanup(e.s.queue.ShutDown)
	return e
}

func (e *degradeEnv) add(kind string, obj any) {
	if err := e.idx[kind].Add(obj); err != nil {
		panic(err)
	}
}

// sync syncs twice: a gained layer-2 address is staged for one sync.
func (e *degradeEnv) sync(t *testing.T) error {
	t.Helper()
	_ = e.s.sync(t.Context())
	return e.s.sync(t.Context())
}

// TestSyncDegradesPerPart breaks one part after a good sync, then adds a
// Service: the broken part keeps its last good state and is reported on its
// object, and every other part serves the new Service.
func TestSyncDegradesPerPart(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "pw-b", errors.New("not in resourceNames"))
	tests := []struct {
		name        string
		breakIt     func(*degradeEnv)
		wantErr     bool              // the sync is retried
		wantB       string            // b's password as applied
		wantBRoutes int               // routes announced to b
		problems    map[string]string // peer: substring of its problem, "" for none
		wantRules   int
		// withdrawn: the node cannot forward, so it announces nothing
		// (BGP and layer 2); its peers stay configured.
		withdrawn bool
	}{
		{name: "b's Secret deleted: b keeps its session and routes",
			breakIt: func(e *degradeEnv) { delete(e.secrets, "pw-b/password") },
			wantB:   "old", wantBRoutes: 1, wantRules: 2,
			problems: map[string]string{"a": "", "b": `password Secret "pw-b" has no key "password"`}},
		{name: "API server away: b keeps its session",
			breakIt: func(e *degradeEnv) { e.secretErr = errors.New("connection refused") },
			wantB:   "old", wantBRoutes: 1, wantRules: 2,
			problems: map[string]string{"a": "", "b": "cannot read it: connection refused"}},
		{name: "API server away, the cache has the password: b follows the plan",
			breakIt: func(e *degradeEnv) {
				e.s.secrets = secretsFunc(func(string, string) (string, bool, error) {
					return "old", true, fmt.Errorf("%w: connection refused", errStale)
				})
			},
			wantB: "old", wantBRoutes: 2, wantRules: 2,
			problems: map[string]string{"a": "", "b": ""}},
		{name: "Secret no longer readable: b keeps its session",
			breakIt: func(e *degradeEnv) { e.secretErr = forbidden },
			wantB:   "old", wantBRoutes: 1, wantRules: 2,
			problems: map[string]string{"a": "", "b": "may not read it"}},
		{name: "b's new configuration rejected by the back end: kept, not retried",
			breakIt: func(e *degradeEnv) {
				e.secrets["pw-b/password"] = "new"
				e.bgp.setErr["b"] = fmt.Errorf("%w: eBGP multihop on an iBGP session", bgp.ErrInvalid)
			},
			wantB: "old", wantBRoutes: 2, wantRules: 2,
			problems: map[string]string{"a": "", "b": "multihop"}},
		{name: "b fails to apply: kept, retried",
			breakIt: func(e *degradeEnv) {
				e.secrets["pw-b/password"] = "new"
				e.bgp.setErr["b"] = errors.New("GoBGP: start failed")
			},
			wantErr: true, wantB: "old", wantBRoutes: 2, wantRules: 2,
			problems: map[string]string{"a": "", "b": "start failed"}},
		{name: "one family of b's routes fails: reported on b alone",
			breakIt: func(e *degradeEnv) { e.bgp.advErr["b"] = errors.New("announce failed") },
			wantErr: true, wantB: "old", wantBRoutes: 1, wantRules: 2,
			problems: map[string]string{"a": "", "b": "ipv6-unicast: announce failed"}},
		{name: "forwarding fails: the node withdraws what it cannot forward, the peers stay configured",
			breakIt: func(e *degradeEnv) { e.fwd.err = errors.New("nft: netlink error") },
			wantErr: true, wantB: "old", wantBRoutes: 0, wantRules: 1, withdrawn: true,
			problems: map[string]string{"a": "", "b": ""}},
	}
	web, api := netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("198.51.100.6")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newDegradeEnv(t)
			if err := e.sync(t); err != nil {
				t.Fatalf("first sync: %v", err)
			}
			if e.bgp.peers["b"].Password != "old" || len(e.bgp.routes["b"]) != 1 {
				t.Fatalf("first sync: b = %+v with routes %v", e.bgp.peers["b"], e.bgp.routes["b"])
			}
			tc.breakIt(e)
			e.add("services", lbService("api", []string{"198.51.100.6"}, func(s *corev1.Service) {
				s.CreationTimestamp = metav1.NewTime(time.Unix(1, 0))
			}))
			err := e.sync(t)
			if (err != nil) != tc.wantErr {
				t.Errorf("sync error %v, want an error: %v", err, tc.wantErr)
			}
			// a, layer 2 and (unless broken) forwarding serve the new
			// Service; without forwarding, nothing is announced.
			if got := e.bgp.routes["a"]; len(got) != 2 && !tc.withdrawn || len(got) != 0 && tc.withdrawn {
				t.Errorf("routes to a: %v, want both Services' unless withdrawn (%v)", got, tc.withdrawn)
			}
			if _, ok := e.resp.addrs[api]; ok == tc.withdrawn {
				t.Errorf("layer 2 answers for %v, want %v and %v unless withdrawn (%v)", e.resp.addrs, web, api, tc.withdrawn)
			}
			if len(e.fwd.rules) != tc.wantRules {
				t.Errorf("forwarding rules %v, want %d", e.fwd.rules, tc.wantRules)
			}
			// b keeps its last good configuration.
			if b, ok := e.bgp.peers["b"]; !ok || b.Password != tc.wantB {
				t.Errorf("peer b = %+v (configured: %v), want password %q", b, ok, tc.wantB)
			}
			if got := e.bgp.routes["b"]; len(got) != tc.wantBRoutes {
				t.Errorf("routes to b: %v, want %d", got, tc.wantBRoutes)
			}
			for name, want := range tc.problems {
				got := e.s.peerConfigs[name]
				if (want == "") != (got.problem == "") || !strings.Contains(got.problem, want) {
					t.Errorf("peer %s: problem %q, want one containing %q", name, got.problem, want)
				}
				if ev := e.problems["BerthBGPPeer/"+name]; want != "" && !strings.Contains(ev, want) {
					t.Errorf("peer %s: Event %q, want one containing %q", name, ev, want)
				}
			}
			if !slices.Contains(e.s.LastPlan().L2Owned, api) {
				t.Errorf("plan's layer-2 addresses %v lack %v", e.s.LastPlan().L2Owned, api)
			}
		})
	}
}
