package l2

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
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
	// Gate, if set, is asked right before every reply and announcement,
	// with the Responder's lock held; nothing is sent while it returns
	// false. The speaker passes the membership lease, so that a node that
	// lost it falls silent at that instant, however late its own sync
	// loop runs. It must be fast and must not call the Responder.
	Gate func() bool
}

// request is an ARP request or a Neighbor Solicitation: who has Target?
// Or, with Announce, another node's gratuitous ARP or unsolicited Neighbor
// Advertisement: Target is at SenderMAC.
type request struct {
	Target netip.Addr
	// SenderMAC is the asker's link-layer address; nil when an NS carries
	// no source link-layer option. For an announcement, the announced
	// address.
	SenderMAC net.HardwareAddr
	// Announce marks an announcement, which is never answered.
	Announce bool
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
// Set may be called at any time, before or during Run.
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
	// dialErrs is the last error opening each wanted socket, so that a
	// failure that repeats at every retry (a pod's veth without an IPv4
	// address, on a node with many) is logged once, not every second.
	dialErrs map[linkKey]string
}

// announcement is one owned address: where it is answered, and its
// gratuitous burst, whose ctx is cancelled when the address is lost or
// goes quiet.
type announcement struct {
	ctx    context.Context
	cancel context.CancelFunc
	// ifaces restricts the address to interfaces matching one of these
	// names or shell patterns; empty means every interface the Responder
	// serves.
	ifaces []string
	// quiet: answered, never announced.
	quiet bool
	// yielded: quiet, and another node announced the address since, so
	// it is no longer answered either.
	yielded bool
}

// Ownership is how the Responder treats one address it answers for.
type Ownership struct {
	// Interfaces restricts the address to the interfaces matching one of
	// these names or shell patterns; nil means every interface the
	// Responder serves.
	Interfaces []string
	// Quiet answers requests for the address but sends no gratuitous
	// announcements, and stops those under way; and once another node
	// announces the address, it stops answering too. It is for an address
	// being handed over to another node: this node covers until the new
	// owner speaks up, and must not undo its announcements afterwards
	// (a client that got both answers could keep the old one).
	Quiet bool
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
		dialErrs:   map[linkKey]string{},
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
// See Set.
func (r *Responder) SetOwnedOn(addrs map[netip.Addr][]string) {
	m := make(map[netip.Addr]Ownership, len(addrs))
	for a, ifaces := range addrs {
		m[a] = Ownership{Interfaces: ifaces}
	}
	r.Set(m)
}

// Set declares the complete set of addresses this node answers for.
// Addresses gained are announced at once and again at the configured
// offsets, unless quiet; addresses lost are no longer answered nor
// announced once Set returns; an address whose interfaces changed is
// dropped and gained again; one that goes quiet stops being announced, and
// one that stops being quiet is announced as if gained. Invalid addresses
// are ignored; IPv4-mapped IPv6 addresses count as IPv4.
func (r *Responder) Set(addrs map[netip.Addr]Ownership) {
	want := make(map[netip.Addr]Ownership, len(addrs))
	for a, o := range addrs {
		if a.IsValid() {
			want[a.Unmap().WithZone("")] = o
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for a, ann := range r.owned {
		o, ok := want[a]
		if ok && slices.Equal(o.Interfaces, ann.ifaces) {
			if o.Quiet != ann.quiet {
				r.requiet(a, ann, o.Quiet)
			}
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
	for a, o := range want {
		if _, ok := r.owned[a]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(r.base)
		ann := &announcement{ctx: ctx, cancel: cancel, ifaces: slices.Clone(o.Interfaces), quiet: o.Quiet}
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
		if len(links) > 0 && !o.Quiet {
			go r.announce(ann.ctx, a, links)
		}
		r.log.V(1).Info("Answering", "address", a, "links", len(links), "quiet", o.Quiet)
	}
}

// requiet stops a's announcements, or starts them again as for a gain.
// The caller holds r.mu.
func (r *Responder) requiet(a netip.Addr, ann *announcement, quiet bool) {
	ann.cancel()
	ann.ctx, ann.cancel = context.WithCancel(r.base)
	ann.quiet, ann.yielded = quiet, false
	if quiet {
		return
	}
	var links []*link
	for _, l := range r.links {
		if l.v6 == a.Is6() && ann.on(l) {
			links = append(links, l)
		}
	}
	if len(links) > 0 {
		go r.announce(ann.ctx, a, links)
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
// is lost or goes quiet.
// ctx is the announcement's at the time of the gain (the caller holds
// r.mu): a later requiet replaces it.
func (r *Responder) announce(ctx context.Context, a netip.Addr, links []*link) {
	start := time.Now()
	for _, off := range r.cfg.Announce {
		if d := time.Until(start.Add(off)); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		r.mu.Lock()
		if ctx.Err() != nil {
			r.mu.Unlock()
			return
		}
		if !r.open() {
			// Skipped, not cancelled: the lease may come back
			// before the next one is due.
			r.mu.Unlock()
			continue
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

// open reports whether the gate lets packets out. The caller holds r.mu.
func (r *Responder) open() bool {
	return r.cfg.Gate == nil || r.cfg.Gate()
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
	return ok && ann.on(l) && !ann.yielded
}

func (r *Responder) handle(l *link, req request) {
	req.Target = req.Target.Unmap().WithZone("")
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Announce {
		r.yield(l, req)
		return
	}
	if l.closed.Load() || !r.shouldAnswer(l, req) || !r.open() {
		return
	}
	if err := l.conn.Reply(req); err != nil {
		r.log.Error(err, "Replying", "address", req.Target, "interface", l.name)
	}
}

// yield stops answering for a quiet address that another node announced
// on l. The caller holds r.mu.
func (r *Responder) yield(l *link, req request) {
	ann, ok := r.owned[req.Target]
	if !ok || !ann.quiet || ann.yielded || !ann.on(l) || bytes.Equal(req.SenderMAC, l.mac) {
		return
	}
	ann.yielded = true
	r.log.V(1).Info("Another node announced an address being handed over; no longer answering", "address", req.Target, "interface", l.name, "mac", req.SenderMAC)
}
