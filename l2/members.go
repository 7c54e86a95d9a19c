package l2

import (
	"bytes"
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
	// OtherKeys are accepted from peers but never used to send: during a
	// key rotation they keep nodes that still send with the old key (or
	// already with the new one) in the membership. Same sizes as
	// SecretKey.
	OtherKeys [][]byte
	// Peers are "host:port" addresses of other nodes to join through;
	// the node's own address may be included. Empty means this node is
	// the whole cluster.
	Peers []string
}

// Members is this node's view of which speakers are alive and whether it
// may answer at all (see liveness). Memberlist (SWIM with Lifeguard) finds
// the nodes, keeps their addresses and carries the heartbeats, encrypted
// and authenticated with the shared key; its own failure detection decides
// nothing here, because it is asymmetric after a partition (see Quorate).
// Its methods are safe for concurrent use.
type Members struct {
	name string
	ml   *memberlist.Memberlist
	// transport bounds the inbound streams (see transport.go).
	transport *boundedTransport
	keyring   *memberlist.Keyring
	peers     []string
	changes   chan struct{}

	mu   sync.Mutex
	live *liveness
	// addrs are the members' addresses, for heartbeats; a node stays
	// here while it is down, so that it hears from the others as soon as
	// it is back, until it is forgotten.
	addrs map[string]*memberlist.Node

	log logr.Logger
	// rejected counts the heartbeats dropped, by cause; logged says
	// when an unsupported version was last logged (at most once a
	// minute each). Both under mu.
	rejected Rejected
	logged   map[int]time.Time

	// kick makes the heartbeat loop send at once.
	kick chan struct{}
	// stop ends the heartbeats and the watch.
	stop     chan struct{}
	stopOnce sync.Once
}

// memberlistConfig is memberlist's LAN profile with quicker probes and
// gossip, so that a node joining or coming back is known within a second
// or so. Failure detection is the heartbeats' job (liveness.go):
// memberlist's suspicion rounds are not on the failover path any more.
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
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true

	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.GossipInterval = 100 * time.Millisecond
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
	if err := checkKeys(cfg.SecretKey, cfg.OtherKeys); err != nil {
		return nil, err
	}
	keyring, err := memberlist.NewKeyring(append([][]byte{cfg.SecretKey}, cfg.OtherKeys...), cfg.SecretKey)
	if err != nil {
		return nil, fmt.Errorf("l2: %w", err)
	}
	if cfg.NodeName == "" {
		return nil, errors.New("l2: node name is required")
	}
	m := &Members{
		name:    cfg.NodeName,
		peers:   slices.Clone(cfg.Peers),
		changes: make(chan struct{}, 1),
		live:    newLiveness(cfg.NodeName, newEpoch(time.Now()), time.Now(), defaultTiming(), len(cfg.Peers) > 0),
		log:     logr.FromContextOrDiscard(ctx).WithName("members"),
		logged:  map[int]time.Time{},
		addrs:   map[string]*memberlist.Node{},
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	m.keyring = keyring
	c := memberlistConfig(cfg)
	c.Keyring = keyring
	c.Events = (*events)(m)
	c.Delegate = (*delegate)(m)
	c.LogOutput = nil
	c.Logger = log.New(logWriter{logr.FromContextOrDiscard(ctx).WithName("memberlist")}, "", 0)
	tr, err := newBoundedTransport(c, maxStreams, maxStreamBytes)
	if err != nil {
		return nil, fmt.Errorf("l2: %w", err)
	}
	c.Transport = tr
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = tr.Shutdown()
		return nil, fmt.Errorf("starting memberlist: %w", err)
	}
	m.ml, m.transport = ml, tr
	go m.heartbeats(m.stop)
	go m.watch(m.stop)
	return m, nil
}

// checkKeys validates the sending key and the other accepted keys.
func checkKeys(primary []byte, others [][]byte) error {
	for i, k := range append([][]byte{primary}, others...) {
		switch len(k) {
		case 16, 24, 32:
		default:
			which := "secret key"
			if i > 0 {
				which = fmt.Sprintf("other key %d", i)
			}
			return fmt.Errorf("l2: %s must be 16, 24 or 32 bytes, got %d", which, len(k))
		}
	}
	return nil
}

// SetKeys changes the keys at run time, for a rotation without restarts:
// messages are sent with primary from now on, and accepted when sent with
// primary or any of others; every other key is forgotten. Rotating without
// losing the membership takes three steps, each seen by every node before
// the next: add the new key to others, make it primary (with the old one
// in others), drop the old one.
func (m *Members) SetKeys(primary []byte, others [][]byte) error {
	if err := checkKeys(primary, others); err != nil {
		return err
	}
	want := append([][]byte{primary}, others...)
	for _, k := range want {
		if err := m.keyring.AddKey(k); err != nil {
			return fmt.Errorf("l2: add key: %w", err)
		}
	}
	if err := m.keyring.UseKey(primary); err != nil {
		return fmt.Errorf("l2: use key: %w", err)
	}
	for _, k := range m.keyring.GetKeys() {
		if !slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, k) }) {
			if err := m.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("l2: remove key: %w", err)
			}
		}
	}
	return nil
}

// Join contacts the configured peers and exchanges state with those that
// answer, and returns how many did. It fails only if none answered; a peer
// with another key never answers. Memberlist keeps the cluster together
// afterwards, so Join is needed once, and again only after a failure.
func (m *Members) Join() (int, error) {
	n, err := m.ml.Join(m.peers)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", m.peers, err)
	}
	return n, nil
}

// JoinAddrs is Join with other "host:port" addresses, for meeting nodes
// that were not peers at start or that memberlist declared dead (after a
// partition heals, say); the configured peers are unchanged.
func (m *Members) JoinAddrs(addrs []string) (int, error) {
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("joining %v: %w", addrs, err)
	}
	return n, nil
}

// Members returns the names of the nodes alive in this node's view,
// including itself, sorted: those heard from within DeadAfter, directly or
// through another node's report. It is the nodes argument of Owner.
func (m *Members) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.alive(time.Now())
}

// Known returns the last known membership that the quorum is counted
// against, sorted.
func (m *Members) Known() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.knownNodes()
}

// Forget removes nodes from the last known membership, so that their
// absence stops counting against the quorum. The speaker calls it when a
// Node is deleted from Kubernetes; a node that failed stays known until then.
func (m *Members) Forget(names ...string) {
	m.mu.Lock()
	m.live.forget(time.Now(), names...)
	for _, n := range names {
		if n != m.name {
			delete(m.addrs, n)
		}
	}
	m.mu.Unlock()
	m.notify()
}

// Quorate reports whether this node may answer for anything: a strict
// majority of the last known membership, itself included, echoed one of
// its heartbeats sent less than QuorumLease ago; when it has peers, it has
// met one; and RegainHoldDown has passed since it last regained that
// lease. See liveness and doc.go.
//
// It does not rely on memberlist's failure detection, which is asymmetric
// after a partition: the majority confirms its suspicions and declares the
// lost node dead in about a second, while the lost node, which gets no
// confirmations and whose probes Lifeguard slows down, takes two to four
// seconds to declare the others dead.
func (m *Members) Quorate() bool {
	_, ok := m.Lease()
	return ok
}

// Lease returns Quorate and the lease's generation, which changes every
// time the lease is regained after it lapsed. A caller that decided what to
// answer for under one generation must not answer under another: the
// Responder's gate compares them (see the speaker).
func (m *Members) Lease() (generation uint64, quorate bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.lease(time.Now())
}

// WantsTiebreak reports whether the tie-breaker would keep or give this
// node its lease now (see Tiebreak): the known membership is even and
// about half of it, this node included, still grants it a lease.
func (m *Members) WantsTiebreak() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.wantsTie(time.Now())
}

// SetTiebreak tells Members that this node holds the tie-breaker until
// until (zero: it does not), as Tiebreak.HeldUntil says. Exactly half of an
// even membership is a quorum for the node holding it.
func (m *Members) SetTiebreak(until time.Time) {
	m.mu.Lock()
	m.live.setTie(time.Now(), until)
	m.kickIfRegained()
	m.notify()
}

// heartbeats sends a heartbeat to every other known node each
// HeartbeatInterval until stop is closed. They go over memberlist's
// transport, so they are authenticated and encrypted with the shared key.
func (m *Members) heartbeats(stop <-chan struct{}) {
	t := time.NewTicker(HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.send(func(l *liveness) heartbeat { return l.heartbeat(time.Now()) })
	}
}

// send encodes the heartbeat build returns and sends it to every other node
// with a known address.
func (m *Members) send(build func(*liveness) heartbeat) {
	m.mu.Lock()
	msgs := m.live.encode(build(m.live))
	to := make([]*memberlist.Node, 0, len(m.addrs))
	for _, n := range m.addrs {
		to = append(to, n)
	}
	m.mu.Unlock()
	for _, n := range to {
		for _, b := range msgs {
			_ = m.ml.SendBestEffort(n, b)
		}
	}
}

// WatchInterval is how often Members looks for changes that only the
// passing of time makes: a node's silence reaching DeadAfter, the lease
// running out, the hold-down ending.
const WatchInterval = 20 * time.Millisecond

// watch signals Changes when Members or Lease change by themselves.
func (m *Members) watch(stop <-chan struct{}) {
	t := time.NewTicker(WatchInterval)
	defer t.Stop()
	var last string
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		m.mu.Lock()
		gen, ok := m.live.lease(now)
		state := fmt.Sprint(gen, ok, m.live.alive(now))
		m.mu.Unlock()
		if state != last {
			last = state
			m.notify()
		}
	}
}

// delegate is Members as a memberlist.Delegate: it receives heartbeats and
// has no metadata or state of its own.
type delegate Members

func (d *delegate) NodeMeta(int) []byte { return nil }

func (d *delegate) NotifyMsg(b []byte) {
	if !isHeartbeat(b) {
		return
	}
	m := (*Members)(d)
	hb, err := decodeHeartbeat(b)
	if err != nil {
		m.rejectUndecodable(err)
		return
	}
	m.mu.Lock()
	changed, drop := m.live.receive(time.Now(), hb)
	m.rejected.count(drop)
	regained := m.kickIfRegained()
	if changed || regained {
		m.notify()
	}
}

// kickIfRegained, called with mu held, which it releases, makes the
// heartbeat loop send at once if the lease was just regained: the others
// must know that this node is back well before its hold-down ends.
func (m *Members) kickIfRegained() bool {
	regained := m.live.takeRegained()
	m.mu.Unlock()
	if regained {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	return regained
}

func (d *delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (d *delegate) LocalState(bool) []byte              { return nil }
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {}

// Changes receives a value after Members, Known, Quorate or the lease's
// generation changed, within WatchInterval; changes that arrive while one
// is pending are coalesced. The receiver re-reads what it needs.
func (m *Members) Changes() <-chan struct{} { return m.changes }

// Leave tells the others this node is going away on purpose, so they take
// over its addresses at once instead of after DeadAfter, then stops the
// protocol. From the call on the node is not quorate. Use it on a clean
// shutdown, after the Responder stopped answering. The node stays in the
// others' known membership (see Forget).
func (m *Members) Leave(timeout time.Duration) error {
	m.stopOnce.Do(func() { close(m.stop) })
	var bye heartbeat
	m.mu.Lock()
	bye = m.live.leave(time.Now())
	m.mu.Unlock()
	// Twice: a lost goodbye costs the others DeadAfter.
	for range 2 {
		m.send(func(*liveness) heartbeat { return bye })
	}
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
	m.mu.Lock()
	m.live.leave(time.Now())
	m.mu.Unlock()
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

// NotifyJoin adds the node to the known membership and the address book.
func (e *events) NotifyJoin(n *memberlist.Node) {
	m := (*Members)(e)
	m.mu.Lock()
	m.live.join(time.Now(), n.Name)
	if n.Name != m.name {
		c := *n
		m.addrs[n.Name] = &c
	}
	m.mu.Unlock()
	m.notify()
}

// NotifyLeave changes nothing: a node memberlist declares dead or that
// left stays known (which only makes the quorum stricter) and keeps getting
// heartbeats, until Forget. Whether it is alive is the heartbeats' call.
func (e *events) NotifyLeave(*memberlist.Node) {}

// NotifyUpdate follows a node's new address.
func (e *events) NotifyUpdate(n *memberlist.Node) {
	m := (*Members)(e)
	if n.Name == m.name {
		return
	}
	m.mu.Lock()
	if _, ok := m.addrs[n.Name]; ok {
		c := *n
		m.addrs[n.Name] = &c
	}
	m.mu.Unlock()
}

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
