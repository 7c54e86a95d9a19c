package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
)

// Targets of the issue: a route reaches the router, and leaves it, within
// 1 s. The tests fail only above failAfter, to stay robust on a loaded CI
// machine, and log the measured figure.
const (
	routeTarget = time.Second
	failAfter   = 3 * time.Second
	// settle bounds everything else: sessions coming up, and so on.
	settle = 15 * time.Second
)

// TestSpeakerBGP runs three speakers against an eBGP FRR router with ECMP
// and an iBGP one, and checks what the routers learn as Services, endpoints,
// nodes and advertisements change.
func TestSpeakerBGP(t *testing.T) {
	sl := newSpeakerLab(t, 3)
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8})
	// iBGP, for local preference: the router is in the nodes' AS.
	r2 := frr.Start(t, sl.lab, "r2", frr.Config{ASN: nodeASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:5100::/112"}})
	sl.e.pool(t, "agg", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"203.0.113.0/24"}, AutoAssign: ptr.To(false)})
	sl.bgpPeer("r1-v4", r1.Host.IPv4, routerASN, nodeASN)
	sl.bgpPeer("r1-v6", r1.Host.IPv6, routerASN, nodeASN)
	sl.bgpPeer("r2-v4", r2.Host.IPv4, nodeASN, nodeASN)
	sl.advertise("main", v1alpha1.BerthBGPAdvertisementSpec{
		AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"main"}},
		Communities:           []string{"64513:100"},
		LargeCommunities:      []string{"64513:1:2"},
	})
	sl.advertise("main-lp", v1alpha1.BerthBGPAdvertisementSpec{
		AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"main"}},
		Peers:                 []string{"r2-v4"},
		LocalPreference:       ptr.To[int64](250),
	})
	sl.advertise("agg", v1alpha1.BerthBGPAdvertisementSpec{
		AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"agg"}},
		Peers:                 []string{"r1-v4"},
		AggregationLength:     ptr.To[int32](24),
	})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	waitSessions(t, r1, sl.addrs(false), sl.addrs(true))
	waitSessions(t, r2, sl.addrs(false))
	all4, all6 := sl.addrs(false), sl.addrs(true)

	var web4, web6 netip.Addr
	t.Run("new Service reaches the router with ECMP next hops", func(t *testing.T) {
		created := time.Now()
		sl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
		got := sl.e.waitService(t, "demo", "web", "two addresses", func(s *corev1.Service) bool { return len(addrs(s)) == 2 })
		allocated := time.Since(created)
		web4, web6 = split(addrs(got))
		d4 := waitNextHops(t, r1.Host, hostRoute(web4), all4, settle)
		d6 := waitNextHops(t, r1.Host, hostRoute(web6), all6, settle)
		t.Logf("MEASURED: Service address (seen %v after create, polling every 25ms) to all 3 next hops in r1's kernel: IPv4 %s after %v more, IPv6 %s after %v more; create to both routes %v (target %v)",
			allocated, web4, d4, web6, d6, time.Since(created), routeTarget)
		if d := max(d4, d6); d > failAfter {
			t.Errorf("routes took %v to arrive; target %v", d, routeTarget)
		}
		checkBGPNextHops(t, r1, hostRoute(web4), all4)
		checkBGPNextHops(t, r1, hostRoute(web6), all6)
	})
	if web4 == (netip.Addr{}) {
		t.FailNow()
	}

	t.Run("each node writes its session into its BerthNodeStatus", func(t *testing.T) {
		poll(t, settle, "every node's status shows r1-v4 Established with prefixes sent", func() error {
			for _, n := range sl.nodes {
				x, err := nodeSession(t, sl, n.name, "r1-v4")
				if err != nil {
					return err
				}
				if x.State != "Established" || x.PrefixesSent < 1 || x.EstablishedSince == nil {
					return fmt.Errorf("node %s: %+v", n.name, x)
				}
			}
			return nil
		})
		poll(t, settle, "the controller counts r1-v4's sessions into its status", func() error {
			p, err := sl.e.berth.BerthV1alpha1().BerthBGPPeers().Get(t.Context(), "r1-v4", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if n := int32(len(sl.nodes)); p.Status.Sessions != n || p.Status.SessionsEstablished != n {
				return fmt.Errorf("status %+v, want %d of %d sessions up", p.Status, n, n)
			}
			return nil
		})
	})

	t.Run("externalTrafficPolicy Local announces from nodes with ready endpoints", func(t *testing.T) {
		n1, n2, n3 := sl.nodes[0], sl.nodes[1], sl.nodes[2]
		sl.endpoints("demo", "local", map[*labNode]bool{n1: true, n2: false})
		sl.e.service(t, "demo", "local", func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		local4, _ := split(sl.e.waitAllocated(t, "demo", "local", 1))
		waitNextHops(t, r1.Host, hostRoute(local4), sl.addrs(false, n1), settle)
		sl.endpoints("demo", "local", map[*labNode]bool{n1: true, n2: true, n3: false})
		d := waitNextHops(t, r1.Host, hostRoute(local4), sl.addrs(false, n1, n2), settle)
		t.Logf("endpoint on node2 became ready: its next hop arrived after %v", d)
		sl.endpoints("demo", "local", map[*labNode]bool{n2: true})
		d = waitNextHops(t, r1.Host, hostRoute(local4), sl.addrs(false, n2), settle)
		t.Logf("endpoint on node1 went away: its next hop left after %v", d)
		checkBGPNextHops(t, r1, hostRoute(local4), sl.addrs(false, n2))
	})

	t.Run("communities, local preference and aggregation arrive as configured", func(t *testing.T) {
		paths := r1.Paths(t, hostRoute(web4))
		if len(paths) == 0 {
			t.Fatalf("r1 has no path for %s", web4)
		}
		for _, p := range paths {
			if p.Community == nil || p.Community.String != "64513:100" {
				t.Errorf("r1 path via %s: community %+v, want 64513:100", p.NextHop(), p.Community)
			}
			if p.LargeCommunity == nil || p.LargeCommunity.String != "64513:1:2" {
				t.Errorf("r1 path via %s: large community %+v, want 64513:1:2", p.NextHop(), p.LargeCommunity)
			}
		}
		poll(t, settle, "r2 learns "+web4.String()+" with local preference 250 from every node", func() error {
			paths := r2.Paths(t, hostRoute(web4))
			var hops []string
			for _, p := range paths {
				if p.LocPrf == nil || *p.LocPrf != 250 {
					return fmt.Errorf("path via %s: local preference %v", p.NextHop(), p.LocPrf)
				}
				hops = append(hops, p.NextHop())
			}
			if len(hops) != len(sl.nodes) {
				return fmt.Errorf("paths via %v", hops)
			}
			return nil
		})
		sl.e.service(t, "demo", "agg", withAnnotation(v1alpha1.AnnotationPool, "agg"))
		agg4, _ := split(sl.e.waitAllocated(t, "demo", "agg", 1))
		aggregate := netip.MustParsePrefix("203.0.113.0/24")
		waitNextHops(t, r1.Host, aggregate, all4, settle)
		if hops := frr.KernelNextHops(t, r1.Host, hostRoute(agg4)); len(hops) != 0 {
			t.Errorf("r1 has a host route for aggregated %s via %v", agg4, hops)
		}
	})

	t.Run("cordon withdraws the node's next hop and uncordon restores it", func(t *testing.T) {
		n3 := sl.nodes[2]
		sl.setUnschedulable(n3, true)
		d4 := waitNextHops(t, r1.Host, hostRoute(web4), sl.addrs(false, sl.nodes[:2]...), settle)
		d6 := waitNextHops(t, r1.Host, hostRoute(web6), sl.addrs(true, sl.nodes[:2]...), settle)
		t.Logf("cordon: next hop of %s gone after %v (IPv4), %v (IPv6)", n3.name, d4, d6)
		if st, _ := r1.NeighborState(t, n3.host.IPv4); st != "Established" {
			t.Errorf("cordoned node's session: %s, want it kept Established", st)
		}
		sl.setUnschedulable(n3, false)
		d4 = waitNextHops(t, r1.Host, hostRoute(web4), all4, settle)
		d6 = waitNextHops(t, r1.Host, hostRoute(web6), all6, settle)
		t.Logf("uncordon: next hop of %s back after %v (IPv4), %v (IPv6)", n3.name, d4, d6)
	})

	t.Run("an invalid advertisement leaves sessions and routes untouched", func(t *testing.T) {
		before := establishedCounts(t, r1, sl)
		// Valid for the schema; but /16 is wider than the pool's /24.
		sl.advertise("too-wide", v1alpha1.BerthBGPAdvertisementSpec{
			AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"agg"}},
			AggregationLength:     ptr.To[int32](16),
		})
		msgs := sl.e.events(t, metav1.NamespaceDefault, "too-wide", "SpeakerConfigProblem")
		if len(msgs) == 0 {
			t.Fatalf("no SpeakerConfigProblem Event for BerthBGPAdvertisement too-wide")
		}
		t.Logf("Event: %s", msgs[0])
		if hops := frr.KernelNextHops(t, r1.Host, netip.MustParsePrefix("203.0.0.0/16")); len(hops) != 0 {
			t.Errorf("r1 has the invalid aggregate 203.0.0.0/16 via %v", hops)
		}
		waitNextHops(t, r1.Host, hostRoute(web4), all4, time.Second)
		waitNextHops(t, r1.Host, hostRoute(web6), all6, time.Second)
		waitNextHops(t, r1.Host, netip.MustParsePrefix("203.0.113.0/24"), all4, time.Second)
		if after := establishedCounts(t, r1, sl); !slices.Equal(before, after) {
			t.Errorf("sessions re-established: counts %v, then %v", before, after)
		}
	})

	t.Run("deleting the Service withdraws its routes", func(t *testing.T) {
		if err := sl.e.kube.CoreV1().Services("demo").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		d4 := waitNextHops(t, r1.Host, hostRoute(web4), nil, settle)
		d6 := waitNextHops(t, r1.Host, hostRoute(web6), nil, settle)
		t.Logf("MEASURED: Service deleted to routes gone from r1's kernel: IPv4 after %v, IPv6 after %v (target %v)", d4, d6, routeTarget)
		if d := max(d4, d6); d > failAfter {
			t.Errorf("withdrawal took %v; target %v", d, routeTarget)
		}
		if p := r1.Paths(t, hostRoute(web4)); len(p) != 0 {
			t.Errorf("r1 still has %d BGP paths for %s", len(p), web4)
		}
	})
}

// waitSessions waits until router has every session with the given
// neighbors Established.
func waitSessions(t testing.TB, r *frr.Router, addrs ...[]netip.Addr) {
	t.Helper()
	d := poll(t, settle, r.Host.Name+": sessions Established", func() error {
		for _, as := range addrs {
			for _, a := range as {
				if st, _ := r.NeighborState(t, a); st != "Established" {
					return fmt.Errorf("neighbor %s: %q", a, st)
				}
			}
		}
		return nil
	})
	t.Logf("%s: all sessions Established after %v", r.Host.Name, d)
}

// establishedCounts returns how often each node's IPv4 and IPv6 session
// with r came up.
func establishedCounts(t testing.TB, r *frr.Router, sl *speakerLab) []int {
	t.Helper()
	var out []int
	for _, n := range sl.nodes {
		for _, a := range []netip.Addr{n.host.IPv4, n.host.IPv6} {
			_, c := r.NeighborState(t, a)
			out = append(out, c)
		}
	}
	return out
}

// checkBGPNextHops checks r's BGP paths for pfx: one valid multipath path
// per next hop in want.
func checkBGPNextHops(t testing.TB, r *frr.Router, pfx netip.Prefix, want []netip.Addr) {
	t.Helper()
	var got []netip.Addr
	for _, p := range r.Paths(t, pfx) {
		if !p.Valid {
			continue
		}
		a, err := netip.ParseAddr(p.NextHop())
		if err != nil {
			t.Errorf("path %+v: %v", p, err)
			continue
		}
		got = append(got, a)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("%s: BGP next hops %v, want %v", pfx, got, want)
	}
}

// TestSpeakerBGPSessions checks what the router sees when speakers die, hang
// and restart: a killed speaker's next hop goes at once, a stopped one's
// when the hold timer (3 s) expires, and with graceful restart a restarted
// speaker's routes stay throughout.
func TestSpeakerBGPSessions(t *testing.T) {
	sl := newSpeakerLab(t, 3)
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8, GracefulRestart: true})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}})
	sl.bgpPeer("r1", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.HoldTimeSeconds, s.KeepaliveTimeSeconds = ptr.To[int32](3), ptr.To[int32](1)
	})
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	waitSessions(t, r1, sl.addrs(false))
	sl.e.service(t, "demo", "web")
	web, _ := split(sl.e.waitAllocated(t, "demo", "web", 1))
	pfx := hostRoute(web)
	all := sl.addrs(false)
	waitNextHops(t, r1.Host, pfx, all, settle)
	n1, n2, n3 := sl.nodes[0], sl.nodes[1], sl.nodes[2]

	t.Run("SIGKILL removes the node's next hop", func(t *testing.T) {
		n3.speaker.stop(syscall.SIGKILL)
		d := waitNextHops(t, r1.Host, pfx, sl.addrs(false, n1, n2), settle)
		t.Logf("MEASURED: speaker on %s killed: next hop gone after %v", n3.name, d)
		// BGP only, as a BGP-only installation runs it.
		n3.speaker = startSpeaker(t, sl.t, sl.e, n3, "--l2=false")
		// A rolling update moves on when /readyz says so: only once the
		// restarted speaker's session is up again.
		notReady := n3.speaker.waitReadyz(t)
		if !strings.Contains(notReady, "r1") && !strings.Contains(notReady, "no sync") {
			t.Errorf("before it was ready, /readyz said %q; want it to name the session to r1 or the first sync", notReady)
		}
		if st, _ := r1.NeighborState(t, n3.host.IPv4); st != "Established" {
			t.Errorf("/readyz said ready while r1's session with %s was %q", n3.name, st)
		}
		d = waitNextHops(t, r1.Host, pfx, all, settle)
		t.Logf("speaker on %s started again: next hop back after %v", n3.name, d)
	})

	t.Run("SIGSTOP removes the node's next hop when the hold timer expires", func(t *testing.T) {
		n2.speaker.signal(syscall.SIGSTOP)
		stopped := true
		defer func() {
			if stopped {
				n2.speaker.signal(syscall.SIGCONT)
			}
		}()
		d := waitNextHops(t, r1.Host, pfx, sl.addrs(false, n1, n3), settle)
		t.Logf("MEASURED: speaker on %s stopped: next hop gone after %v (hold time 3s)", n2.name, d)
		if d < 1500*time.Millisecond {
			t.Errorf("next hop gone after %v: before the hold timer could expire", d)
		}
		n2.speaker.signal(syscall.SIGCONT)
		stopped = false
		d = waitNextHops(t, r1.Host, pfx, all, settle)
		t.Logf("speaker on %s continued: next hop back after %v", n2.name, d)
	})

	t.Run("with graceful restart a restarted speaker's route stays", func(t *testing.T) {
		before := establishedCounts(t, r1, sl)
		sl.updatePeer("r1", func(s *v1alpha1.BerthBGPPeerSpec) {
			s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTimeSeconds: ptr.To[int32](30)}
		})
		// The changed peer resets every session; wait for all to be back
		// with the capability negotiated.
		poll(t, settle, "sessions re-established with graceful restart", func() error {
			after := establishedCounts(t, r1, sl)
			for i := 0; i < len(after); i += 2 { // IPv4 sessions only
				if after[i] <= before[i] {
					return fmt.Errorf("established counts %v, before %v", after, before)
				}
			}
			for _, a := range all {
				if st, _ := r1.NeighborState(t, a); st != "Established" {
					return fmt.Errorf("neighbor %s: %s", a, st)
				}
			}
			return nil
		})
		waitNextHops(t, r1.Host, pfx, all, settle)
		n1.speaker.stop(syscall.SIGTERM)
		sawStale := false
		restarted := false
		start := time.Now()
		poll(t, 30*time.Second, "restarted speaker's route fresh again", func() error {
			var nh1 *frr.Path
			for _, p := range r1.Paths(t, pfx) {
				if p.NextHop() == n1.host.IPv4.String() {
					nh1 = &p
				}
			}
			if nh1 == nil {
				t.Fatalf("%v after SIGTERM: r1 lost %s's path during graceful restart", time.Since(start), n1.name)
			}
			if hops := frr.KernelNextHops(t, r1.Host, pfx); !slices.Equal(hops, all) {
				t.Fatalf("%v after SIGTERM: r1's kernel route via %v during graceful restart, want %v", time.Since(start), hops, all)
			}
			if nh1.Stale {
				sawStale = true
			}
			if !restarted && sawStale {
				n1.speaker = startSpeaker(t, sl.t, sl.e, n1)
				restarted = true
			}
			if !restarted || nh1.Stale {
				return errors.New("path stale")
			}
			return nil
		})
		t.Logf("graceful restart: %s's path kept (stale: %v) and fresh again after %v", n1.name, sawStale, time.Since(start))
	})
}

// TestSpeakerBGPPassword checks TCP MD5: the session with the right
// password, read from a Secret in Berth's namespace, comes up; the one with
// a wrong password does not, until the BerthBGPPeer points at the right Secret.
func TestSpeakerBGPPassword(t *testing.T) {
	sl := newSpeakerLab(t, 2)
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, "s3cret")})
	n1, n2 := sl.nodes[0], sl.nodes[1]
	// The speaker's Role names the Secrets it may read; an operator adds
	// those that BerthBGPPeers name.
	sl.allowSecrets("bgp-good", "bgp-bad", "bgp-missing")
	sl.secret("bgp-good", map[string]string{"password": "s3cret"})
	sl.secret("bgp-bad", map[string]string{"pw": "wrong"})
	onNode := func(n *labNode) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{nodeLabel: n.name}}
	}
	sl.bgpPeer("good", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-good"}
		s.NodeSelector = onNode(n1)
		// A short hold time, so that watching the session for longer than
		// it (below) is a fair test.
		s.HoldTimeSeconds, s.KeepaliveTimeSeconds = ptr.To[int32](3), ptr.To[int32](1)
	})
	sl.bgpPeer("bad", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-bad", Key: "pw"}
		s.NodeSelector = onNode(n2)
	})
	sl.startSpeakers()
	waitSessions(t, r1, []netip.Addr{n1.host.IPv4})
	poll(t, settle, "node1's berth_speaker_bgp_session_up{peer=good} is 1", func() error {
		if v := n1.speaker.metric(t, "berth_speaker_bgp_session_up", `peer="good"`); v != "1" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
	// A missing password Secret keeps the current session (docs/bgp.md):
	// delete the Secret of node1's Established session. Once node1 says
	// in the peer's status that the Secret is missing (so it has read the
	// Secret again after its cache expired), the session must stay
	// Established, without a flap, for longer than the hold time (3 s)
	// and the Secret cache (10 s) together.
	established := establishedCounts(t, r1, sl)
	if err := sl.e.kube.CoreV1().Secrets(speakerNS).Delete(t.Context(), "bgp-good", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d := poll(t, 2*settle, "node1's entry of peer good names the missing Secret", func() error {
		return peerEntryHas(t, sl, "good", n1.name, metav1.ConditionFalse, `password Secret "bgp-good"`)
	})
	t.Logf("node1 reported the missing Secret %v after its deletion", d)
	keepFor := 3*time.Second + 10*time.Second + 2*time.Second
	for end := time.Now().Add(keepFor); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if st, _ := r1.NeighborState(t, n1.host.IPv4); st != "Established" {
			t.Fatalf("the session of node1 went %q after its password Secret was deleted", st)
		}
	}
	if now := establishedCounts(t, r1, sl); !slices.Equal(now, established) {
		t.Errorf("r1's established counts went from %v to %v: the session flapped after its Secret was deleted", established, now)
	}
	if v := n1.speaker.metric(t, "berth_speaker_bgp_session_up", `peer="good"`); v != "1" {
		t.Errorf("node1's berth_speaker_bgp_session_up{peer=good} = %q after %v without its Secret, want 1", v, keepFor)
	}
	checkPeerEvent(t, sl, "good", `password Secret "bgp-good"`)
	sl.secret("bgp-good", map[string]string{"password": "s3cret"})
	poll(t, 2*settle, "node1's entry of peer good is Configured again", func() error {
		return peerEntryHas(t, sl, "good", n1.name, metav1.ConditionTrue, "")
	})

	// Give the wrong password a fair chance: the right one took well under
	// this, and both dial every second or so.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := r1.NeighborState(t, n2.host.IPv4); st == "Established" {
			t.Fatalf("session with node2 Established with a wrong password")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := n2.speaker.metric(t, "berth_speaker_bgp_session_up", `peer="bad"`); v != "0" {
		t.Errorf("node2's berth_speaker_bgp_session_up{peer=bad} = %q, want 0", v)
	}
	// A password Secret that does not exist leaves the (down) session as
	// it is and says why in the peer's status.
	sl.updatePeer("bad", func(s *v1alpha1.BerthBGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-missing"} })
	poll(t, settle, "node2's status entry of peer bad names the missing Secret", func() error {
		n, err := nodeSession(t, sl, n2.name, "bad")
		if err != nil {
			return err
		}
		if strings.Contains(n.LastError, `password Secret "bgp-missing"`) {
			return nil
		}
		return fmt.Errorf("node2's session %+v", n)
	})
	if ev := sl.e.eventsWithin(t, metav1.NamespaceDefault, "bad", "SpeakerConfigProblem", settle); len(ev) == 0 {
		t.Errorf("no SpeakerConfigProblem Event on BerthBGPPeer bad")
	}
	// A Secret that exists but that the speaker's Role does not name is
	// the same kind of problem, of this peer only: the status says so,
	// and the other peer's session is still configured.
	sl.secret("bgp-unlisted", map[string]string{"password": "s3cret"})
	for _, n := range sl.nodes {
		n.speaker.expectRefusals() // every speaker reads every peer's Secret
	}
	sl.updatePeer("bad", func(s *v1alpha1.BerthBGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-unlisted"} })
	poll(t, settle, "node2's status entry of peer bad says it may not read the Secret", func() error {
		n, err := nodeSession(t, sl, n2.name, "bad")
		if err != nil {
			return err
		}
		if strings.Contains(n.LastError, `password Secret "bgp-unlisted"`) && strings.Contains(n.LastError, "may not read") {
			return nil
		}
		return fmt.Errorf("node2's session %+v", n)
	})
	if v := n1.speaker.metric(t, "berth_speaker_bgp_session_up", `peer="good"`); v != "1" {
		t.Errorf("node1's berth_speaker_bgp_session_up{peer=good} = %q, want 1", v)
	}
	sl.updatePeer("bad", func(s *v1alpha1.BerthBGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretKeyRef{Name: "bgp-good"} })
	waitSessions(t, r1, []netip.Addr{n2.host.IPv4})
	poll(t, settle, "node2's berth_speaker_bgp_session_up{peer=bad} is 1", func() error {
		if v := n2.speaker.metric(t, "berth_speaker_bgp_session_up", `peer="bad"`); v != "1" {
			return fmt.Errorf("value %q", v)
		}
		return nil
	})
}

// TestSpeakerBGPBIRD runs scenario one against BIRD 2 instead of FRR: a new
// dual-stack Service's routes reach BIRD, and its kernel, from both nodes.
func TestSpeakerBGPBIRD(t *testing.T) {
	frr.RequireBIRD(t)
	sl := newSpeakerLab(t, 2)
	b := frr.StartBIRD(t, sl.lab, "bird", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8})
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:5100::/112"}})
	sl.bgpPeer("bird-v4", b.Host.IPv4, routerASN, nodeASN)
	sl.bgpPeer("bird-v6", b.Host.IPv6, routerASN, nodeASN)
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers()
	sl.e.namespace(t, "demo", nil)
	d := poll(t, settle, "BIRD's BGP sessions Established", func() error {
		out := b.Birdc(t, "show", "protocols")
		if n := strings.Count(out, "Established"); n != 2*len(sl.nodes) {
			return fmt.Errorf("%d Established:\n%s", n, out)
		}
		return nil
	})
	t.Logf("BIRD: all sessions Established after %v", d)
	sl.e.service(t, "demo", "web", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	got := sl.e.waitService(t, "demo", "web", "two addresses", func(s *corev1.Service) bool { return len(addrs(s)) == 2 })
	web4, web6 := split(addrs(got))
	d4 := waitNextHops(t, b.Host, hostRoute(web4), sl.addrs(false), settle)
	d6 := waitNextHops(t, b.Host, hostRoute(web6), sl.addrs(true), settle)
	t.Logf("MEASURED: Service address to both next hops in BIRD's kernel: IPv4 after %v, IPv6 after %v (target %v)", d4, d6, routeTarget)
	if d := max(d4, d6); d > failAfter {
		t.Errorf("routes took %v to arrive; target %v", d, routeTarget)
	}
	out := b.Birdc(t, "show", "route", "for", web4.String(), "all")
	for _, n := range sl.nodes {
		if !strings.Contains(out, n.host.IPv4.String()) {
			t.Errorf("birdc show route for %s: no path via %s:\n%s", web4, n.host.IPv4, out)
		}
	}
	if err := sl.e.kube.CoreV1().Services("demo").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	d4 = waitNextHops(t, b.Host, hostRoute(web4), nil, settle)
	d6 = waitNextHops(t, b.Host, hostRoute(web6), nil, settle)
	t.Logf("MEASURED: Service deleted to routes gone from BIRD's kernel: IPv4 after %v, IPv6 after %v", d4, d6)
}
