package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
	"github.com/berthlb/berth/l2"
)

// memberlistSecret is the Secret the e2e speakers read their membership key
// from (the default of --memberlist-secret).
const memberlistSecret = "berth-memberlist"

// l2Lab is a speakerLab without routers, with a client on the bridge that
// asks who has the Services' addresses.
type l2Lab struct {
	*speakerLab
	client *netlab.Host
	// node maps a node's eth0 MAC (lower case) to the node.
	node map[string]*labNode
}

// newL2Lab builds n nodes and a client, starts the controller and creates
// the membership key; the speakers are started by startL2Speaker.
func newL2Lab(t testing.TB, n int) *l2Lab {
	t.Helper()
	netlab.RequireRoot(t)
	hostdeps.Require(t, "arping", "ping", "nft")
	sl := newSpeakerLab(t, n)
	l := &l2Lab{speakerLab: sl, node: map[string]*labNode{}}
	for _, ln := range sl.nodes {
		l.node[hostMAC(t, ln.host)] = ln
	}
	l.client = sl.lab.AddHost("client")
	sl.secret(memberlistSecret, map[string]string{"secretkey": "e2e-memberlist-key-0123456789abc"})
	return l
}

// startL2Speaker runs n's speaker with layer 2 only, and extra flags;
// owner is the test that outlives it (see startSpeaker).
func (l *l2Lab) startL2Speaker(t, owner testing.TB, n *labNode, extra ...string) {
	t.Helper()
	n.speaker = startSpeaker(t, owner, l.e, n, append([]string{"--bgp=false", "--l2", "--memberlist-port=7946"}, extra...)...)
}

// dualStack creates n dual-stack LoadBalancer Services prefix0.. in
// namespace ns and returns their IPv4 and IPv6 addresses, in creation
// order.
func (l *l2Lab) dualStack(tb testing.TB, ns, prefix string, n int) (v4s, v6s []netip.Addr) {
	tb.Helper()
	policy := corev1.IPFamilyPolicyRequireDualStack
	for i := range n {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s%d", prefix, i)},
			Spec: corev1.ServiceSpec{
				Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &policy,
				IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
				Selector:   map[string]string{"app": prefix},
				Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
			},
		}
		if _, err := l.e.kube.CoreV1().Services(ns).Create(tb.Context(), s, metav1.CreateOptions{}); err != nil {
			tb.Fatalf("create Service %s/%s: %v", ns, s.Name, err)
		}
	}
	for i := range n {
		name := fmt.Sprintf("%s%d", prefix, i)
		var got []netip.Addr
		poll(tb, settle, "addresses of Service "+ns+"/"+name, func() error {
			s, err := l.e.kube.CoreV1().Services(ns).Get(tb.Context(), name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got = addrs(s); len(got) != 2 {
				return fmt.Errorf("addresses %v", got)
			}
			return nil
		})
		v4, v6 := split(got)
		v4s, v6s = append(v4s, v4), append(v6s, v6)
	}
	return v4s, v6s
}

// l2Pool creates pool "l2" with a /27 and a /120 of the lab's subnets, and
// a BerthL2Advertisement "l2" of it with spec's other fields.
func (l *l2Lab) l2Pool(tb testing.TB, spec v1alpha1.BerthL2AdvertisementSpec) {
	tb.Helper()
	a4 := l.lab.Prefix4.Addr().As4()
	a4[3] = 192
	a6 := l.lab.Prefix6.Addr().As16()
	a6[14] = 0xff
	pool4 := netip.PrefixFrom(netip.AddrFrom4(a4), 27)
	pool6 := netip.PrefixFrom(netip.AddrFrom16(a6), 120)
	l.e.pool(tb, "l2", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(pool4.String()), v1alpha1.AddressRange(pool6.String())}})
	spec.IPPools = []string{"l2"}
	l.advertiseL2("l2", spec)
}

// failover takes victim down with down, waits until each of owned (IPv4
// addresses it answers for) is answered by another MAC at the client,
// checks that two MACs never answered at once, then brings the victim back
// with up and waits until it answers for owned again. It returns, per
// address, the time from down until the client's first reply from another
// node.
func (l *l2Lab) failover(tb testing.TB, probe *arpProbe, owned []netip.Addr, victim *labNode, down, up func(*labNode)) []time.Duration {
	tb.Helper()
	mac := hostMAC(tb, victim.host)
	at := time.Now()
	down(victim)
	var ds []time.Duration
	for _, a := range owned {
		ds = append(ds, probe.waitMAC(tb, a, at, mac, "", settle))
	}
	// Let the probe see a few more rounds, to catch a late answer from
	// the victim.
	time.Sleep(100 * time.Millisecond)
	for _, a := range owned {
		if o, spans := probe.overlap(a, at); o > 0 {
			tb.Errorf("%s answered by two MACs for %v: %v", a, o, l.spans(spans))
		}
	}
	up(victim)
	l.waitMembers(tb, len(l.nodes))
	for _, a := range owned {
		probe.waitMAC(tb, a, time.Now(), "", mac, settle)
	}
	return ds
}

// hostMAC returns h's eth0 MAC, lower case.
func hostMAC(t testing.TB, h *netlab.Host) string {
	t.Helper()
	out, err := h.Exec(t.Context(), "cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(strings.TrimSpace(out))
}

// name returns the node whose MAC is mac, or mac itself if none.
func (l *l2Lab) name(mac string) string {
	if n, ok := l.node[mac]; ok {
		return n.name
	}
	return mac
}

// gauge reads an unlabelled sample from the speaker's /metrics; "" if the
// speaker does not answer.
func (p *speakerProc) gauge(name string) string {
	v, _ := scrapeMetric(p.metrics, name, "")
	return v
}

// waitMembers waits until every speaker of nodes sees want members and is
// quorate, and returns how long it took.
func (l *l2Lab) waitMembers(t testing.TB, want int, nodes ...*labNode) time.Duration {
	t.Helper()
	if nodes == nil {
		nodes = l.nodes
	}
	return poll(t, settle, fmt.Sprintf("%d speakers see %d members", len(nodes), want), func() error {
		for _, n := range nodes {
			m, q := n.speaker.gauge("berth_speaker_l2_members"), n.speaker.gauge("berth_speaker_l2_quorate")
			if m != fmt.Sprint(want) || q != "1" {
				return fmt.Errorf("%s: members %q, quorate %q", n.name, m, q)
			}
		}
		return nil
	})
}

// ndisc6 asks from namespace ns, on eth0, who has the IPv6 address a and
// returns the MACs that answered within half a second, lower case, sorted,
// each once.
func ndisc6(ns string, a netip.Addr) []string {
	out, _ := exec.Command("ip", "netns", "exec", ns, "ndisc6", "-q", "-m", "-n", "-r", "2", "-w", "500", a.String(), "eth0").Output()
	macs := strings.Fields(strings.ToLower(string(out)))
	slices.Sort(macs)
	return slices.Compact(macs)
}

var arpingReply = regexp.MustCompile(`(?i)reply from \S+ \[([0-9a-f:]+)\]`)

// arping asks twice, broadcasting both times, who has addr, with the real
// arping in the client, and returns the MACs of every reply, lower case.
func (l *l2Lab) arping(addr netip.Addr) []string {
	out, _ := l.client.Command(context.Background(), "arping", "-b", "-c", "2", "-w", "3", "-I", "eth0", addr.String()).CombinedOutput()
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}

// ndpAnswers asks from the client who has the IPv6 addr, with ndisc6 -m,
// and returns the MACs that answered, lower case, sorted, each once (an
// owner's unsolicited advertisements show too). Without ndisc6 it asks the
// client's kernel (flush the entry, ping, read the entry), which knows one
// MAC at most.
func (l *l2Lab) ndpAnswers(addr netip.Addr) []string {
	ns := l.client.Netns
	if _, err := exec.LookPath("ndisc6"); err == nil {
		return ndisc6(ns, addr)
	}
	_ = exec.Command("ip", "-n", ns, "neigh", "flush", "to", addr.String(), "dev", "eth0").Run()
	_ = exec.Command("ip", "netns", "exec", ns, "ping", "-6", "-c", "1", "-W", "1", addr.String()).Run()
	out, _ := exec.Command("ip", "-n", ns, "neigh", "show", addr.String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return []string{strings.ToLower(f[i+1])}
	}
	return nil
}

// arpReply is one ARP reply the probe saw.
type arpReply struct {
	at   time.Time
	addr netip.Addr
	mac  string
}

// arpProbe broadcasts an ARP request for each of its addresses every
// interval from the client's eth0 and records every reply with its time, to
// measure failovers at the probe's resolution and to catch two MACs
// answering at once.
type arpProbe struct {
	c     *arp.Client
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	seen  []arpReply
	addrs []netip.Addr
}

// inNetns runs f on an OS thread switched into the named network namespace;
// sockets f opens stay in that namespace.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = f()
		// A thread that cannot go back stays locked and dies with
		// the goroutine.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// answeredAddrs creates n dual-stack Services prefix0.. in namespace ns
// (dualStack), starts an ARP probe of their IPv4 addresses that stops
// with the test, and waits until each is answered by its owner among
// names (l2.Owner). It returns the IPv4 addresses and the probe.
func (l *l2Lab) answeredAddrs(t testing.TB, ns, prefix string, n int, names []string) ([]netip.Addr, *arpProbe) {
	t.Helper()
	v4s, _ := l.dualStack(t, ns, prefix, n)
	probe := l.startARPProbe(t, probeEvery, v4s...)
	t.Cleanup(probe.stop)
	for _, a := range v4s {
		probe.waitMAC(t, a, time.Now(), "", hostMAC(t, l.byName(l2.Owner(a, names)).host), settle)
	}
	return v4s, probe
}

// startARPProbe starts probing addrs from the client every interval until
// the test ends or stop is called.
func (l *l2Lab) startARPProbe(t testing.TB, interval time.Duration, addrs ...netip.Addr) *arpProbe {
	t.Helper()
	p := &arpProbe{done: make(chan struct{}), addrs: addrs}
	err := inNetns(l.client.Netns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		p.c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		t.Fatalf("open ARP socket in the client: %v", err)
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		for {
			_ = p.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			pkt, _, err := p.c.Read()
			select {
			case <-p.done:
				return
			default:
			}
			if err != nil || pkt.Operation != arp.OperationReply || !slices.Contains(p.addrs, pkt.SenderIP) {
				continue
			}
			p.mu.Lock()
			p.seen = append(p.seen, arpReply{at: time.Now(), addr: pkt.SenderIP, mac: strings.ToLower(pkt.SenderHardwareAddr.String())})
			p.mu.Unlock()
		}
	}()
	go func() {
		defer p.wg.Done()
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			for _, a := range p.addrs {
				_ = p.c.Request(a)
			}
			select {
			case <-p.done:
				return
			case <-tk.C:
			}
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *arpProbe) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	p.wg.Wait()
	_ = p.c.Close()
}

// replies returns the replies for addr seen since from, in order.
func (p *arpProbe) replies(addr netip.Addr, from time.Time) []arpReply {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []arpReply
	for _, r := range p.seen {
		if r.addr == addr && !r.at.Before(from) {
			out = append(out, r)
		}
	}
	return out
}

// waitMAC waits until addr is answered by a MAC other than old (want, if
// not empty) after from, and returns how long after from the first such
// reply came.
func (p *arpProbe) waitMAC(t testing.TB, addr netip.Addr, from time.Time, old, want string, d time.Duration) time.Duration {
	t.Helper()
	var got time.Duration
	poll(t, d, fmt.Sprintf("%s answered by a MAC other than %s", addr, old), func() error {
		for _, r := range p.replies(addr, from) {
			if r.mac != old && (want == "" || r.mac == want) {
				got = r.at.Sub(from)
				return nil
			}
		}
		return fmt.Errorf("no such reply")
	})
	return got
}

// onlyMAC says whether, over the last 300 ms (several probe intervals),
// addr was answered, and by mac only.
func (p *arpProbe) onlyMAC(addr netip.Addr, mac string) error {
	rs := p.replies(addr, time.Now().Add(-300*time.Millisecond))
	if len(rs) == 0 {
		return fmt.Errorf("no reply for %s in the last 300ms", addr)
	}
	for _, r := range rs {
		if r.mac != mac {
			return fmt.Errorf("%s answered by %s too, want %s only", addr, r.mac, mac)
		}
	}
	return nil
}

// interleaved reports, for addr since from, two changes of the answering
// MAC less than within apart (A, B, A or A, B, C): two MACs answered at
// once. Unlike overlap it allows an address to move and come back, as
// when a restarted owner takes its address back from its heir: those
// changes are a hold-down apart.
func (p *arpProbe) interleaved(addr netip.Addr, from time.Time, within time.Duration) error {
	rs := p.replies(addr, from)
	var last time.Time // of the previous change
	for i := 1; i < len(rs); i++ {
		if rs[i].mac == rs[i-1].mac {
			continue
		}
		if !last.IsZero() && rs[i].at.Sub(last) < within {
			return fmt.Errorf("%s answered by %s, %s and %s within %v (at %v)", addr, rs[i-2].mac, rs[i-1].mac, rs[i].mac, rs[i].at.Sub(last), rs[i].at.Sub(from))
		}
		last = rs[i].at
	}
	return nil
}

// moves counts, for addr since from, the changes of the answering MAC.
func (p *arpProbe) moves(addr netip.Addr, from time.Time) int {
	rs := p.replies(addr, from)
	n := 0
	for i := 1; i < len(rs); i++ {
		if rs[i].mac != rs[i-1].mac {
			n++
		}
	}
	return n
}

// overlap returns, for addr since from, the longest time two MACs both
// answered: for every pair, the intersection of the spans between each
// one's first and last reply. A clean move has none.
func (p *arpProbe) overlap(addr netip.Addr, from time.Time) (time.Duration, map[string][2]time.Time) {
	spans := map[string][2]time.Time{}
	for _, r := range p.replies(addr, from) {
		s, ok := spans[r.mac]
		if !ok {
			s[0] = r.at
		}
		s[1] = r.at
		spans[r.mac] = s
	}
	var worst time.Duration
	for a, sa := range spans {
		for b, sb := range spans {
			if a >= b {
				continue
			}
			start, end := maxTime(sa[0], sb[0]), minTime(sa[1], sb[1])
			if d := end.Sub(start); d > worst {
				worst = d
			}
		}
	}
	return worst, spans
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// percentile returns the p-th percentile (0-100, nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	k := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(k, 0), len(s)-1)]
}
