package l2

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
)

// DefaultMembersPort is the UDP and TCP port of the membership protocol.
const DefaultMembersPort = 7946

// MembersConfig configures Members.
type MembersConfig struct {
	// NodeName is this node's name, as used by Owner; the Kubernetes
	// Node name.
	NodeName string
	// BindAddr is the address to listen on; "" means all addresses.
	BindAddr string
	// BindPort defaults to DefaultMembersPort.
	BindPort int
	// AdvertiseAddr is the address the others reach this node at; ""
	// lets memberlist pick BindAddr or a private address of the host.
	AdvertiseAddr string
	// SecretKey authenticates and encrypts every message (AES-GCM). It
	// must be 16, 24 or 32 bytes and should come from a Kubernetes
	// Secret shared by all speakers. Required: an unauthenticated
	// membership would let anyone on the segment make nodes claim or
	// drop addresses.
	SecretKey []byte
	// Peers are "host:port" addresses of other nodes to join through;
	// the node's own address may be included. Empty means this node is
	// the whole cluster.
	Peers []string
}

// Members is this node's view of which speakers are alive, kept by
// hashicorp/memberlist (SWIM with Lifeguard) tuned for a LAN. Its methods are
// safe for concurrent use.
type Members struct {
	name    string
	peers   []string
	ml      *memberlist.Memberlist
	changes chan struct{}

	mu sync.Mutex
	// known is the last known membership for the quorum: every node
	// seen alive and not forgotten.
	known map[string]bool
	// heard is when each other node's last heartbeat (or join) arrived.
	heard map[string]time.Time
	// stop ends the heartbeats.
	stop     chan struct{}
	stopOnce sync.Once
	// contacted is set once another node was seen alive; until then a
	// node with Peers is not quorate, so that a node booting on the
	// wrong side of a partition never claims anything.
	contacted bool
}

// memberlistConfig is memberlist's LAN profile, tightened for fast failover.
// A dead node is suspected after a missed direct probe and missed indirect
// probes (ProbeInterval + ProbeTimeout, about 300 ms), then declared dead
// after the suspicion timeout: SuspicionMult x ProbeInterval = 600 ms once
// another node confirms the suspicion, up to SuspicionMaxTimeoutMult times
// that (1.8 s) without confirmation. See doc.go for measured values.
func memberlistConfig(cfg MembersConfig) *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.Name = cfg.NodeName
	if cfg.BindAddr != "" {
		c.BindAddr = cfg.BindAddr
	}
	c.BindPort = DefaultMembersPort
	if cfg.BindPort != 0 {
		c.BindPort = cfg.BindPort
	}
	c.AdvertisePort = c.BindPort
	c.AdvertiseAddr = cfg.AdvertiseAddr
	c.SecretKey = cfg.SecretKey
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true

	// LAN round trips are well under a millisecond; 100 ms leaves room
	// for a busy node's scheduling and GC pauses. Lifeguard's awareness
	// (AwarenessMaxMultiplier, kept at 8) stretches these on a node that
	// is itself slow, so an overloaded node does not accuse healthy ones.
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 3
	// Gossip fast so that suspicions, refutations and deaths spread
	// within a probe interval.
	c.GossipInterval = 50 * time.Millisecond
	c.GossipNodes = 3
	c.GossipToTheDeadTime = 5 * time.Second
	c.PushPullInterval = 15 * time.Second
	c.TCPTimeout = 2 * time.Second
	// A node restarted with a new address may reclaim its name soon.
	c.DeadNodeReclaimTime = 5 * time.Second
	return c
}

// NewMembers starts the membership protocol; call Join to meet the peers.
// Memberlist's own log goes to the logr.Logger in ctx.
func NewMembers(ctx context.Context, cfg MembersConfig) (*Members, error) {
	switch len(cfg.SecretKey) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("l2: secret key must be 16, 24 or 32 bytes, got %d", len(cfg.SecretKey))
	}
	if cfg.NodeName == "" {
		return nil, errors.New("l2: node name is required")
	}
	m := &Members{
		name:    cfg.NodeName,
		peers:   slices.Clone(cfg.Peers),
		changes: make(chan struct{}, 1),
		known:   map[string]bool{cfg.NodeName: true},
		heard:   map[string]time.Time{},
		stop:    make(chan struct{}),
	}
	c := memberlistConfig(cfg)
	c.Events = (*events)(m)
	c.Delegate = (*delegate)(m)
	c.LogOutput = nil
	c.Logger = log.New(logWriter{logr.FromContextOrDiscard(ctx).WithName("memberlist")}, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("starting memberlist: %w", err)
	}
	m.ml = ml
	go m.heartbeats(m.stop)
	return m, nil
}

// Join contacts the configured peers and exchanges state with those that
// answer, and returns how many did. It fails only if none answered; a peer with another key never
// answers. Memberlist keeps the cluster together afterwards, so Join is
// needed once, and again only after a failure.
func (m *Members) Join() (int, error) {
	n, err := m.ml.Join(m.peers)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", m.peers, err)
	}
	return n, nil
}

// JoinAddrs is Join with other "host:port" addresses, for meeting nodes
// that were not peers at start or that this node declared dead (after a
// partition heals, say); the configured peers are unchanged.
func (m *Members) JoinAddrs(addrs []string) (int, error) {
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", addrs, err)
	}
	return n, nil
}

// Members returns the names of the nodes alive in this node's view,
// including itself, sorted. It is the nodes argument of Owner.
func (m *Members) Members() []string {
	ms := m.ml.Members()
	out := make([]string, 0, len(ms))
	for _, n := range ms {
		// Suspected nodes are still listed: suspicion is how memberlist
		// waits for a refutation before declaring a death.
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// Known returns the last known membership that the quorum is counted
// against, sorted.
func (m *Members) Known() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, 0, len(m.known))
	for n := range m.known {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Forget removes nodes from the last known membership, so that their
// absence stops counting against the quorum. The speaker calls it when a
// Node is deleted from Kubernetes; a node that failed stays known until then.
func (m *Members) Forget(names ...string) {
	m.mu.Lock()
	for _, n := range names {
		if n != m.name {
			delete(m.known, n)
		}
	}
	m.mu.Unlock()
	m.notify()
}

// Quorate reports whether this node may answer for anything: it has heard
// from a strict majority of the last known membership within
// HeardWithin (itself included), and, when it has peers, it has met at
// least one of them. See doc.go.
//
// It does not rely on memberlist's failure detection, which is asymmetric
// after a partition: the majority confirms its suspicions and declares the
// lost node dead in about a second, while the lost node, which gets no
// confirmations and whose probes Lifeguard slows down, takes two to four
// seconds to declare the others dead. Counting memberlist's members would
// leave both sides answering meanwhile. Instead every node sends every
// other a small authenticated heartbeat each HeartbeatInterval; a node that
// hears from too few peers stops within HeardWithin, before the majority
// takes over. Losing quorum this way is not signalled on Changes: poll
// Quorate (every 50 ms or so).
func (m *Members) Quorate() bool {
	alive := map[string]bool{}
	for _, n := range m.ml.Members() {
		alive[n.Name] = true
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.peers) > 0 && !m.contacted {
		return false
	}
	live := []string{m.name}
	for n, at := range m.heard {
		if alive[n] && now.Sub(at) < HeardWithin {
			live = append(live, n)
		}
	}
	return hasQuorum(live, m.known)
}

// HeartbeatInterval is how often a node sends every other node a heartbeat;
// HeardWithin is how recent the last one must be for the sender to count
// towards the quorum. HeardWithin tolerates five lost or late heartbeats in
// a row (a loaded node must not lose its quorum for nothing) and is still
// shorter than the majority's failure detection (about 0.9 s), so a cut-off
// node falls silent before the others take over its addresses.
const (
	HeartbeatInterval = 100 * time.Millisecond
	HeardWithin       = 600 * time.Millisecond
)

// heartbeats sends a heartbeat to every other member each
// HeartbeatInterval until stop is closed. They go over memberlist's
// transport, so they are authenticated and encrypted with the shared key.
func (m *Members) heartbeats(stop <-chan struct{}) {
	msg := append([]byte(heartbeatPrefix), m.name...)
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		for _, n := range m.ml.Members() {
			if n.Name != m.name {
				_ = m.ml.SendBestEffort(n, msg)
			}
		}
	}
}

const heartbeatPrefix = "berth-hb:"

// heard records that name is reachable.
func (m *Members) heardFrom(name string) {
	if name == m.name {
		return
	}
	m.mu.Lock()
	m.heard[name] = time.Now()
	m.mu.Unlock()
}

// delegate is Members as a memberlist.Delegate: it receives heartbeats and
// has no metadata or state of its own.
type delegate Members

func (d *delegate) NodeMeta(int) []byte { return nil }

func (d *delegate) NotifyMsg(b []byte) {
	if name, ok := strings.CutPrefix(string(b), heartbeatPrefix); ok {
		(*Members)(d).heardFrom(name)
	}
}

func (d *delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *delegate) LocalState(bool) []byte              { return nil }
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {}

// hasQuorum reports whether more than half of known is in live.
func hasQuorum(live []string, known map[string]bool) bool {
	n := 0
	for _, l := range live {
		if known[l] {
			n++
		}
	}
	return 2*n > len(known)
}

// Changes receives a value after the membership or the known set changed;
// changes that arrive while one is pending are coalesced. The receiver
// re-reads Members and Quorate.
func (m *Members) Changes() <-chan struct{} { return m.changes }

// Leave tells the others this node is going away on purpose, so they take
// over its addresses at once instead of after failure detection, then stops
// the protocol. Use it on a clean shutdown, after the Responder stopped
// answering. The node stays in the others' known membership (see Forget).
func (m *Members) Leave(timeout time.Duration) error {
	m.stopOnce.Do(func() { close(m.stop) })
	if err := m.ml.Leave(timeout); err != nil {
		_ = m.ml.Shutdown()
		return fmt.Errorf("leaving memberlist: %w", err)
	}
	if err := m.ml.Shutdown(); err != nil {
		return fmt.Errorf("stopping memberlist: %w", err)
	}
	return nil
}

// Shutdown stops the protocol without telling anyone; the others will
// detect a failure.
func (m *Members) Shutdown() error {
	m.stopOnce.Do(func() { close(m.stop) })
	if err := m.ml.Shutdown(); err != nil {
		return fmt.Errorf("stopping memberlist: %w", err)
	}
	return nil
}

func (m *Members) notify() {
	select {
	case m.changes <- struct{}{}:
	default:
	}
}

// events is Members as a memberlist.EventDelegate; memberlist calls it
// from one goroutine at a time.
type events Members

func (e *events) NotifyJoin(n *memberlist.Node) {
	m := (*Members)(e)
	m.mu.Lock()
	m.known[n.Name] = true
	if n.Name != m.name {
		m.contacted = true
		m.heard[n.Name] = time.Now()
	}
	m.mu.Unlock()
	m.notify()
}

// NotifyLeave does not touch the known membership, even for a graceful
// leave: memberlist does not tell the delegate which it was, and keeping a
// node known only makes the quorum stricter. Forget drops it.
func (e *events) NotifyLeave(*memberlist.Node) { (*Members)(e).notify() }

func (e *events) NotifyUpdate(*memberlist.Node) { (*Members)(e).notify() }

// logWriter turns memberlist's "[LEVEL] memberlist: message" lines into
// logr calls.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.HasPrefix(line, "[DEBUG]"):
		w.log.V(4).Info(strings.TrimSpace(strings.TrimPrefix(line, "[DEBUG]")))
	case strings.HasPrefix(line, "[INFO]"):
		w.log.V(2).Info(strings.TrimSpace(strings.TrimPrefix(line, "[INFO]")))
	case strings.HasPrefix(line, "[ERR]"):
		w.log.Error(nil, strings.TrimSpace(strings.TrimPrefix(line, "[ERR]")))
	default:
		w.log.Info(strings.TrimSpace(strings.TrimPrefix(line, "[WARN]")))
	}
	return len(p), nil
}
