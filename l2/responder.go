package l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/ndp"
)

// defaultAnnounce is when, after gaining an address, the Responder sends a
// gratuitous ARP or unsolicited Neighbor Advertisement, as offsets from the
// gain. Several copies survive a lost frame and a switch that is still
// learning; the spacing doubles so that a burst of failovers does not flood
// the segment.
func defaultAnnounce() []time.Duration {
	return []time.Duration{0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}
}

// DefaultRescan is how often the Responder lists interfaces to open sockets
// on new ones and close those that went away.
const DefaultRescan = 10 * time.Second

// ResponderConfig configures a Responder.
type ResponderConfig struct {
	// Interfaces selects the interfaces to answer on, by exact name or
	// path.Match pattern ("eth*", "bond[01]"). Empty means every interface
	// that is up, is not a loopback and has a 6-byte MAC.
	Interfaces []string
	// Announce is when gratuitous ARPs / unsolicited NAs are sent after an
	// address is gained, as ascending offsets from the gain. Empty means
	// 0, 250 ms, 500 ms, 1 s, 2 s.
	Announce []time.Duration
	// Rescan overrides DefaultRescan.
	Rescan time.Duration
}

// request is an ARP request or a Neighbor Solicitation: who has Target?
type request struct {
	Target netip.Addr
	// SenderMAC is the asker's link-layer address; nil when an NS carries
	// no source link-layer option.
	SenderMAC net.HardwareAddr
	// raw is what the socket needs to reply; only the socket reads it.
	raw any
}

// linkConn is the socket of one interface for one family: ARP for IPv4, NDP
// for IPv6. It is the seam that lets the decision logic be tested with a
// fake.
type linkConn interface {
	// Read blocks until the next request arrives or the conn is closed.
	Read() (request, error)
	// Reply tells the asker of req that req.Target is at this link's MAC.
	Reply(req request) error
	// Announce sends a gratuitous ARP or an unsolicited, overriding
	// Neighbor Advertisement for addr.
	Announce(addr netip.Addr) error
	// JoinGroup and LeaveGroup manage IPv6 multicast membership (the
	// solicited-node groups); ARP conns never get these calls.
	JoinGroup(group netip.Addr) error
	LeaveGroup(group netip.Addr) error
	Close() error
}

// dialFunc opens the ARP (v6 false) or NDP (v6 true) socket of ifi.
type dialFunc func(ifi net.Interface, v6 bool) (linkConn, error)

// Responder answers ARP requests and Neighbor Solicitations for the
// addresses it is told it owns, with the MAC of the interface the request
// arrived on. It never adds an address to an interface. Its sockets need
// CAP_NET_RAW.
//
// SetOwned may be called at any time, before or during Run.
type Responder struct {
	cfg        ResponderConfig
	dial       dialFunc
	interfaces func() ([]net.Interface, error)

	// base is cancelled when Run returns; announcements derive from it.
	base context.Context
	stop context.CancelFunc

	// mu guards the fields below. It is also held while a reply or an
	// announcement is written, so that once SetOwned returns no packet
	// claiming a dropped address leaves this node.
	mu      sync.Mutex
	log     logr.Logger
	running bool
	owned   map[netip.Addr]*announcement
	links   map[linkKey]*link
}

// announcement is the gratuitous burst for one owned address; its ctx is
// cancelled when the address is lost.
type announcement struct {
	ctx    context.Context
	cancel context.CancelFunc
	// ifaces restricts the address to interfaces matching one of these
	// names or shell patterns; empty means every interface the Responder
	// serves.
	ifaces []string
}

// on reports whether the address may be answered and announced on l.
func (ann *announcement) on(l *link) bool {
	if len(ann.ifaces) == 0 {
		return true
	}
	for _, p := range ann.ifaces {
		if ok, _ := path.Match(p, l.name); ok || p == l.name {
			return true
		}
	}
	return false
}

type linkKey struct {
	name  string
	index int
	v6    bool
}

type link struct {
	linkKey
	mac    net.HardwareAddr
	conn   linkConn
	closed atomic.Bool
	// groups counts owned addresses per solicited-node group: addresses
	// sharing their low 24 bits share a group, which is left only when
	// the last of them is lost.
	groups map[netip.Addr]int
}

// NewResponder returns a Responder that opens real ARP and NDP sockets.
func NewResponder(cfg ResponderConfig) *Responder {
	return newResponder(cfg, dialLink, net.Interfaces)
}

func newResponder(cfg ResponderConfig, dial dialFunc, interfaces func() ([]net.Interface, error)) *Responder {
	if len(cfg.Announce) == 0 {
		cfg.Announce = defaultAnnounce()
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	base, stop := context.WithCancel(context.Background())
	return &Responder{
		cfg:        cfg,
		dial:       dial,
		interfaces: interfaces,
		base:       base,
		stop:       stop,
		log:        logr.Discard(),
		owned:      map[netip.Addr]*announcement{},
		links:      map[linkKey]*link{},
	}
}

func dialLink(ifi net.Interface, v6 bool) (linkConn, error) {
	if v6 {
		return dialNDP(&ifi)
	}
	return dialARP(&ifi)
}

// Run opens the sockets and answers until ctx is done, then closes them and
// returns nil. It logs through the logr.Logger in ctx. It may be called once.
func (r *Responder) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("l2: Responder.Run called twice")
	}
	r.running = true
	r.log = logr.FromContextOrDiscard(ctx).WithName("l2-responder")
	r.mu.Unlock()
	defer r.shutdown()

	t := time.NewTicker(r.cfg.Rescan)
	defer t.Stop()
	for {
		if err := r.syncLinks(); err != nil {
			r.log.Error(err, "Listing interfaces")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Responder) shutdown() {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.links {
		r.closeLink(l)
		delete(r.links, k)
	}
}

// SetOwned declares the complete set of addresses this node answers for,
// on every interface it serves. See SetOwnedOn.
func (r *Responder) SetOwned(addrs []netip.Addr) {
	m := make(map[netip.Addr][]string, len(addrs))
	for _, a := range addrs {
		m[a] = nil
	}
	r.SetOwnedOn(m)
}

// SetOwnedOn declares the complete set of addresses this node answers for,
// each restricted to the interfaces matching its list of names or shell
// patterns (an empty list means every interface the Responder serves).
// Addresses gained are announced at once and again at the configured
// offsets; addresses lost are no longer answered nor announced once
// SetOwnedOn returns; an address whose interfaces changed is dropped and
// gained again. Invalid addresses are ignored; IPv4-mapped IPv6 addresses
// count as IPv4.
func (r *Responder) SetOwnedOn(addrs map[netip.Addr][]string) {
	want := make(map[netip.Addr][]string, len(addrs))
	for a, ifaces := range addrs {
		if a.IsValid() {
			want[a.Unmap().WithZone("")] = ifaces
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, ann := range r.owned {
		if ifaces, ok := want[a]; ok && slices.Equal(ifaces, ann.ifaces) {
			continue
		}
		ann.cancel()
		delete(r.owned, a)
		for _, l := range r.links {
			if l.v6 && a.Is6() && ann.on(l) {
				r.leave(l, a)
			}
		}
		r.log.V(1).Info("Stopped answering", "address", a)
	}
	for a, ifaces := range want {
		if _, ok := r.owned[a]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(r.base)
		ann := &announcement{ctx: ctx, cancel: cancel, ifaces: slices.Clone(ifaces)}
		r.owned[a] = ann
		var links []*link
		for _, l := range r.links {
			if l.v6 == a.Is6() && ann.on(l) {
				links = append(links, l)
				if l.v6 {
					r.join(l, a)
				}
			}
		}
		if len(links) > 0 {
			go r.announce(ann, a, links)
		}
		r.log.V(1).Info("Answering", "address", a, "links", len(links))
	}
}

// Owned returns the addresses this Responder answers for, sorted.
func (r *Responder) Owned() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Addr, 0, len(r.owned))
	for a := range r.owned {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Links returns the open sockets as "name/arp" and "name/ndp", sorted; for
// status and readiness checks.
func (r *Responder) Links() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.links))
	for k := range r.links {
		proto := "arp"
		if k.v6 {
			proto = "ndp"
		}
		out = append(out, k.name+"/"+proto)
	}
	slices.Sort(out)
	return out
}

// announce sends the gratuitous burst for a on links, stopping as soon as a
// is lost.
func (r *Responder) announce(ann *announcement, a netip.Addr, links []*link) {
	start := time.Now()
	for _, off := range r.cfg.Announce {
		if d := time.Until(start.Add(off)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ann.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		if ann.ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		for _, l := range links {
			if l.closed.Load() {
				continue
			}
			if err := l.conn.Announce(a); err != nil {
				r.log.Error(err, "Sending gratuitous announcement", "address", a, "interface", l.name)
			}
		}
		r.mu.Unlock()
	}
}

// shouldAnswer is the whole answering policy. The caller holds r.mu.
func (r *Responder) shouldAnswer(l *link, req request) bool {
	t := req.Target.Unmap().WithZone("")
	if !t.IsValid() || t.Is6() != l.v6 {
		return false
	}
	// A packet socket also sees what this node sends, such as its own
	// gratuitous ARPs, which are requests for the owned address.
	if bytes.Equal(req.SenderMAC, l.mac) {
		return false
	}
	ann, ok := r.owned[t]
	return ok && ann.on(l)
}

func (r *Responder) handle(l *link, req request) {
	req.Target = req.Target.Unmap().WithZone("")
	r.mu.Lock()
	defer r.mu.Unlock()
	if l.closed.Load() || !r.shouldAnswer(l, req) {
		return
	}
	if err := l.conn.Reply(req); err != nil {
		r.log.Error(err, "Replying", "address", req.Target, "interface", l.name)
	}
}

// serve reads requests on l until l is closed.
func (r *Responder) serve(l *link) {
	failures := 0
	for {
		req, err := l.conn.Read()
		if l.closed.Load() {
			return
		}
		if err != nil {
			// A link going down makes reads fail until the next rescan
			// closes it; do not spin meanwhile.
			failures++
			if failures == 1 || failures%100 == 0 {
				r.log.Error(err, "Reading", "interface", l.name, "v6", l.v6, "failures", failures)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		failures = 0
		r.handle(l, req)
	}
}

// matches reports whether the interface is eligible under cfg.Interfaces.
func (r *Responder) matches(ifi net.Interface) bool {
	if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 || len(ifi.HardwareAddr) != 6 {
		return false
	}
	if len(r.cfg.Interfaces) == 0 {
		return true
	}
	for _, p := range r.cfg.Interfaces {
		if ok, _ := path.Match(p, ifi.Name); ok || p == ifi.Name {
			return true
		}
	}
	return false
}

// syncLinks opens sockets on eligible interfaces that have none and closes
// those whose interface went away or stopped matching.
func (r *Responder) syncLinks() error {
	ifs, err := r.interfaces()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	want := map[linkKey]net.Interface{}
	for _, ifi := range ifs {
		if r.matches(ifi) {
			for _, v6 := range []bool{false, true} {
				want[linkKey{name: ifi.Name, index: ifi.Index, v6: v6}] = ifi
			}
		}
	}
	r.mu.Lock()
	for k, l := range r.links {
		if _, ok := want[k]; !ok {
			r.closeLink(l)
			delete(r.links, k)
			r.log.Info("Closed socket", "interface", k.name, "v6", k.v6)
		}
	}
	var missing []linkKey
	for k := range want {
		if _, ok := r.links[k]; !ok {
			missing = append(missing, k)
		}
	}
	r.mu.Unlock()

	for _, k := range missing {
		ifi := want[k]
		conn, err := r.dial(ifi, k.v6)
		if err != nil {
			// Typically NDP before the link-local address is usable;
			// the next rescan retries.
			r.log.Error(err, "Opening socket", "interface", k.name, "v6", k.v6)
			continue
		}
		r.addLink(&link{linkKey: k, mac: ifi.HardwareAddr, conn: conn, groups: map[netip.Addr]int{}})
	}
	return nil
}

// addLink starts serving l and announces every owned address of its family
// on it.
func (r *Responder) addLink(l *link) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base.Err() != nil {
		_ = l.conn.Close()
		return
	}
	r.links[l.linkKey] = l
	r.log.Info("Opened socket", "interface", l.name, "v6", l.v6)
	go r.serve(l)
	for a, ann := range r.owned {
		if a.Is6() != l.v6 || !ann.on(l) {
			continue
		}
		if l.v6 {
			r.join(l, a)
		}
		go r.announce(ann, a, []*link{l})
	}
}

// closeLink closes l; the caller holds r.mu and removes it from r.links.
func (r *Responder) closeLink(l *link) {
	l.closed.Store(true)
	if err := l.conn.Close(); err != nil {
		r.log.Error(err, "Closing socket", "interface", l.name, "v6", l.v6)
	}
}

// join and leave keep one membership per solicited-node group on l. The
// caller holds r.mu.
func (r *Responder) join(l *link, a netip.Addr) {
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	l.groups[g]++
	if l.groups[g] > 1 {
		return
	}
	if err := l.conn.JoinGroup(g); err != nil {
		r.log.Error(err, "Joining solicited-node group", "group", g, "interface", l.name)
	}
}

func (r *Responder) leave(l *link, a netip.Addr) {
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil || l.groups[g] == 0 {
		return
	}
	l.groups[g]--
	if l.groups[g] > 0 {
		return
	}
	delete(l.groups, g)
	if err := l.conn.LeaveGroup(g); err != nil {
		r.log.Error(err, "Leaving solicited-node group", "group", g, "interface", l.name)
	}
}
