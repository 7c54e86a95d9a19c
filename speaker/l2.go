package speaker

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/l2"
)

// DefaultHandover is how long a node keeps answering for an address after a
// planned move away from it (cordon, exclusion, not Ready), so that the new
// owner announces before the old one falls silent.
const DefaultHandover = time.Second

// membership is what the speaker needs of l2.Members.
type membership interface {
	Members() []string
	Known() []string
	// Lease returns the lease's generation and whether this node is
	// quorate (l2.Members.Lease).
	Lease() (generation uint64, quorate bool)
	Forget(names ...string)
}

// l2Responder is what the speaker needs of l2.Responder.
type l2Responder interface {
	// Set answers for exactly these addresses, each on the interfaces
	// matching its names or patterns (nil: every interface), and
	// announces those that are not quiet.
	Set(addrs map[netip.Addr]l2.Ownership)
}

// ownerEvents tells users which node answers for a Service's address.
type ownerEvents interface {
	owner(ctx context.Context, service, message string)
}

// forwardingEvents tells users that a node withdrew one of their
// Service's addresses because its forwarding failed, or announces it again.
type forwardingEvents interface {
	forwarding(ctx context.Context, service string, warning bool, message string)
}

// l2State is the layer-2 side of a speaker once its membership runs. Only
// the sync loop touches owned and handover.
type l2State struct {
	members  membership
	resp     l2Responder
	handover time.Duration
	// owned is what resp was last told to answer for.
	owned map[netip.Addr]bool
	// until holds the addresses kept after a planned move, with the time
	// they are dropped.
	until map[netip.Addr]time.Time
	// staged holds gained addresses kept back for one sync; see stage.
	staged map[netip.Addr]bool
	// applied is the lease generation owned was computed under; see gate.
	applied atomic.Uint64
	// drainFor is how long a planned move's new owner drains (0: never),
	// drains what it drains now, and owners each address's owner by the
	// previous plan; see nextDrains.
	drainFor time.Duration
	drains   map[netip.Addr]drain
	owners   map[netip.Addr]string
}

func newL2State(m membership, r l2Responder, handover time.Duration) *l2State {
	return &l2State{
		members: m, resp: r, handover: handover,
		owned: map[netip.Addr]bool{}, until: map[netip.Addr]time.Time{}, staged: map[netip.Addr]bool{},
	}
}

// stage keeps gained addresses out of want for one sync, and reports
// whether it kept any: the caller syncs again at once. The sync that
// stages an address installs its forwarding rules (the plan forwards what
// the node owns), so that by the time the node answers for it, the
// client's first packets are forwarded rather than dropped (a lost SYN
// costs the client a 1 s retransmission). Without forwarding there is
// nothing to wait for.
func (st *l2State) stage(want map[netip.Addr]bool) bool {
	held := false
	for a := range st.staged {
		if !want[a] {
			delete(st.staged, a)
		}
	}
	for a := range want {
		switch {
		case st.owned[a]:
		case st.staged[a]:
			delete(st.staged, a)
		default:
			st.staged[a] = true
			delete(want, a)
			held = true
		}
	}
	return held
}

// view reads the membership for a snapshot.
func (st *l2State) view() L2View {
	gen, ok := st.members.Lease()
	return L2View{Members: st.members.Members(), Quorate: ok, Lease: gen}
}

// gate is the Responder's Gate: a packet leaves only while this node holds
// the lease, and the same lease as when the answer set was computed. The
// first makes a node that lost its lease silent at that instant, even if
// its sync loop is busy elsewhere; the second keeps it from answering, after
// a partition heals, for what it owned before it.
func (st *l2State) gate() bool {
	gen, ok := st.members.Lease()
	return ok && gen == st.applied.Load()
}

// answerSet decides what to answer for, given the plan: what the node owns,
// plus, for a short handover, addresses it lost because it itself became
// ineligible while another node took them over. Losses caused by the
// membership (another node's view now wins, or quorum is lost) and
// vanished addresses are dropped at once. It returns the set, and when the
// next handover ends (zero if none is pending).
func (st *l2State) answerSet(self string, p *Plan, now time.Time) (map[netip.Addr]bool, time.Duration) {
	want := map[netip.Addr]bool{}
	for _, a := range p.L2Owned {
		want[a] = true
	}
	byAddr := map[netip.Addr]*L2Address{}
	for i := range p.L2 {
		byAddr[p.L2[i].Addr] = &p.L2[i]
	}
	var next time.Duration
	for a := range st.owned {
		if want[a] {
			delete(st.until, a)
			continue
		}
		e := byAddr[a]
		planned := p.L2Quorate && e != nil && e.Owner != "" && e.Owner != self && !slices.Contains(e.Eligible, self)
		if !planned {
			delete(st.until, a)
			continue
		}
		until, ok := st.until[a]
		if !ok {
			until = now.Add(st.handover)
			st.until[a] = until
		}
		if left := until.Sub(now); left > 0 {
			want[a] = true
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		delete(st.until, a)
	}
	return want, next
}

// applyL2 points the Responder at the addresses this node answers for,
// reports gains as Events and metrics, and forgets deleted nodes. It
// returns the addresses answered for, handovers included, so that their
// traffic keeps being forwarded until the handover ends. The decisions are
// answerSet's, nextDrains' and decideL2's; this carries them out.
func (s *Speaker) applyL2(ctx context.Context, st *l2State, snap Snapshot, p *Plan) map[netip.Addr]bool {
	log := logr.FromContextOrDiscard(ctx)
	want, next := st.answerSet(s.node, p, time.Now())
	if next > 0 {
		s.queue.AddAfter(syncKey, next+10*time.Millisecond)
	}
	if s.fwd != nil && st.stage(want) {
		s.queue.Add(syncKey)
	}
	if s.fwd != nil {
		s.applyDrains(log, st, snap, p)
	}
	st.owners = owners(p)
	step := decideL2(want, st.owned, p, st.applied.Load(), st.members.Known(), snap)
	// Set drops losses before it announces gains. A new lease generation
	// opens the gate only once what was owned under the old one has been
	// narrowed to what this view still owns, and before the gains are
	// announced, so that their first announcement goes out.
	if step.keep != nil {
		st.resp.Set(step.keep)
		st.applied.Store(snap.L2.Lease)
	}
	st.resp.Set(step.owns)

	for _, a := range step.lost {
		s.metrics.l2Changes.Inc()
		log.Info("Stopped answering on layer 2", "address", a)
	}
	for _, g := range step.gained {
		s.metrics.l2Changes.Inc()
		log.Info("Answering on layer 2", "address", g.addr, "service", g.service)
		if s.owners != nil && g.service != "" {
			proto := "ARP"
			if g.addr.Is6() {
				proto = "NDP"
			}
			s.owners.owner(ctx, g.service, fmt.Sprintf("node %s answers %s for %s", s.node, proto, g.addr))
		}
	}
	st.owned = want
	s.metrics.observeL2(len(p.L2Owned), len(snap.L2.Members), p.L2Quorate)
	if len(step.gone) > 0 {
		log.Info("Forgetting speakers whose Node was deleted", "nodes", step.gone)
		st.members.Forget(step.gone...)
	}
	return want
}

// applyDrains moves to the drains of this plan, computed with the plan's
// ownership so that a gained address drains from the sync that installs
// its forwarding rules, before this node answers for it.
func (s *Speaker) applyDrains(log logr.Logger, st *l2State, snap Snapshot, p *Plan) {
	drains, next := nextDrains(st.drains, st.owners, s.node, p, snap.L2.Members, snap.Nodes, time.Now(), st.drainFor)
	for a, d := range drains {
		if _, ok := st.drains[a]; !ok {
			log.Info("Draining connections to the previous owner", "address", a, "node", d.node, "via", d.via, "until", d.until)
		}
	}
	for a, d := range st.drains {
		if _, ok := drains[a]; !ok {
			log.Info("Stopped draining", "address", a, "node", d.node)
		}
	}
	st.drains = drains
	if next > 0 {
		s.queue.AddAfter(syncKey, next+10*time.Millisecond)
	}
}

// l2Options are what startL2 needs of Options.
type l2Options struct {
	port     int
	secret   string
	handover time.Duration
	drain    time.Duration
	// tie is the tie-breaker record; nil disables it.
	tie l2.TieStore
	// record is the membership record; nil: none. forgetAfter is how
	// long a Node must not have been Ready to leave the quorum (0: never).
	record      *leaseRecordStore
	forgetAfter time.Duration
	// voters lets the node take part in voter sets (with a record only).
	voters bool
}

// startL2 brings layer 2 up: it waits for the node's InternalIP and the
// membership key, starts the membership and the Responder, and then keeps
// them running until ctx ends. Until it succeeds the node answers for
// nothing; BGP and forwarding are unaffected.
func (s *Speaker) startL2(ctx context.Context, o l2Options, warn func(reason, msg string)) {
	log := logr.FromContextOrDiscard(ctx).WithName("l2")
	ctx = logr.NewContext(ctx, log)
	var (
		bind   netip.Addr
		keys   membershipKeys
		warned string
	)
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		var problem string
		node, err := s.listers.nodes.Get(s.node)
		switch {
		case err != nil:
			problem = fmt.Sprintf("layer 2 is off: cannot read node %s: %v", s.node, err)
		default:
			if bind = internalIP(node); !bind.IsValid() {
				problem = "layer 2 is off: the node has no InternalIP to run the speakers' membership on"
			}
		}
		if problem == "" {
			if keys, problem = s.memberlistKeys(ctx, o.secret); problem != "" {
				problem = "layer 2 is off: " + problem
			}
		}
		if problem != "" && problem != warned {
			log.Error(nil, problem)
			warn(ReasonL2Disabled, problem)
			warned = problem
		}
		return problem == "", nil
	})
	if err != nil {
		return
	}
	members, err := l2.NewMembers(ctx, l2.MembersConfig{
		NodeName: s.node, BindAddr: bind.String(), BindPort: o.port, AdvertiseAddr: bind.String(),
		SecretKey: keys.primary, OtherKeys: keys.others(), Peers: s.peerAddrs(bind, o.port, nil),
		WaitForRecord: o.record != nil, Voters: o.voters, WritesRecord: o.record != nil && o.forgetAfter > 0,
	})
	if err != nil {
		log.Error(err, "Layer 2 is off: starting the membership failed")
		warn(ReasonL2Disabled, "layer 2 is off: "+err.Error())
		return
	}
	s.metrics.l2Counts.watch(members)
	defer s.metrics.l2Counts.watch(nil)
	st := newL2State(members, nil, o.handover)
	st.drainFor = o.drain
	resp := l2.NewResponder(l2.ResponderConfig{Gate: st.gate})
	st.resp = resp
	go func() {
		if err := resp.Run(ctx); err != nil {
			log.Error(err, "Responder stopped")
		}
	}()
	s.mu.Lock()
	s.l2 = st
	s.mu.Unlock()
	log.Info("Layer 2 membership started", "bind", netip.AddrPortFrom(bind, uint16(o.port)))
	s.queue.Add(syncKey)
	go s.rejoin(ctx, members, bind, o.port)
	if o.tie != nil {
		go runTiebreak(ctx, members, o.tie, s.node)
	}
	if o.record != nil {
		go runRecord(ctx, members, o.record, s.node, s.goneNodes(o.forgetAfter), s.nodeNames, s.metrics.observeRecord)
	}
	quorate := false
	keyCheck := time.NewTicker(keyCheckInterval)
	defer keyCheck.Stop()
	for {
		select {
		case <-keyCheck.C:
			var problem string
			keys, problem = s.rotateKeys(ctx, o.secret, members, keys)
			if problem != "" && problem != warned { // one Event per problem
				warn(ReasonL2KeysNotApplied, problem)
			}
			warned = problem
		case <-members.Changes():
			// Members signals every change of the live set and of the
			// lease, including those that only time makes.
			if q := members.Quorate(); q != quorate {
				quorate = q
				log.Info("Membership quorum changed", "quorate", q, "members", members.Members())
			}
			s.queue.Add(syncKey)
		case <-ctx.Done():
			// Stop answering before telling the others, so that they
			// take over without overlap.
			resp.Set(nil)
			if err := members.Leave(500 * time.Millisecond); err != nil {
				log.Error(err, "Leave membership")
			}
			return
		}
	}
}

// rejoin meets the Nodes that are not members, every second: speakers that
// were down or partitioned off are declared dead, and memberlist alone
// would not contact them again.
func (s *Speaker) rejoin(ctx context.Context, members *l2.Members, bind netip.Addr, port int) {
	log := logr.FromContextOrDiscard(ctx)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		addrs := s.peerAddrs(bind, port, members.Members())
		if len(addrs) == 0 {
			return
		}
		if n, err := members.JoinAddrs(addrs); err != nil {
			log.V(4).Info("Joining missing speakers", "addrs", addrs, "err", err.Error())
		} else {
			log.V(2).Info("Joined speakers", "addrs", addrs, "answered", n)
		}
	}, time.Second)
}

// peerAddrs returns the membership addresses of the other Nodes, of bind's
// family, skipping those named in except.
func (s *Speaker) peerAddrs(bind netip.Addr, port int, except []string) []string {
	nodes, err := s.listers.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range nodes {
		if n.Name == s.node || slices.Contains(except, n.Name) {
			continue
		}
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err == nil && a.Type == corev1.NodeInternalIP && ip.Is4() == bind.Is4() {
				out = append(out, net.JoinHostPort(ip.String(), strconv.Itoa(port)))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// internalIP is the node's first IPv4 InternalIP, or its first InternalIP.
func internalIP(n *corev1.Node) netip.Addr {
	ips := internalIPs(n)
	if ip, ok := ips[true]; ok {
		return ip
	}
	return ips[false]
}

// internalIPs returns the node's first InternalIP of each family, keyed by
// "is IPv4".
func internalIPs(n *corev1.Node) map[bool]netip.Addr {
	out := map[bool]netip.Addr{}
	for _, a := range n.Status.Addresses {
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || a.Type != corev1.NodeInternalIP {
			continue
		}
		if _, seen := out[ip.Is4()]; !seen {
			out[ip.Is4()] = ip
		}
	}
	return out
}
