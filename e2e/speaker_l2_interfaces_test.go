package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/l2"
)

// TestSpeakerL2Interfaces gives every node a second interface, eth1, on a
// second segment with a client of its own, and checks that a
// BerthL2Advertisement's interfaces decide where the owner answers: only on eth1
// for ["eth1"], only on eth0 for the pattern ["*0"]; ARP and NDP alike.
func TestSpeakerL2Interfaces(t *testing.T) {
	l := newL2Lab(t, 3)
	seg := l.secondSegment(t)
	l.l2Pool(t, v1alpha1.BerthL2AdvertisementSpec{Interfaces: []string{"eth1"}})
	l.e.namespace(t, "ifs", nil)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n)
	}
	l.waitMembers(t, 3)
	v4s, v6s := l.dualStack(t, "ifs", "s", 1)
	addrs := []netip.Addr{v4s[0], v6s[0]}
	if _, err := exec.LookPath("ndisc6"); err != nil {
		t.Logf("ndisc6 not found (Debian package ndisc6): IPv6 not checked")
		addrs = addrs[:1]
	}
	for _, a := range addrs {
		seg.route(t, a)
	}
	owner := l.byName(l2.Owner(v4s[0], []string{"node1", "node2", "node3"}))
	owner6 := l.byName(l2.Owner(v6s[0], []string{"node1", "node2", "node3"}))

	check := func(t *testing.T, iface string) {
		for _, a := range addrs {
			o := owner
			if a.Is6() {
				o = owner6
			}
			wantMAC := strings.ToLower(strings.TrimSpace(mustExec(t, o.host, "cat", "/sys/class/net/"+iface+"/address")))
			on, off := seg.client, l.client.Netns
			if iface == "eth0" {
				on, off = off, on
			}
			d := poll(t, settle, fmt.Sprintf("%s answered by %s's %s only", a, o.name, iface), func() error {
				got := whoHas(on, a)
				if len(got) == 0 || slices.ContainsFunc(got, func(m string) bool { return m != wantMAC }) {
					return fmt.Errorf("answers on the %s segment: %v, want only %s", iface, got, wantMAC)
				}
				return nil
			})
			if got := whoHas(off, a); len(got) != 0 {
				t.Errorf("%s: answered on the other segment too, by %v", a, got)
			}
			t.Logf("%s: answered by %s on %s only (after %v)", a, o.name, iface, d)
		}
	}
	t.Run("interfaces [eth1]: answers on eth1 only", func(t *testing.T) { check(t, "eth1") })
	t.Run("interfaces [*0]: answers on eth0 only", func(t *testing.T) {
		retryUpdate(t, "BerthL2Advertisement l2", func(ctx context.Context) error {
			adv, err := l.e.berth.BerthV1alpha1().BerthL2Advertisements().Get(ctx, "l2", metav1.GetOptions{})
			if err != nil {
				return err
			}
			adv.Spec.Interfaces = []string{"*0"}
			_, err = l.e.berth.BerthV1alpha1().BerthL2Advertisements().Update(ctx, adv, metav1.UpdateOptions{})
			return err
		})
		check(t, "eth0")
	})
}

// segment is a second layer-2 segment: a bridge in a namespace of its own,
// an eth1 on every node and a client.
type segment struct {
	// client is the client's namespace; its interface is eth0.
	client string
}

// secondSegment attaches every node of l with an eth1 (10.99.0.<i>/24) to a
// new bridge, with a client at 10.99.0.100. The namespaces carry the lab's
// id, so the lab's cleanup removes them too.
func (l *l2Lab) secondSegment(t *testing.T) *segment {
	t.Helper()
	sw := "bth-" + l.lab.ID + "-sw2"
	s := &segment{client: "bth-" + l.lab.ID + "-client2"}
	for _, ns := range []string{sw, s.client} {
		l.ip(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	}
	l.ip(t, "-n", sw, "link", "add", "br1", "type", "bridge")
	l.ip(t, "-n", sw, "link", "set", "br1", "up")
	attach := func(ns, ifname, peer, addr string) {
		if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0").CombinedOutput(); err != nil {
			t.Fatalf("%s: sysctl: %v\n%s", ns, err, out)
		}
		l.ip(t, "-n", sw, "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", ns)
		l.ip(t, "-n", sw, "link", "set", peer, "master", "br1", "up")
		l.ip(t, "-n", ns, "addr", "add", addr, "dev", ifname)
		l.ip(t, "-n", ns, "link", "set", "lo", "up")
		l.ip(t, "-n", ns, "link", "set", ifname, "up")
	}
	for i, n := range l.nodes {
		attach(n.host.Netns, "eth1", fmt.Sprintf("v%d", i+1), fmt.Sprintf("10.99.0.%d/24", i+1))
	}
	attach(s.client, "eth0", "vc", "10.99.0.100/24")
	return s
}

// route makes the segment's client look for a on its link.
func (s *segment) route(t *testing.T, a netip.Addr) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", s.client, "route", "add", netip.PrefixFrom(a, a.BitLen()).String(), "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("route %s: %v\n%s", a, err, out)
	}
}

// whoHas asks from namespace ns, on its eth0, who has a (arping for IPv4,
// ndisc6 for IPv6) and returns the MACs that answered, lower case.
func whoHas(ns string, a netip.Addr) []string {
	if a.Is6() {
		return ndisc6(ns, a)
	}
	out, _ := exec.Command("ip", "netns", "exec", ns, "arping", "-b", "-c", "2", "-w", "2", "-I", "eth0", a.String()).CombinedOutput()
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}
