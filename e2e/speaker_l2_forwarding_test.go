package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/l2"
)

// npMove is the NodePort of the planned-move test's Service.
const npMove = 30280

// TestSpeakerL2PlannedMove cordons the owner of a Service address announced
// on layer 2, with forwarding on, while a client on the segment keeps one
// TCP connection busy and opens new ones every 20 ms. Each node runs a
// stand-in for the Service's NodePort that answers with its node's name.
//
// The nodes share no connection state: once the client's packets reach the
// new owner, that node's NodePort knows nothing of the established
// connection. The new owner drains (--l2-drain): it routes the mid-stream
// packets of connections it does not know to the old owner, whose conntrack
// still delivers them. The test checks that the established connection
// keeps making progress, served by the old owner, through the whole move;
// that new connections reach the new owner promptly (the target is 200 ms);
// that the client gets no ICMP redirect; and that the drain's route and set
// element are gone once the drain ends. The figures are printed as MEASURED
// lines.
func TestSpeakerL2PlannedMove(t *testing.T) {
	l := newL2Lab(t, 3)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{})
	l.e.namespace(t, "move", nil)
	for _, n := range l.nodes {
		l.lineServer(t, n, npMove)
		// Kubernetes nodes forward; the lab's do not by default.
		if _, err := n.host.Exec(t.Context(), "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			t.Fatal(err)
		}
		l.startL2Speaker(t, t, n, "--forwarding=true", "--drift-check-interval=1s", "--l2-drain="+drainForTest.String())
	}
	l.waitMembers(t, 3)
	l.e.service(t, "move", "web", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol), func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "line", Port: 80, Protocol: corev1.ProtocolTCP, NodePort: npMove}}
	})
	vip, _ := split(l.e.waitAllocated(t, "move", "web", 1))
	addr := netip.AddrPortFrom(vip, 80).String()
	old := l.byName(l2.Owner(vip, []string{"node1", "node2", "node3"}))
	var rest []string
	for _, n := range l.nodes {
		if n != old {
			rest = append(rest, n.name)
		}
	}
	next := l.byName(l2.Owner(vip, rest))
	poll(t, settle, "client reaches the NodePort through "+addr, func() error {
		got, err := l.exchange(t.Context(), addr)
		if err == nil && got != old.name {
			err = fmt.Errorf("answered by %s, want %s", got, old.name)
		}
		return err
	})
	probe := l.startARPProbe(t, probeEvery, vip)

	// One established connection, and a new connection every 20 ms.
	ctx, stop := context.WithCancel(t.Context())
	est, err := l.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	var (
		mu       sync.Mutex
		progress []lineResult // of the established connection
		fresh    []lineResult // new connections, by start time
		// neighAtBreak is the client's neighbour entry for the address
		// right after the established connection failed.
		neighAtBreak string
		wg           sync.WaitGroup
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		r := bufio.NewReader(est)
		for ctx.Err() == nil {
			start := time.Now()
			_ = est.SetDeadline(start.Add(2 * time.Second))
			node, err := exchangeOn(est, r)
			end := time.Now()
			if err != nil {
				neighAtBreak = l.neighMAC(vip)
			}
			mu.Lock()
			progress = append(progress, lineResult{start: start, end: end, node: node, err: err})
			mu.Unlock()
			if err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		var inner sync.WaitGroup
		defer inner.Wait()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			inner.Add(1)
			go func() {
				defer inner.Done()
				start := time.Now()
				cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				node, err := l.exchange(cctx, addr)
				mu.Lock()
				fresh = append(fresh, lineResult{start: start, end: time.Now(), node: node, err: err})
				mu.Unlock()
			}()
		}
	}()
	// Both kinds of traffic are flowing before the cordon.
	poll(t, settle, "exchanges on the established and on new connections", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.ContainsFunc(progress, func(r lineResult) bool { return r.err == nil }) ||
			!slices.ContainsFunc(fresh, func(r lineResult) bool { return r.err == nil }) {
			return fmt.Errorf("%d exchanges on the established connection, %d new connections", len(progress), len(fresh))
		}
		return nil
	})

	// The client's neighbour entry for the address, as it changes.
	mon := l.client.Command(context.Background(), "ip", "monitor", "neigh")
	var monOut strings.Builder
	mon.Stdout = &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	redirects := icmpInRedirects(t, l.client)
	at := time.Now()
	l.setUnschedulable(old, true)
	// During the handover the new owner drains the address to the old
	// one, which still forwards it: checked as soon as the drain is in
	// place, which must be before the handover ends.
	drainAfter := poll(t, DefaultHandoverForTest, next.name+" draining "+vip.String()+" to "+old.name, func() error {
		route, set := drainState(t, next, vip)
		if want := vip.String() + " via " + old.host.IPv4.String(); !strings.Contains(route, want) || !set {
			return fmt.Errorf("routes %q (want %q), drain set holds %s: %v", route, want, vip, set)
		}
		return nil
	})
	if tab, _ := nftTable(t, old); !strings.Contains(tab, vip.String()) {
		t.Errorf("%s stopped forwarding %s during the handover (%v after the cordon):\n%s", old.name, vip, time.Since(at), tab)
	}
	t.Logf("MEASURED: cordon of %s: %s drains %s to it after %v", old.name, next.name, vip, drainAfter)
	// The handover ends: the old owner stops forwarding, for good (new
	// connections keep coming for 1.5 s more, to be measured below).
	poll(t, DefaultHandoverForTest+settle, old.name+" no longer forwarding "+vip.String(), func() error {
		if tab, _ := nftTable(t, old); strings.Contains(tab, vip.String()) {
			return fmt.Errorf("still in its table")
		}
		return nil
	})
	holdsFor(t, 1500*time.Millisecond, old.name+" not forwarding "+vip.String()+" again", func() error {
		if tab, _ := nftTable(t, old); strings.Contains(tab, vip.String()) {
			return fmt.Errorf("back in its table:\n%s", tab)
		}
		return nil
	})
	stop()
	wg.Wait()
	_ = mon.Process.Kill()
	_ = mon.Wait()

	oldMAC := hostMAC(t, old.host)
	arpMoved := probe.waitMAC(t, vip, at, oldMAC, "", settle)
	o, spans := probe.overlap(vip, at)
	t.Logf("MEASURED: cordon of %s: the client's ARP probe gets the new owner's reply after %v; both answer for %v (handover %v): %v",
		old.name, arpMoved, o, DefaultHandoverForTest, l.spans(spans))
	if tab, _ := nftTable(t, old); strings.Contains(tab, vip.String()) {
		t.Errorf("%s still forwards %s after the handover:\n%s", old.name, vip, tab)
	}
	// Once the client has switched to the new owner, nothing may switch
	// it back: the old owner neither announces nor, once it saw the new
	// owner's announcement, answers.
	var entries []string
	for line := range strings.Lines(monOut.String()) {
		f := strings.Fields(line)
		if i := slices.Index(f, "lladdr"); len(f) > 0 && f[0] == vip.String() && i >= 0 && i+1 < len(f) {
			if e := l.name(strings.ToLower(f[i+1])); len(entries) == 0 || entries[len(entries)-1] != e {
				entries = append(entries, e)
			}
		}
	}
	t.Logf("MEASURED: cordon of %s: the client's neighbour entry for %s went %v", old.name, vip, entries)
	if i := slices.IndexFunc(entries, func(e string) bool { return e != old.name }); i < 0 || slices.Contains(entries[i:], old.name) {
		t.Errorf("the client's neighbour entry went %v: back to the old owner after the move", entries)
	}

	mu.Lock()
	defer mu.Unlock()
	// New connections: when the first one reached the new owner, and how
	// many opened after the cordon failed or were slow (a lost SYN costs
	// a 1 s retransmission). A connection still open when the client
	// switches to the new owner is reset like an established one; those
	// that started after the first connection served by the new owner
	// must all succeed.
	var moved time.Duration
	for _, r := range fresh {
		if !r.start.Before(at) && r.err == nil && r.node != old.name && (moved == 0 || r.end.Sub(at) < moved) {
			moved = r.end.Sub(at)
		}
	}
	var failed, inFlight, slow []string
	for _, r := range fresh {
		if r.start.Before(at) {
			continue
		}
		when := fmt.Sprintf("+%v", r.start.Sub(at).Round(time.Millisecond))
		switch {
		case r.err != nil && r.start.Sub(at) < moved:
			inFlight = append(inFlight, when+": "+r.err.Error())
		case r.err != nil:
			failed = append(failed, when+": "+r.err.Error())
		case r.end.Sub(r.start) > 200*time.Millisecond:
			slow = append(slow, fmt.Sprintf("%s: %v via %s", when, r.end.Sub(r.start).Round(time.Millisecond), r.node))
		}
	}
	t.Logf("MEASURED: cordon of %s: first new connection served by the new owner %v after the cordon (target 200ms); of %d new connections, %d open during the switch were reset %v, %d failed after it %v, %d took longer than 200ms %v",
		old.name, moved, len(fresh), len(inFlight), inFlight, len(failed), failed, len(slow), slow)
	if moved == 0 || moved > 200*time.Millisecond {
		t.Errorf("new connections reached the new owner after %v, want at most 200ms", moved)
	}
	if len(failed) > 0 {
		t.Errorf("new connections failed after the move: %v", failed)
	}

	// The established connection: served by the old owner through the
	// whole move, its packets drained to it by the new owner once the
	// client switched.
	var last time.Time
	var broke error
	var brokeAt time.Duration
	var gap time.Duration // longest exchange after the cordon
	var byOther []string
	for _, r := range progress {
		if r.err != nil {
			broke, brokeAt = r.err, r.end.Sub(at)
			break
		}
		if !r.end.Before(at) {
			gap = max(gap, r.end.Sub(r.start))
		}
		if r.node != old.name {
			byOther = append(byOther, r.node)
		}
		last = r.end
	}
	if broke == nil {
		t.Logf("MEASURED: cordon of %s: the established connection kept making progress through the whole move (%d exchanges, the slowest after the cordon %v), served by %s",
			old.name, len(progress), gap.Round(100*time.Microsecond), old.name)
	} else {
		t.Errorf("MEASURED: cordon of %s: the established connection made progress until %v after the cordon, then failed at %v (%v), the client's neighbour entry then pointing to %s",
			old.name, last.Sub(at).Round(time.Millisecond), brokeAt.Round(time.Millisecond), broke, l.name(neighAtBreak))
	}
	if len(byOther) > 0 {
		t.Errorf("the established connection was answered by %v, want only %s", byOther, old.name)
	}

	// The new owner forwards the drained packets out of the interface
	// they came in on; the ICMP redirects the kernel sends for that must
	// not reach the client (Linux ignores them for an on-link
	// destination, other systems may not).
	if n := icmpInRedirects(t, l.client) - redirects; n > 0 {
		t.Errorf("the client received %d ICMP redirects during the move", n)
	}

	// The drain ends: its route and set element go.
	poll(t, settle, "the drain of "+vip.String()+" on "+next.name+" ends", func() error {
		if route, set := drainState(t, next, vip); route != "" || set {
			return fmt.Errorf("routes %q, in the drain set: %v", route, set)
		}
		return nil
	})
	t.Logf("MEASURED: cordon of %s: the drain on %s ended %v after the cordon (--l2-drain=%v)",
		old.name, next.name, time.Since(at).Round(100*time.Millisecond), drainForTest)
}

// icmpInRedirects returns the ICMP redirects h received, from its
// /proc/net/snmp.
func icmpInRedirects(t testing.TB, h *netlab.Host) int {
	t.Helper()
	out, err := h.Exec(t.Context(), "cat", "/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Icmp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "InRedirects"); i > 0 && i < len(f) {
			n, err := strconv.Atoi(f[i])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Icmp InRedirects in %s's /proc/net/snmp", h.Netns)
	return 0
}

// drainForTest is the speakers' --l2-drain in the planned-move test.
const drainForTest = 3 * time.Second

// drainState returns n's drain routes (route protocol 0xbe) and whether its
// drain set holds a.
func drainState(t testing.TB, n *labNode, a netip.Addr) (string, bool) {
	t.Helper()
	routes, err := n.host.Exec(t.Context(), "ip", "route", "show", "proto", "190")
	if err != nil {
		t.Fatal(err)
	}
	set := "drain4"
	if a.Is6() {
		set = "drain6"
	}
	out, _ := n.host.Exec(t.Context(), "nft", "list", "set", "inet", "berth", set)
	elem := fmt.Sprintf("0x%x", a.AsSlice())
	elem = "0x" + strings.TrimLeft(strings.TrimPrefix(elem, "0x"), "0")
	return strings.TrimSpace(routes), strings.Contains(out, elem)
}

// neighMAC returns the client's neighbour entry's MAC for a, lower case, or
// "".
func (l *l2Lab) neighMAC(a netip.Addr) string {
	out, _ := exec.Command("ip", "-n", l.client.Netns, "neigh", "show", a.String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return strings.ToLower(f[i+1])
	}
	return ""
}

// DefaultHandoverForTest is the speaker's default --l2-handover.
const DefaultHandoverForTest = time.Second

// lineResult is one exchange with a NodePort stand-in.
type lineResult struct {
	start, end time.Time
	node       string
	err        error
}

// lineServer runs, in n, a stand-in for a NodePort on n's IPv4 address: for
// every line it reads it writes back the node's name.
func (l *l2Lab) lineServer(t *testing.T, n *labNode, port int) {
	t.Helper()
	ln, _, err := n.host.Listen("tcp", netip.AddrPortFrom(n.host.IPv4, uint16(port)).String())
	if err != nil {
		t.Fatalf("%s: listen: %v", n.name, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := fmt.Fprintln(c, n.name); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// exchange opens a connection from the client to addr, sends one line and
// returns the name of the node that answered.
func (l *l2Lab) exchange(ctx context.Context, addr string) (string, error) {
	c, err := l.client.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	}
	return exchangeOn(c, bufio.NewReader(c))
}

// exchangeOn sends a line on c and reads the answer from r.
func exchangeOn(c net.Conn, r *bufio.Reader) (string, error) {
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return "", err
	}
	s, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(s)
	if !slices.Contains([]string{"node1", "node2", "node3"}, name) {
		return "", fmt.Errorf("unexpected answer %q", s)
	}
	return name, nil
}
