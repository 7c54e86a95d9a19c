package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
)

// clientLoop asks a Service address once per interval from a host and
// counts the answers and the requests lost (failed or unanswered within a
// second, each with its error), and the longest time without an answer.
type clientLoop struct {
	mu       sync.Mutex
	sent     int
	lost     int
	failures []error
	lastOK   time.Time
	longest  time.Duration
	answered map[string]int
	stop     context.CancelFunc
	done     chan struct{}
}

// startClientLoop starts asking ask every interval until stop.
func startClientLoop(ask func(context.Context) (string, error), interval time.Duration) *clientLoop {
	ctx, cancel := context.WithCancel(context.Background())
	c := &clientLoop{answered: map[string]int{}, stop: cancel, done: make(chan struct{}), lastOK: time.Now()}
	go func() {
		defer close(c.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			who, err := ask(ctx)
			now := time.Now()
			c.mu.Lock()
			if ctx.Err() == nil {
				c.sent++
				if err != nil || who == "" {
					c.lost++
					if err == nil {
						err = errors.New("an empty answer")
					}
					c.failures = append(c.failures, fmt.Errorf("%s: %w", now.Format("15:04:05.000"), err))
				} else {
					c.answered[who]++
					c.longest = max(c.longest, now.Sub(c.lastOK))
					c.lastOK = now
				}
			}
			c.mu.Unlock()
		}
	}()
	return c
}

// finish stops the loop and returns its counts.
func (c *clientLoop) finish() (sent, lost int, longest time.Duration, answered map[string]int) {
	c.stop()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, c.lost, c.longest, c.answered
}

// failed returns the errors of the requests lost, each with its time.
func (c *clientLoop) failed() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.failures...)
}

// TestMigrateBGPSideBySide plays docs/migration.md's Step 5 for BGP: the
// old implementation's speakers (an FRR announcer on each node, announcing
// the Service's address with the node as next hop, as MetalLB's FRR mode
// does) are replaced node by node by Berth's, while a client behind the
// router asks the address every 20 ms. Each node's old speaker stops
// (SIGTERM: a Cease, the router withdraws its path at once), then Berth's
// starts there and announces; the other node announces throughout, so the
// router always has a path: the client never waits long for an answer.
//
// A request can still be lost, and the test allows it within a bound:
// each change of r1's path set (a node's path gone, or back) rehashes its
// ECMP flows (Linux's hash-threshold multipath), and a connection whose
// handshake is in flight at that instant sends its next packet to the other
// node, which resets it. So every lost request must have been reset (a
// timeout would mean no path), and there may be at most one per change.
func TestMigrateBGPSideBySide(t *testing.T) {
	sl := newSpeakerLab(t, 2)
	var neighbors []frr.Neighbor
	for _, n := range sl.nodes {
		neighbors = append(neighbors, frr.Neighbor{Addr: n.host.IPv4, ASN: nodeASN})
	}
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8})
	// Spread the client's connections over both nodes (by ports too).
	if _, err := r1.Host.Exec(t.Context(), "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"); err != nil {
		t.Fatal(err)
	}
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}})
	sl.bgpPeer("r1", r1.Host.IPv4, routerASN, nodeASN)
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.e.namespace(t, "demo", nil)
	sl.e.service(t, "demo", "web")
	addr := sl.e.waitAllocated(t, "demo", "web", 1)[0]

	// The old speakers, and the Service's backends (the address on each
	// node, standing in for the forwarding to its NodePort).
	old := map[string]*frr.Router{}
	for _, n := range sl.nodes {
		answerOn(t, n.host, n.name, addr)
		old[n.name] = frr.StartOn(t, n.host, frr.Config{ASN: nodeASN, Neighbors: []frr.Neighbor{{Addr: r1.Host.IPv4, ASN: routerASN}},
			Networks: []netip.Prefix{hostRoute(addr)}})
	}
	waitNextHops(t, r1.Host, hostRoute(addr), sl.addrs(false), settle)

	loop := startClientLoop(func(ctx context.Context) (string, error) { return askName(ctx, r1.Host, addr) }, 20*time.Millisecond)
	time.Sleep(time.Second)
	for i, n := range sl.nodes {
		others := append(append([]*labNode{}, sl.nodes[:i]...), sl.nodes[i+1:]...)
		old[n.name].Stop(t)
		gone := waitNextHops(t, r1.Host, hostRoute(addr), sl.addrs(false, others...), settle)
		n.speaker = startSpeaker(t, t, sl.e, n)
		back := waitNextHops(t, r1.Host, hostRoute(addr), sl.addrs(false), settle)
		t.Logf("MEASURED: %s: old speaker stopped, its path gone from r1's kernel after %v; Berth's speaker started, its path back after %v",
			n.name, gone, back)
		time.Sleep(time.Second)
	}
	sent, lost, longest, answered := loop.finish()
	t.Logf("MEASURED: BGP switch of %d nodes, one at a time: %d requests every 20 ms, %d lost, longest time without an answer %v, answered by %v",
		len(sl.nodes), sent, lost, longest, answered)
	changes := 2 * len(sl.nodes) // each node's path goes, then comes back
	if lost > changes {
		t.Errorf("%d of %d requests lost during the switch, more than the %d changes of r1's paths could reset", lost, sent, changes)
	}
	for _, err := range loop.failed() {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("a request was lost other than by a reset at a path change: %v", err)
		} else {
			t.Logf("MEASURED: a request was reset (ECMP rehash at a path change): %v", err)
		}
	}
	if longest > 250*time.Millisecond {
		t.Errorf("the client waited %v for an answer: r1 had no path for a while", longest)
	}
	for _, n := range sl.nodes {
		if answered[n.name] == 0 {
			t.Errorf("%s answered no request: the client did not spread over both paths", n.name)
		}
	}
}

// TestMigrateL2Switch plays docs/migration.md's Step 5 for layer 2 and
// measures the gap: an old speaker (node1 answering ARP for two Service
// addresses, as MetalLB's does) stops, then Berth's speakers start on both
// nodes. Every node accepts the addresses' traffic throughout (the address
// on lo, answering no ARP: the stand-in for kube-proxy, which outlives the
// old speaker). A client asks both addresses every 20 ms. For the first
// its ARP entry stays as it was; for the second it is flushed when the old
// speaker stops (the worst case: the entry expires right then), so it
// waits for Berth's owner to answer.
func TestMigrateL2Switch(t *testing.T) {
	l := newL2Lab(t, 2)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "demo", nil)
	v4s, _ := l.dualStack(t, "demo", "web", 2)
	kept, flushed := v4s[0], v4s[1]
	for _, n := range l.nodes {
		mustExec(t, n.host, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.eth0.arp_ignore=1")
		answerOn(t, n.host, n.name, kept, flushed)
	}
	old := l.nodes[0]
	for _, a := range v4s {
		mustExec(t, old.host, "ip", "addr", "add", a.String()+"/32", "dev", "eth0")
	}
	ask := func(a netip.Addr) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) { return askName(ctx, l.client, a) }
	}
	loopKept := startClientLoop(ask(kept), 20*time.Millisecond)
	loopFlushed := startClientLoop(ask(flushed), 20*time.Millisecond)
	time.Sleep(time.Second)

	stopped := time.Now()
	for _, a := range v4s {
		mustExec(t, old.host, "ip", "addr", "del", a.String()+"/32", "dev", "eth0")
	}
	mustExec(t, l.client, "ip", "neigh", "flush", "to", flushed.String(), "dev", "eth0")
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
	}
	l.waitMembers(t, 2)
	poll(t, settle, "an answer from "+flushed.String(), func() error {
		_, err := askName(t.Context(), l.client, flushed)
		return err
	})
	t.Logf("speakers started and %s answered %v after the old speaker stopped", flushed, time.Since(stopped))
	time.Sleep(2 * time.Second)
	for _, c := range []struct {
		what string
		loop *clientLoop
	}{{"ARP entry kept", loopKept}, {"ARP entry flushed as the old speaker stopped", loopFlushed}} {
		sent, lost, longest, answered := c.loop.finish()
		t.Logf("MEASURED: layer-2 switch, %s: %d requests every 20 ms, %d lost, longest time without an answer %v, answered by %v",
			c.what, sent, lost, longest, answered)
		if c.loop == loopKept && lost > 0 {
			t.Errorf("%s: %d of %d requests lost although the client's ARP entry stayed valid", c.what, lost, sent)
		}
	}
}
