package nodeport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/internal/hostdeps"
)

// Addresses of the lab: a client and a node joined by a veth, and a "pod"
// namespace behind the node, reached through a second veth.
var (
	nodeIP4   = netip.MustParseAddr("198.18.0.1")
	clientIP4 = netip.MustParseAddr("198.18.0.2")
	nodeIP6   = netip.MustParseAddr("2001:db8:1::1")
	clientIP6 = netip.MustParseAddr("2001:db8:1::2")
	podGW4    = netip.MustParseAddr("198.19.0.1")
	podIP4    = netip.MustParseAddr("198.19.0.2")
	podGW6    = netip.MustParseAddr("2001:db8:2::1")
	podIP6    = netip.MustParseAddr("2001:db8:2::2")
	svcIP4    = netip.MustParseAddr("198.51.100.1")
	svcIP6    = netip.MustParseAddr("2001:db8:5::1")
	// Services behind the kube-proxy stand-in.
	kpIP4  = netip.MustParseAddr("198.51.100.2")
	kpIP4b = netip.MustParseAddr("198.51.100.3")
	kpIP6  = netip.MustParseAddr("2001:db8:5::2")
)

// requirePrivileges skips the test unless it can create network namespaces
// and run nft.
func requirePrivileges(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		hostdeps.Skip(tb, "skipping: needs root to create network namespaces and program nftables (run as root, or in CI)")
	}
	hostdeps.Require(tb, "nft", "ip", "ping")
}

func run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace with lo up, deleted in Cleanup, and
// returns its name; its path is /run/netns/NAME.
func newNetns(tb testing.TB, role string) string {
	tb.Helper()
	name := fmt.Sprintf("bth-np-%06x-%s", rand.Uint32()&0xffffff, role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		hostdeps.Skip(tb, "skipping: cannot create a network namespace (%v: %s)", err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(tb, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func nsPath(name string) string { return "/run/netns/" + name }

// inNetns runs fn on a fresh OS thread that has joined the network namespace
// at path, to open sockets there. The thread is never unlocked: Go then
// discards it when the goroutine ends, rather than reusing a thread in the
// wrong namespace.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("opening network namespace: %w", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// lab is a node namespace, a client namespace routed to the service
// addresses through the node, and a pod namespace routed through the node.
type lab struct {
	node, client, pod string
	fwd               *Forwarder
	ctx               context.Context
}

func newLab(t *testing.T) *lab {
	requirePrivileges(t)
	l := &lab{node: newNetns(t, "n"), client: newNetns(t, "c"), pod: newNetns(t, "p")}
	// Deleting the namespaces removes the veth pairs too.
	run(t, "ip", "-n", l.node, "link", "add", "vn", "type", "veth", "peer", "name", "vc", "netns", l.client)
	run(t, "ip", "-n", l.node, "link", "add", "vq", "type", "veth", "peer", "name", "vp", "netns", l.pod)
	for _, c := range [][]string{
		{"-n", l.node, "addr", "add", nodeIP4.String() + "/24", "dev", "vn"},
		{"-n", l.node, "addr", "add", nodeIP6.String() + "/64", "dev", "vn", "nodad"},
		{"-n", l.node, "link", "set", "vn", "up"},
		{"-n", l.node, "addr", "add", podGW4.String() + "/24", "dev", "vq"},
		{"-n", l.node, "addr", "add", podGW6.String() + "/64", "dev", "vq", "nodad"},
		{"-n", l.node, "link", "set", "vq", "up"},
		{"-n", l.client, "addr", "add", clientIP4.String() + "/24", "dev", "vc"},
		{"-n", l.client, "addr", "add", clientIP6.String() + "/64", "dev", "vc", "nodad"},
		{"-n", l.client, "link", "set", "vc", "up"},
		{"-n", l.client, "route", "add", "198.51.100.0/24", "via", nodeIP4.String()},
		{"-n", l.client, "route", "add", "2001:db8:5::/64", "via", nodeIP6.String()},
		{"-n", l.pod, "addr", "add", podIP4.String() + "/24", "dev", "vp"},
		{"-n", l.pod, "addr", "add", podIP6.String() + "/64", "dev", "vp", "nodad"},
		{"-n", l.pod, "link", "set", "vp", "up"},
		{"-n", l.pod, "route", "add", "default", "via", podGW4.String()},
		{"-n", l.pod, "-6", "route", "add", "default", "via", podGW6.String()},
		// Like a real node, the node has default routes; without a route
		// its own connections to the service addresses fail before the
		// output hook.
		{"-n", l.node, "route", "add", "default", "via", clientIP4.String()},
		{"-n", l.node, "-6", "route", "add", "default", "via", clientIP6.String()},
	} {
		run(t, append([]string{"ip"}, c...)...)
	}
	// The node routes between the client and the pod.
	run(t, "ip", "netns", "exec", l.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// A fresh namespace's first IPv6 exchange over a veth can take over a
	// second (neighbour discovery), longer than the probes wait; get it
	// done before they start.
	for _, a := range []netip.Addr{clientIP4, clientIP6, podIP4, podIP6} {
		run(t, "ip", "netns", "exec", l.node, "ping", "-c1", "-W5", a.String())
	}
	nft, err := NewNFT(NFTOptions{Netns: nsPath(l.node)})
	if err != nil {
		t.Fatalf("NewNFT: %v", err)
	}
	_, l.ctx = ktesting.NewTestContext(t)
	l.fwd = New(nft)
	return l
}

// nftFile loads an nft script into the node namespace.
func (l *lab) nftFile(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\n%s", err, out, script)
	}
}

// kubeProxyStandIn is what kube-proxy's iptables and nftables modes do for
// a NodePort: a NAT chain at dstnat, in prerouting and output, that DNATs
// traffic to a local address and the NodePort to a pod. Nothing listens on
// the node for the NodePort but a decoy, which must not answer.
const kubeProxyStandIn = `
table ip kubeproxy {
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump nodeports; }
	chain output { type nat hook output priority -100; policy accept; jump nodeports; }
	chain nodeports {
		fib daddr type local tcp dport 30180 dnat to 198.19.0.2:8080
		fib daddr type local udp dport 30153 dnat to 198.19.0.2:5353
	}
}
table ip6 kubeproxy {
	chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump nodeports; }
	chain output { type nat hook output priority -100; policy accept; jump nodeports; }
	chain nodeports {
		fib daddr type local tcp dport 30180 dnat to [2001:db8:2::2]:8080
		fib daddr type local udp dport 30153 dnat to [2001:db8:2::2]:5353
	}
}
`

// nft runs the nft binary by hand in the node namespace.
func (l *lab) nft(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", l.node, "nft"}, args...)...)
}

// serveTCP listens on addr in namespace ns and answers each connection with
// "PORT REMOTE-ADDRESS", so the client learns which listener it reached
// (a NodePort on the node, or a pod's port) and which source address the
// server saw.
func serveTCP(t *testing.T, ns string, addr netip.AddrPort) {
	var ln net.Listener
	if err := inNetns(nsPath(ns), func() (err error) { ln, err = net.Listen("tcp", addr.String()); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%d %s", addr.Port(), c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap())
			c.Close()
		}
	}()
}

// serveUDP is serveTCP for UDP datagrams.
func serveUDP(t *testing.T, ns string, addr netip.AddrPort) {
	var pc net.PacketConn
	if err := inNetns(nsPath(ns), func() (err error) { pc, err = net.ListenPacket("udp", addr.String()); return err }); err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			reply := fmt.Sprintf("%d %s", addr.Port(), from.(*net.UDPAddr).AddrPort().Addr().Unmap())
			_, _ = pc.WriteTo([]byte(reply), from)
		}
	}()
}

// ask connects from namespace ns to addr and returns the server's answer.
// Its sockets are connected, so an answer also proves that the replies came
// from addr itself: TCP resets a SYN-ACK from any other address or port,
// and a connected UDP socket drops datagrams from any other peer.
func ask(ns, network string, addr netip.AddrPort) (string, error) {
	return askFrom(ns, network, netip.Addr{}, addr)
}

type probe struct {
	network string
	addr    netip.AddrPort
	want    string // the answer; "" means the connection must fail
}

func (l *lab) probe(t *testing.T, from string, probes ...probe) {
	t.Helper()
	for _, p := range probes {
		got, err := ask(from, p.network, p.addr)
		switch {
		case p.want == "" && err == nil:
			t.Errorf("%s %s from %s: answered %q, want no answer", p.network, p.addr, from, got)
		case p.want != "" && err != nil:
			t.Errorf("%s %s from %s: %v, want %q", p.network, p.addr, from, err, p.want)
		case p.want != "" && got != p.want:
			t.Errorf("%s %s from %s: answered %q, want %q", p.network, p.addr, from, got, p.want)
		}
	}
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func TestForwardingInNetns(t *testing.T) {
	l := newLab(t)
	// NodePorts served by the node itself (as with IPVS or a socket-level
	// proxy): Berth's fallback DNAT binds the connection.
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30080), ap(nodeIP4, 30081), ap(nodeIP6, 30080)} {
		serveTCP(t, l.node, a)
	}
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30053), ap(nodeIP6, 30053)} {
		serveUDP(t, l.node, a)
	}
	// NodePorts 30180 and 30153 are the kube-proxy stand-in's, DNATed to the
	// pod; the listeners on the node are decoys that answer "30180 ..." or
	// "30153 ..." if the stand-in was bypassed, as it was with the old
	// table (see the last subtest).
	l.nftFile(t, kubeProxyStandIn)
	for _, a := range []netip.AddrPort{ap(podIP4, 8080), ap(podIP6, 8080)} {
		serveTCP(t, l.pod, a)
	}
	for _, a := range []netip.AddrPort{ap(podIP4, 5353), ap(podIP6, 5353)} {
		serveUDP(t, l.pod, a)
	}
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30180), ap(nodeIP6, 30180)} {
		serveTCP(t, l.node, a)
	}
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30153), ap(nodeIP6, 30153)} {
		serveUDP(t, l.node, a)
	}
	// A table of someone else's, which must survive everything.
	l.nftFile(t, `table inet other {
	set s { type ipv4_addr; elements = { 192.0.2.1 }; }
	chain c { type filter hook input priority 0; policy accept; ip saddr @s accept; }
}
`)
	other := l.nft(t, "list", "table", "inet", "other")

	rules := []Rule{
		{Address: svcIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30080},
		{Address: svcIP4, Protocol: TCP, Port: 8080, NodeIP: nodeIP4, NodePort: 30081},
		{Address: svcIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30053},
		{Address: svcIP4, Protocol: SCTP, Port: 9000, NodeIP: nodeIP4, NodePort: 30900},
		{Address: svcIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30080},
		{Address: svcIP6, Protocol: UDP, Port: 53, NodeIP: nodeIP6, NodePort: 30053},
		{Address: kpIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30180},
		{Address: kpIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30153},
		// A second address of the same Service: replies must come from
		// whichever address the client used.
		{Address: kpIP4b, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30180},
		{Address: kpIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30180},
		{Address: kpIP6, Protocol: UDP, Port: 53, NodeIP: nodeIP6, NodePort: 30153},
	}
	local := []probe{
		{"tcp", ap(svcIP4, 80), "30080 " + clientIP4.String()},
		{"tcp", ap(svcIP4, 8080), "30081 " + clientIP4.String()},
		{"udp", ap(svcIP4, 53), "30053 " + clientIP4.String()},
		{"tcp", ap(svcIP6, 80), "30080 " + clientIP6.String()},
		{"udp", ap(svcIP6, 53), "30053 " + clientIP6.String()},
	}
	// The pod answers, and sees the client's own address.
	proxied := []probe{
		{"tcp", ap(kpIP4, 80), "8080 " + clientIP4.String()},
		{"udp", ap(kpIP4, 53), "5353 " + clientIP4.String()},
		{"tcp", ap(kpIP4b, 80), "8080 " + clientIP4.String()},
		{"tcp", ap(kpIP6, 80), "8080 " + clientIP6.String()},
		{"udp", ap(kpIP6, 53), "5353 " + clientIP6.String()},
	}
	all := append(slices.Clip(local), proxied...)

	t.Run("forwards with the client's source address", func(t *testing.T) {
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 80), ""}) // nothing before Sync
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		t.Logf("table after Sync:\n%s", l.nft(t, "list", "table", "inet", "berth"))
		l.probe(t, l.client, local...)
	})
	t.Run("kube-proxy's NodePort DNAT still applies", func(t *testing.T) {
		l.probe(t, l.client, proxied...)
	})
	t.Run("output chains forward the node's own traffic", func(t *testing.T) {
		l.probe(t, l.node,
			probe{"tcp", ap(svcIP4, 80), "30080 " + nodeIP4.String()},
			probe{"tcp", ap(svcIP6, 80), "30080 " + nodeIP6.String()},
			probe{"udp", ap(svcIP4, 53), "30053 " + nodeIP4.String()},
			probe{"tcp", ap(kpIP4, 80), "8080 " + nodeIP4.String()},
			probe{"tcp", ap(kpIP6, 80), "8080 " + nodeIP6.String()},
			probe{"udp", ap(kpIP4, 53), "5353 " + nodeIP4.String()},
			probe{"udp", ap(kpIP6, 53), "5353 " + nodeIP6.String()})
	})
	t.Run("other traffic to the node is untouched", func(t *testing.T) {
		l.probe(t, l.client,
			probe{"tcp", ap(nodeIP4, 30080), "30080 " + clientIP4.String()},
			probe{"tcp", ap(svcIP4, 81), ""},
			probe{"tcp", ap(nodeIP4, 80), ""})
	})
	t.Run("removing a rule stops forwarding", func(t *testing.T) {
		if err := l.fwd.Sync(l.ctx, append(rules[:1:1], rules[2:]...)); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 8080), ""}, local[0], local[2], proxied[0])
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, all...)
	})
	t.Run("a flushed table is detected and repaired", func(t *testing.T) {
		if drifted, err := l.fwd.Check(l.ctx); err != nil || drifted {
			t.Fatalf("Check before flush = %v, %v; want false, nil", drifted, err)
		}
		l.nft(t, "flush", "table", "inet", "berth")
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 80), ""})
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after flush = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, all...)
		if drifted, err := l.fwd.Check(l.ctx); err != nil || drifted {
			t.Fatalf("Check after repair = %v, %v; want false, nil", drifted, err)
		}
	})
	t.Run("elements changed by hand are detected", func(t *testing.T) {
		l.nft(t, "delete", "element", "inet", "berth", portMap6, "{ 2001:db8:5::1 . udp . 53 }")
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after delete = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.nft(t, "add", "element", "inet", "berth", portMap4, "{ 198.51.100.1 . tcp . 81 : 30080 }")
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after add = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if out := l.nft(t, "list", "map", "inet", "berth", portMap4); strings.Contains(out, ". 81 :") {
			t.Errorf("foreign element survived the rewrite:\n%s", out)
		}
		l.nft(t, "delete", "element", "inet", "berth", nodeMap4, "{ 198.51.100.2 }")
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after node element delete = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, all...)
	})
	t.Run("a deleted table is rewritten by the next incremental Sync", func(t *testing.T) {
		l.nft(t, "delete", "table", "inet", "berth")
		if err := l.fwd.Sync(l.ctx, rules[:1]); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, all[0], probe{"tcp", ap(svcIP4, 8080), ""}, probe{"tcp", ap(kpIP4, 80), ""})
	})
	t.Run("Cleanup removes the table and nothing else", func(t *testing.T) {
		if err := l.fwd.Cleanup(l.ctx); err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		if out, err := exec.Command("ip", "netns", "exec", l.node, "nft", "list", "table", "inet", "berth").CombinedOutput(); err == nil {
			t.Errorf("table still there after Cleanup:\n%s", out)
		}
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 80), ""})
		if err := l.fwd.Cleanup(l.ctx); err != nil {
			t.Errorf("second Cleanup: %v", err)
		}
	})
	if got := l.nft(t, "list", "table", "inet", "other"); got != other {
		t.Errorf("table inet other changed:\nbefore:\n%s\nafter:\n%s", other, got)
	}
	t.Run("the old table (DNAT at dstnat+10) bypassed kube-proxy", func(t *testing.T) {
		// What this package wrote before: the stand-in's NAT chain does not
		// match the load-balancer address, the old chain DNATs to the
		// NodePort, and netfilter consults no further NAT chain, so the
		// decoy on the node answers instead of the pod.
		l.nftFile(t, `table inet oldberth {
	chain prerouting { type nat hook prerouting priority dstnat + 10; policy accept;
		ip daddr 198.51.100.2 tcp dport 80 dnat ip to 198.18.0.1:30180
	}
}
`)
		l.probe(t, l.client, probe{"tcp", ap(kpIP4, 80), "30180 " + clientIP4.String()})
	})
}
