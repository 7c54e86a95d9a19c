package nodeport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// Second client addresses, outside every allowed range of the tests.
var (
	otherIP4 = netip.MustParseAddr("198.18.0.3")
	otherIP6 = netip.MustParseAddr("2001:db8:1::3")
)

// askFrom is ask with the client's source address from, if valid.
func askFrom(ns, network string, from netip.Addr, addr netip.AddrPort) (string, error) {
	var c net.Conn
	err := inNetns(nsPath(ns), func() (err error) {
		d := net.Dialer{Timeout: time.Second}
		switch {
		case !from.IsValid():
		case network == "udp":
			d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		default:
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(from, 0))
		}
		c, err = d.Dial(network, addr.String())
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

// addClientAddrs gives the client of l its second addresses.
func addClientAddrs(t *testing.T, l *lab) {
	run(t, "ip", "-n", l.client, "addr", "add", otherIP4.String()+"/24", "dev", "vc")
	run(t, "ip", "-n", l.client, "addr", "add", otherIP6.String()+"/64", "dev", "vc", "nodad")
	run(t, "ip", "netns", "exec", l.node, "ping", "-c1", "-W5", otherIP6.String())
}

// TestSourceRangesInNetns sends real traffic from an allowed and a refused
// client address, for IPv4 and IPv6, TCP and UDP, to NodePorts served by a
// local socket and by the kube-proxy stand-in (DNAT to a pod): the refused
// client gets no answer, the allowed one does, and an unrestricted rule
// still answers both. A restricted rule with no range of its family
// refuses everyone; lifting the restriction lets everyone in again.
func TestSourceRangesInNetns(t *testing.T) {
	l := newLab(t)
	addClientAddrs(t, l)
	l.nftFile(t, kubeProxyStandIn)
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30080), ap(nodeIP6, 30080), ap(nodeIP4, 30081)} {
		serveTCP(t, l.node, a)
	}
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30053), ap(nodeIP6, 30053)} {
		serveUDP(t, l.node, a)
	}
	serveTCP(t, l.pod, ap(podIP4, 8080))
	serveUDP(t, l.pod, ap(podIP4, 5353))
	allowed := []netip.Prefix{netip.PrefixFrom(clientIP4, 32), netip.PrefixFrom(clientIP6, 128)}
	restrict := func(r Rule, ps []netip.Prefix) Rule { r.Restricted, r.SourceRanges = true, ps; return r }
	rules := func(ps []netip.Prefix, on bool) []Rule {
		rs := []Rule{
			{Address: svcIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30080},
			{Address: svcIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30053},
			{Address: svcIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30080},
			{Address: svcIP6, Protocol: UDP, Port: 53, NodeIP: nodeIP6, NodePort: 30053},
			{Address: kpIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30180},
			{Address: kpIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30153},
		}
		if on {
			for i := range rs {
				rs[i] = restrict(rs[i], ps)
			}
		}
		// Another Service on the same address, not restricted.
		return append(rs, Rule{Address: svcIP4, Protocol: TCP, Port: 8080, NodeIP: nodeIP4, NodePort: 30081})
	}
	type want struct {
		network string
		addr    netip.AddrPort
		from    netip.Addr
		answer  string // "" for no answer
	}
	for _, stage := range []struct {
		name  string
		rules []Rule
		wants []want
	}{
		{"restricted", rules(allowed, true), []want{
			{"tcp", ap(svcIP4, 80), clientIP4, "30080 198.18.0.2"},
			{"tcp", ap(svcIP4, 80), otherIP4, ""},
			{"udp", ap(svcIP4, 53), clientIP4, "30053 198.18.0.2"},
			{"udp", ap(svcIP4, 53), otherIP4, ""},
			{"tcp", ap(svcIP6, 80), clientIP6, "30080 2001:db8:1::2"},
			{"tcp", ap(svcIP6, 80), otherIP6, ""},
			{"udp", ap(svcIP6, 53), clientIP6, "30053 2001:db8:1::2"},
			{"udp", ap(svcIP6, 53), otherIP6, ""},
			{"tcp", ap(kpIP4, 80), clientIP4, "8080 198.18.0.2"},
			{"tcp", ap(kpIP4, 80), otherIP4, ""},
			{"udp", ap(kpIP4, 53), clientIP4, "5353 198.18.0.2"},
			{"udp", ap(kpIP4, 53), otherIP4, ""},
			{"tcp", ap(svcIP4, 8080), otherIP4, "30081 198.18.0.3"},
		}},
		// Only IPv6 ranges: the IPv4 rules refuse everyone.
		{"IPv6 ranges only", rules(allowed[1:], true), []want{
			{"tcp", ap(svcIP4, 80), clientIP4, ""},
			{"tcp", ap(svcIP6, 80), clientIP6, "30080 2001:db8:1::2"},
			{"tcp", ap(svcIP6, 80), otherIP6, ""},
		}},
		{"unrestricted", rules(nil, false), []want{
			{"tcp", ap(svcIP4, 80), otherIP4, "30080 198.18.0.3"},
			{"udp", ap(svcIP6, 53), otherIP6, "30053 2001:db8:1::3"},
			{"tcp", ap(kpIP4, 80), otherIP4, "8080 198.18.0.3"},
		}},
	} {
		if err := l.fwd.Sync(l.ctx, stage.rules); err != nil {
			t.Fatal(err)
		}
		for _, w := range stage.wants {
			got, err := askFrom(l.client, w.network, w.from, w.addr)
			switch {
			case w.answer == "" && err == nil:
				t.Errorf("%s: %s %s from %s answered %q, want no answer", stage.name, w.network, w.addr, w.from, got)
			case w.answer != "" && got != w.answer:
				t.Errorf("%s: %s %s from %s: %q, %v; want %q", stage.name, w.network, w.addr, w.from, got, err, w.answer)
			}
		}
	}
}

// TestRewriteOnlyForwardedAddresses checks that the rewrite touches only
// traffic for a forwarded address: the node's own connection to another
// host on a forwarded port, and a client's connection to the node's own
// address on a forwarded port, reach their real destination.
func TestRewriteOnlyForwardedAddresses(t *testing.T) {
	l := newLab(t)
	serveTCP(t, l.node, ap(nodeIP4, 30080))
	serveTCP(t, l.node, ap(nodeIP4, 80))
	serveTCP(t, l.client, ap(clientIP4, 80))
	serveTCP(t, l.client, ap(clientIP6, 80))
	serveUDP(t, l.client, ap(clientIP4, 53))
	rules := []Rule{
		{Address: svcIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30080},
		{Address: svcIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30080},
		{Address: svcIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30080},
	}
	if err := l.fwd.Sync(l.ctx, rules); err != nil {
		t.Fatal(err)
	}
	l.probe(t, l.node, probe{"tcp", ap(clientIP4, 80), "80 198.18.0.1"}, probe{"tcp", ap(clientIP6, 80), "80 2001:db8:1::1"},
		probe{"udp", ap(clientIP4, 53), "53 198.18.0.1"},
		// The node's own connection to a forwarded address is rewritten.
		probe{"tcp", ap(svcIP4, 80), "30080 198.18.0.1"})
	l.probe(t, l.client, probe{"tcp", ap(nodeIP4, 80), "80 198.18.0.2"}, probe{"tcp", ap(svcIP4, 80), "30080 198.18.0.2"})
}

// TestMembersInNetns checks that the membership port answers node
// addresses only: a real TCP connection and UDP datagram from a node
// address are accepted, from another address dropped, and port 0 lifts
// the restriction. So does the table of a speaker that forwards nothing
// (NewMembersOnly), which, as nft lists it, has no other chain.
func TestMembersInNetns(t *testing.T) {
	for _, membersOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("membersOnly=%v", membersOnly), func(t *testing.T) {
			l := newLab(t)
			if membersOnly {
				l.fwd = NewMembersOnly(l.fwd.nft)
				if err := l.fwd.Sync(l.ctx, []Rule{mixed[0]}); err == nil {
					t.Error("a members-only table took a forwarding rule")
				}
			}
			testMembers(t, l)
			if !membersOnly {
				return
			}
			listed := listTable(t, l.node)
			if n := strings.Count(listed, "\tchain "); n != 1 || !strings.Contains(listed, "chain "+memberInput+" {") {
				t.Errorf("nft lists %d chains; want only %s:\n%s", n, memberInput, listed)
			}
			if drifted, err := l.fwd.Check(l.ctx); err != nil || drifted {
				t.Errorf("Check = %v, %v; want no drift", drifted, err)
			}
		})
	}
}

func testMembers(t *testing.T, l *lab) {
	addClientAddrs(t, l)
	for _, a := range []netip.AddrPort{ap(nodeIP4, 7946), ap(nodeIP6, 7946)} {
		serveTCP(t, l.node, a)
		serveUDP(t, l.node, a)
	}
	serveTCP(t, l.node, ap(nodeIP4, 7947))
	if err := l.fwd.Sync(l.ctx, nil); err != nil {
		t.Fatal(err)
	}
	members := MembersPort{Port: 7946, Protocols: []Protocol{TCP, UDP}}
	if err := l.fwd.Members(l.ctx, members, []netip.Addr{nodeIP4, clientIP4, clientIP6}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		network string
		from    netip.Addr
		to      netip.AddrPort
		want    string
	}{
		{"tcp", clientIP4, ap(nodeIP4, 7946), "7946 198.18.0.2"},
		{"udp", clientIP4, ap(nodeIP4, 7946), "7946 198.18.0.2"},
		{"tcp", clientIP6, ap(nodeIP6, 7946), "7946 2001:db8:1::2"},
		{"udp", clientIP6, ap(nodeIP6, 7946), "7946 2001:db8:1::2"},
		{"tcp", otherIP4, ap(nodeIP4, 7946), ""},
		{"udp", otherIP4, ap(nodeIP4, 7946), ""},
		{"tcp", otherIP6, ap(nodeIP6, 7946), ""},
		{"udp", otherIP6, ap(nodeIP6, 7946), ""},
		{"tcp", otherIP4, ap(nodeIP4, 7947), "7947 198.18.0.3"}, // another port
	} {
		got, err := askFrom(l.client, c.network, c.from, c.to)
		if (c.want == "") != (err != nil) || got != c.want {
			t.Errorf("%s %s from %s: %q, %v; want %q", c.network, c.to, c.from, got, err, c.want)
		}
	}
	// The node itself (its own address, over loopback) is a member.
	l.probe(t, l.node, probe{"tcp", ap(nodeIP4, 7946), "7946 198.18.0.1"})
	if err := l.fwd.Members(l.ctx, MembersPort{}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := askFrom(l.client, "tcp", otherIP4, ap(nodeIP4, 7946)); got != "7946 198.18.0.3" {
		t.Errorf("without restriction: %q, %v; want an answer", got, err)
	}
}

// refusing is an NFT whose kernel refuses any batch holding an element of
// address bad, as a kernel refuses an element it cannot store.
type refusing struct {
	NFT
	bad  netip.Addr
	runs int
}

func (r *refusing) Run(ctx context.Context, tx *Transaction) error {
	r.runs++
	for _, o := range tx.ops {
		if (o.kind == opAddElement || o.kind == opDeleteElement) && o.elem.addr == r.bad {
			return fmt.Errorf("sending %d operations over netlink: %w", tx.NumOperations(), errors.New("injected refusal"))
		}
	}
	return r.NFT.Run(ctx, tx)
}

// TestRefusedRuleIsolated checks that rules the kernel refuses leave every
// other rule programmed, are reported, and are tried again by the next
// Sync, on the first Sync (whole table) and on a later one (element
// batch).
func TestRefusedRuleIsolated(t *testing.T) {
	f, rec, ns, ctx := newNFTForwarder(t, "x")
	ref := &refusing{NFT: rec.NFT, bad: netip.MustParseAddr("198.51.100.2")}
	rec.NFT = ref
	good := []Rule{mixed[0], mixed[1], mixed[4], mixed[5], mixed[6]}
	for _, step := range []string{"first sync", "later sync"} {
		if step == "later sync" {
			if err := f.Sync(ctx, good); err != nil {
				t.Fatal(err)
			}
		}
		err := f.Sync(ctx, mixed)
		if !IsRefused(err) || !strings.Contains(err.Error(), "198.51.100.2:53/UDP") || !strings.Contains(err.Error(), "injected refusal") {
			t.Fatalf("%s: Sync = %v, want a refusal naming 198.51.100.2:53/UDP", step, err)
		}
		expectElements(t, ns, good)
		if got := f.NotProgrammed(); got != 2 {
			t.Errorf("%s: NotProgrammed = %d, want 2", step, got)
		}
		if drifted, err := f.Check(ctx); err != nil || drifted {
			t.Errorf("%s: Check = %v, %v; want no drift", step, drifted, err)
		}
	}
	ref.bad = netip.Addr{}
	if err := f.Sync(ctx, mixed); err != nil {
		t.Fatalf("Sync once the kernel accepts: %v", err)
	}
	expectElements(t, ns, mixed)
	if f.NotProgrammed() != 0 {
		t.Errorf("NotProgrammed = %d, want 0", f.NotProgrammed())
	}
	t.Logf("%d batches in all", ref.runs)
}

// TestSCTPSourceRangesInNetns checks source ranges for SCTP with
// hand-made INITs (see TestSCTPInNetns): from a refused client address the
// INIT never reaches the node's NodePort, from the allowed one it does.
func TestSCTPSourceRangesInNetns(t *testing.T) {
	l := newLab(t)
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_sctp_timeout_cookie_wait"); err != nil {
		t.Skipf("skipping: the kernel's conntrack has no SCTP support (CONFIG_NF_CT_PROTO_SCTP): %v", err)
	}
	addClientAddrs(t, l)
	allowed := []netip.Prefix{netip.PrefixFrom(clientIP4, 32), netip.PrefixFrom(clientIP6, 128)}
	rules := []Rule{
		{Address: svcIP4, Protocol: SCTP, Port: 9000, NodeIP: nodeIP4, NodePort: 30900, Restricted: true, SourceRanges: allowed},
		{Address: svcIP6, Protocol: SCTP, Port: 9000, NodeIP: nodeIP6, NodePort: 30900, Restricted: true, SourceRanges: allowed},
	}
	if err := l.fwd.Sync(l.ctx, rules); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	for i, tc := range []struct{ svc, allowed, refused, node netip.Addr }{
		{svcIP4, clientIP4, otherIP4, nodeIP4},
		{svcIP6, clientIP6, otherIP6, nodeIP6},
	} {
		t.Run(tc.svc.String(), func(t *testing.T) {
			node := listenSCTPRaw(t, l.node, tc.node)
			for j, from := range []netip.Addr{tc.refused, tc.allowed} {
				client := listenSCTPRaw(t, l.client, from)
				port := uint16(41000 + 2*i + j)
				if _, err := client.WriteTo(sctpPacket(sctpInit, port, 9000, 0, 0x3000), &net.IPAddr{IP: tc.svc.AsSlice()}); err != nil {
					t.Fatalf("sending INIT from %s: %v", from, err)
				}
				got, h, err := readSCTP(node)
				switch {
				case from == tc.refused && err == nil:
					t.Errorf("INIT from refused %s reached the node (%+v from %s)", from, h, got)
				case from == tc.allowed && (err != nil || got != from || h.dst != 30900):
					t.Errorf("INIT from allowed %s: %+v from %s, %v; want it at NodePort 30900", from, h, got, err)
				}
			}
		})
	}
}
