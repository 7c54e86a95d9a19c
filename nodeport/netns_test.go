package nodeport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"
)

// Addresses of the two-namespace lab: a client and a node joined by a veth.
var (
	nodeIP4   = netip.MustParseAddr("198.18.0.1")
	clientIP4 = netip.MustParseAddr("198.18.0.2")
	nodeIP6   = netip.MustParseAddr("2001:db8:1::1")
	clientIP6 = netip.MustParseAddr("2001:db8:1::2")
	svcIP4    = netip.MustParseAddr("198.51.100.1")
	svcIP6    = netip.MustParseAddr("2001:db8:5::1")
)

// requirePrivileges skips the test unless it can create network namespaces
// and run nft.
func requirePrivileges(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("skipping: needs root to create network namespaces and program nftables (run as root, or in CI)")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("skipping: %s not found; install the Debian packages nftables and iproute2", bin)
		}
	}
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
		tb.Skipf("skipping: cannot create a network namespace (%v: %s)", err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	run(tb, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func nsPath(name string) string { return "/run/netns/" + name }

// lab is a node namespace and a client namespace routed to the service
// addresses through the node.
type lab struct {
	node, client string
	fwd          *Forwarder
	ctx          context.Context
}

func newLab(t *testing.T) *lab {
	requirePrivileges(t)
	l := &lab{node: newNetns(t, "n"), client: newNetns(t, "c")}
	// Deleting the namespaces removes the veth pair too.
	run(t, "ip", "-n", l.node, "link", "add", "vn", "type", "veth", "peer", "name", "vc", "netns", l.client)
	for _, c := range [][]string{
		{"-n", l.node, "addr", "add", nodeIP4.String() + "/24", "dev", "vn"},
		{"-n", l.node, "addr", "add", nodeIP6.String() + "/64", "dev", "vn", "nodad"},
		{"-n", l.node, "link", "set", "vn", "up"},
		{"-n", l.client, "addr", "add", clientIP4.String() + "/24", "dev", "vc"},
		{"-n", l.client, "addr", "add", clientIP6.String() + "/64", "dev", "vc", "nodad"},
		{"-n", l.client, "link", "set", "vc", "up"},
		{"-n", l.client, "route", "add", "198.51.100.0/24", "via", nodeIP4.String()},
		{"-n", l.client, "route", "add", "2001:db8:5::/64", "via", nodeIP6.String()},
		// Like a real node, the node has default routes; without a route
		// its own connections to the service addresses fail before the
		// output hook.
		{"-n", l.node, "route", "add", "default", "via", clientIP4.String()},
		{"-n", l.node, "-6", "route", "add", "default", "via", clientIP6.String()},
	} {
		run(t, append([]string{"ip"}, c...)...)
	}
	nft, err := NewNFT(NFTOptions{Netns: nsPath(l.node)})
	if err != nil {
		t.Fatalf("NewNFT: %v", err)
	}
	_, l.ctx = ktesting.NewTestContext(t)
	l.fwd = New(nft)
	return l
}

// nft runs the nft binary by hand in the node namespace.
func (l *lab) nft(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, append([]string{"ip", "netns", "exec", l.node, "nft"}, args...)...)
}

// serveTCP listens on addr in namespace ns and answers each connection with
// "PORT REMOTE-ADDRESS", so the client learns which NodePort it reached and
// which source address the server saw.
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
func ask(ns, network string, addr netip.AddrPort) (string, error) {
	var c net.Conn
	err := inNetns(nsPath(ns), func() (err error) {
		c, err = net.DialTimeout(network, addr.String(), time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if network == "udp" {
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
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
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30080), ap(nodeIP4, 30081), ap(nodeIP6, 30080)} {
		serveTCP(t, l.node, a)
	}
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30053), ap(nodeIP6, 30053)} {
		serveUDP(t, l.node, a)
	}
	// A table of someone else's, which must survive everything.
	cmd := exec.Command("ip", "netns", "exec", l.node, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet other {
	set s { type ipv4_addr; elements = { 192.0.2.1 }; }
	chain c { type filter hook input priority 0; policy accept; ip saddr @s accept; }
}
`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("creating table inet other: %v\n%s", err, out)
	}
	other := l.nft(t, "list", "table", "inet", "other")

	rules := []Rule{
		{Address: svcIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30080},
		{Address: svcIP4, Protocol: TCP, Port: 8080, NodeIP: nodeIP4, NodePort: 30081},
		{Address: svcIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30053},
		{Address: svcIP4, Protocol: SCTP, Port: 9000, NodeIP: nodeIP4, NodePort: 30900},
		{Address: svcIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30080},
		{Address: svcIP6, Protocol: UDP, Port: 53, NodeIP: nodeIP6, NodePort: 30053},
	}
	all := []probe{
		{"tcp", ap(svcIP4, 80), "30080 " + clientIP4.String()},
		{"tcp", ap(svcIP4, 8080), "30081 " + clientIP4.String()},
		{"udp", ap(svcIP4, 53), "30053 " + clientIP4.String()},
		{"tcp", ap(svcIP6, 80), "30080 " + clientIP6.String()},
		{"udp", ap(svcIP6, 53), "30053 " + clientIP6.String()},
	}

	t.Run("forwards with the client's source address", func(t *testing.T) {
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 80), ""}) // nothing before Sync
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		t.Logf("table after Sync:\n%s", l.nft(t, "list", "table", "inet", "berth"))
		l.probe(t, l.client, all...)
	})
	t.Run("output chain forwards the node's own traffic", func(t *testing.T) {
		l.probe(t, l.node, probe{"tcp", ap(svcIP4, 80), "30080 " + nodeIP4.String()},
			probe{"tcp", ap(svcIP6, 80), "30080 " + nodeIP6.String()})
	})
	t.Run("removing a rule stops forwarding", func(t *testing.T) {
		if err := l.fwd.Sync(l.ctx, append(rules[:1:1], rules[2:]...)); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 8080), ""}, all[0], all[2])
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
		l.nft(t, "delete", "element", "inet", "berth", "svc6", "{ 2001:db8:5::1 . udp . 53 }")
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after delete = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.nft(t, "add", "element", "inet", "berth", "svc4", "{ 198.51.100.7 . tcp . 80 : 198.18.0.1 . 30080 }")
		if drifted, err := l.fwd.Check(l.ctx); err != nil || !drifted {
			t.Fatalf("Check after add = %v, %v; want true, nil", drifted, err)
		}
		if err := l.fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if out := l.nft(t, "list", "map", "inet", "berth", "svc4"); strings.Contains(out, "198.51.100.7") {
			t.Errorf("foreign element survived the rewrite:\n%s", out)
		}
		l.probe(t, l.client, all...)
	})
	t.Run("a deleted table is rewritten by the next incremental Sync", func(t *testing.T) {
		l.nft(t, "delete", "table", "inet", "berth")
		if err := l.fwd.Sync(l.ctx, rules[:1]); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		l.probe(t, l.client, all[0], probe{"tcp", ap(svcIP4, 8080), ""})
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
}
