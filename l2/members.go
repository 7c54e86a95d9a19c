package l2

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
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
	// WaitForRecord keeps the node silent (no heartbeats, so no echoes)
	// and without a lease until the first SetRecord: a node that follows
	// the membership record must not echo anyone under a revision older
	// than the current one (see MemberRecord).
	WaitForRecord bool
	// Voters lets this node take part in voter sets (docs/layer2.md,
	// "Named voters, and a small voter set"): it says it reads heartbeat
	// version 4 and proposes named voters in RecordView, every node in a
	// cluster of up to SmallCluster nodes and MaxVoters in a larger one.
	// It needs WaitForRecord, and every speaker should set it: none is
	// written before all say they read version 4.
	Voters bool
	// WritesRecord says this node's speaker writes the record (shrinking
	// is on). With Voters it holds no lease before a first record exists,
	// and may write that one without a lease (docs/layer2.md, "The first
	// record").
	WritesRecord bool
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
	if cfg.WaitForRecord {
		m.live.needRecord(time.Now())
		m.live.scale = cfg.Voters
		m.live.firstRecord = cfg.Voters && cfg.WritesRecord
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

// SetRecord hands Members the membership record read from the API server
// (Rev 0: there is none) or just written by this node. It follows it if
// it is newer than the one it follows (one heard in a heartbeat may be),
// and a node that waited for the record starts sending.
func (m *Members) SetRecord(r MemberRecord) {
	m.mu.Lock()
	m.live.setRecord(time.Now(), r)
	m.kickIfRegained()
	m.notify()
}

// RecordView returns what NextRecord needs from this node, gone being the
// nodes the API server says are gone (GoneNodes).
func (m *Members) RecordView(gone []string) RecordView {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.live.recordView(time.Now(), gone)
}

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
