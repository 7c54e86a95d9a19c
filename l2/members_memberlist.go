package l2

import (
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
)

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
	// Heartbeats are small and mostly numbers: LZW saves a few bytes of
	// each and costs a 64 KiB table allocated per message, which was most
	// of an idle speaker's CPU (its own and the garbage collector's).
	// Receivers read both forms, so speakers with and without it mix.
	c.EnableCompression = false

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

// delegate is Members as a memberlist.Delegate: it receives heartbeats and
// exchanges the known membership; it has no metadata.
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

func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState is this node's known membership (known.go), sent with every
// memberlist state exchange.
func (d *delegate) LocalState(bool) []byte {
	m := (*Members)(d)
	m.mu.Lock()
	defer m.mu.Unlock()
	return encodeKnown(m.live.knownNodes())
}

// MergeRemoteState learns the nodes that the other member knows.
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	m := (*Members)(d)
	names, err := decodeKnown(buf)
	if err != nil {
		m.mu.Lock()
		m.rejected.Malformed++
		m.mu.Unlock()
		m.log.V(2).Info("Ignoring a membership state exchange", "err", err.Error())
		return
	}
	m.learn(names, "a member's known membership")
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
