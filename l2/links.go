package l2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/mdlayher/ndp"
)

// The Responder's sockets: one ARP and one NDP socket per interface it
// serves, opened as interfaces appear and closed as they go.

// linkKey identifies a socket: one interface, one family.
type linkKey struct {
	name  string
	index int
	v6    bool
}

// link is one open socket.
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

// dialLink is the real dialFunc.
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

	t := time.NewTimer(r.cfg.Rescan)
	defer t.Stop()
	for {
		next := r.cfg.Rescan
		failed, err := r.syncLinks()
		if err != nil {
			r.log.Error(err, "Listing interfaces")
		}
		if failed > 0 {
			// Typically an interface that just came up: its IPv6
			// link-local address is still tentative (DAD takes a
			// second or two). Try again soon rather than at the
			// next rescan.
			next = min(next, retryDial)
		}
		t.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// retryDial is how soon the Responder retries opening a socket that failed.
const retryDial = time.Second

func (r *Responder) shutdown() {
	r.stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, l := range r.links {
		r.closeLink(l)
		delete(r.links, k)
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
// those whose interface went away or stopped matching. It returns how many
// sockets it failed to open.
func (r *Responder) syncLinks() (int, error) {
	ifs, err := r.interfaces()
	if err != nil {
		return 0, fmt.Errorf("listing interfaces: %w", err)
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
	for k := range r.dialErrs {
		if _, ok := want[k]; !ok {
			delete(r.dialErrs, k)
		}
	}
	r.mu.Unlock()

	failed := 0
	for _, k := range missing {
		ifi := want[k]
		conn, err := r.dial(ifi, k.v6)
		r.noteDial(k, err)
		if err != nil {
			failed++
			continue
		}
		r.addLink(&link{linkKey: k, mac: ifi.HardwareAddr, conn: conn, groups: map[netip.Addr]int{}})
	}
	return failed, nil
}

// noteDial logs a failure to open k's socket (typically NDP before the
// link-local address is usable, or ARP on an interface without an IPv4
// address; the next retry tries again) when it is new or differs from the
// last one, and at V(1) when it repeats; a success forgets it.
func (r *Responder) noteDial(k linkKey, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.dialErrs, k)
		return
	}
	if r.dialErrs[k] == err.Error() {
		r.log.V(1).Info("Opening socket failed again", "interface", k.name, "v6", k.v6, "err", err.Error())
		return
	}
	r.dialErrs[k] = err.Error()
	r.log.Error(err, "Opening socket; retrying, and logging again only if the error changes", "interface", k.name, "v6", k.v6)
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
		if !ann.quiet {
			go r.announce(ann.ctx, a, []*link{l})
		}
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
