package speaker

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/go-logr/logr"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/bgp"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
)

// DefaultStatusInterval is the least time between two writes of a node's
// BerthNodeStatus: changes in between are coalesced into the next write,
// so that a churn of Services costs each node at most one write per
// interval.
const DefaultStatusInterval = 5 * time.Second

// nodeStatusWriter writes this node's BerthNodeStatus.
type nodeStatusWriter interface {
	// apply writes st as the node's status; nodeUID makes the Node its
	// owner, so that the garbage collector deletes it with the Node.
	apply(ctx context.Context, nodeUID types.UID, st *v1alpha1.BerthNodeStatusStatus) error
}

// sessionEvents tells users about BGP sessions going up and down.
type sessionEvents interface {
	session(ctx context.Context, peer string, up bool, message string)
}

// nodeStatusState is what reportStatus remembers between calls.
type nodeStatusState struct {
	writer nodeStatusWriter
	events sessionEvents
	// interval is the least time between two writes.
	interval  time.Duration
	written   *v1alpha1.BerthNodeStatusStatus
	lastWrite time.Time
	// sessions are the sessions seen last, by peer.
	sessions map[string]*v1alpha1.BerthBGPSession
}

// apiNodeStatus writes BerthNodeStatus by server-side apply, as the only
// writer of its node's object.
type apiNodeStatus struct {
	client versioned.Interface
	node   string
}

// fieldManager is the speakers' field manager for their BerthNodeStatus.
const fieldManager = "berth-speaker"

func (a *apiNodeStatus) apply(ctx context.Context, nodeUID types.UID, st *v1alpha1.BerthNodeStatusStatus) error {
	status := berthac.BerthNodeStatusStatus().
		WithEligible(st.Eligible).WithForwarding(st.Forwarding).
		WithSessionsEstablished(st.SessionsEstablished).WithSessionsTotal(st.SessionsTotal).
		WithBGPAddresses(st.BGPAddresses).WithL2Addresses(st.L2Addresses).WithWithheldAddresses(st.WithheldAddresses).
		WithBGP(st.BGP...).WithL2(st.L2...)
	if st.Reason != "" {
		status.WithReason(st.Reason)
	}
	for _, s := range st.Sessions {
		status.WithSessions(sessionApply(&s))
	}
	for _, w := range st.Withheld {
		status.WithWithheld(berthac.BerthWithheldAddress().WithAddress(w.Address).WithServices(w.Services...).WithReason(w.Reason))
	}
	obj := berthac.BerthNodeStatus(a.node).WithStatus(status).WithOwnerReferences(metav1ac.OwnerReference().
		WithAPIVersion("v1").WithKind("Node").WithName(a.node).WithUID(nodeUID))
	_, err := a.client.BerthV1alpha1().BerthNodeStatuses().Apply(ctx, obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply BerthNodeStatus %s: %w", a.node, err)
	}
	return nil
}

func sessionApply(s *v1alpha1.BerthBGPSession) *berthac.BerthBGPSessionApplyConfiguration {
	ac := berthac.BerthBGPSession().WithPeer(s.Peer).WithState(s.State).
		WithPrefixesSent(s.PrefixesSent).WithPrefixesReceived(s.PrefixesReceived)
	if s.EstablishedSince != nil {
		ac.WithEstablishedSince(*s.EstablishedSince)
	}
	if s.LastError != "" {
		ac.WithLastError(s.LastError)
	}
	for _, c := range s.Conditions {
		ac.WithConditions(metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).
			WithMessage(c.Message).WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(c.LastTransitionTime))
	}
	return ac
}

// reportStatus publishes the BGP sessions' state to metrics, Events on the
// BerthBGPPeers and, with what the node announces, its BerthNodeStatus.
func (s *Speaker) reportStatus(ctx context.Context) {
	var st []bgp.PeerStatus
	if s.bgp != nil {
		var err error
		if st, err = s.bgp.Status(ctx); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Read BGP status")
			return
		}
		s.metrics.observeBGP(st)
	}
	s.mu.Lock()
	configs, plan, announced, withheld, holders := s.peerConfigs, s.lastPlan, s.announced, s.withheld, s.withheldBy
	s.mu.Unlock()
	if plan == nil {
		return // no sync yet: nothing to tell
	}
	now := time.Now()
	sess := sessions(withConfigProblems(st, configs), configs, s.status.sessions, now)
	s.sessionChanges(ctx, sess)
	want := nodeStatus(plan, announced, withheld, holders, sess, s.fwd != nil)
	s.writeNodeStatus(ctx, want, now)
}

// sessionChanges records sess as the sessions seen last and reports each
// session that reached or left Established since, as an Event on its
// BerthBGPPeer.
func (s *Speaker) sessionChanges(ctx context.Context, sess []*v1alpha1.BerthBGPSession) {
	seen := make(map[string]*v1alpha1.BerthBGPSession, len(sess))
	for _, cur := range sess {
		seen[cur.Peer] = cur
		prev := s.status.sessions[cur.Peer]
		wasUp, up := prev != nil && prev.State == string(bgp.StateEstablished), cur.State == string(bgp.StateEstablished)
		if wasUp == up || s.status.events == nil {
			continue
		}
		msg := fmt.Sprintf("node %s: the session is %s", s.node, cur.State)
		if !up && cur.LastError != "" {
			msg += ": " + cur.LastError
		}
		logr.FromContextOrDiscard(ctx).Info("BGP session changed", "peer", cur.Peer, "state", cur.State, "lastError", cur.LastError)
		s.status.events.session(ctx, cur.Peer, up, msg)
	}
	s.status.sessions = seen
}

// writeNodeStatus writes want unless it is what was written last, at most
// once per interval: a change within the interval is written by a later
// call. A change of the withheld addresses is written at once: the other
// speakers move this node's layer-2 addresses by it.
func (s *Speaker) writeNodeStatus(ctx context.Context, want *v1alpha1.BerthNodeStatusStatus, now time.Time) {
	ns := &s.status
	if ns.writer == nil || apiequality.Semantic.DeepEqual(want, ns.written) {
		return
	}
	if now.Sub(ns.lastWrite) < ns.interval && ns.written != nil && slices.Equal(withheldAddrs(want), withheldAddrs(ns.written)) {
		return
	}
	node, err := s.listers.nodes.Get(s.node)
	if err != nil {
		return // without its Node, nothing would ever delete the object
	}
	if err := ns.writer.apply(ctx, node.UID, want); err != nil {
		logr.FromContextOrDiscard(ctx).Error(err, "Write the node's BerthNodeStatus")
		return
	}
	s.metrics.statusWrites.Inc()
	ns.written, ns.lastWrite = want, now
}

// nodeStatus is the node's BerthNodeStatus: plan is what it should
// announce, announced what it does announce, withheld what it does not
// because its forwarding failed (holders: the Services of each).
func nodeStatus(plan, announced *Plan, withheld map[netip.Addr]string, holders map[netip.Addr][]string, sess []*v1alpha1.BerthBGPSession, fwd bool) *v1alpha1.BerthNodeStatusStatus {
	st := &v1alpha1.BerthNodeStatusStatus{Eligible: plan.Eligible, Reason: plan.Why, Forwarding: fwd}
	for _, x := range sess {
		st.Sessions = append(st.Sessions, *x)
		if x.State == string(bgp.StateEstablished) {
			st.SessionsEstablished++
		}
	}
	st.SessionsTotal = int32(len(sess))
	var single []netip.Addr
	aggregates := map[netip.Prefix]bool{}
	for _, advs := range announced.Routes {
		for _, a := range advs {
			if a.Prefix.IsSingleIP() {
				single = append(single, a.Prefix.Addr())
			} else {
				aggregates[a.Prefix.Masked()] = true
			}
		}
	}
	slices.SortFunc(single, netip.Addr.Compare)
	single = slices.Compact(single)
	st.BGP = addrRanges(single)
	for _, p := range slices.SortedFunc(maps.Keys(aggregates), func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) }) {
		st.BGP = append(st.BGP, p.String())
	}
	st.BGPAddresses = int32(len(single) + len(aggregates))
	l2 := slices.Clone(announced.L2Owned)
	slices.SortFunc(l2, netip.Addr.Compare)
	for _, a := range l2 {
		st.L2 = append(st.L2, a.String())
	}
	st.L2Addresses = int32(len(l2))
	for _, a := range slices.SortedFunc(maps.Keys(withheld), netip.Addr.Compare) {
		st.Withheld = append(st.Withheld, v1alpha1.BerthWithheldAddress{Address: a.String(), Services: holders[a], Reason: withheld[a]})
	}
	st.WithheldAddresses = int32(len(withheld))
	return st
}

// addrRanges writes sorted addresses as single addresses and ranges
// "first-last" of consecutive ones.
func addrRanges(sorted []netip.Addr) []string {
	var out []string
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j].Next() == sorted[j+1] {
			j++
		}
		if i == j {
			out = append(out, sorted[i].String())
		} else {
			out = append(out, sorted[i].String()+"-"+sorted[j].String())
		}
		i = j + 1
	}
	return out
}
