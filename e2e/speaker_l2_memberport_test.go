package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
)

// TestSpeakerL2MembershipPort checks that the speakers' table lets only
// Node addresses reach the membership port, with forwarding on (the
// forwarding table) and off (a table with only the membership chain): the
// two speakers still find each other (real memberlist traffic between node
// addresses), a TCP connection from a node's address is accepted, and one
// from a host that is no Node gets no answer, while the same host still
// reaches the speaker's metrics port.
func TestSpeakerL2MembershipPort(t *testing.T) {
	for _, forwarding := range []bool{true, false} {
		t.Run(fmt.Sprintf("forwarding=%v", forwarding), func(t *testing.T) {
			testMembershipPort(t, forwarding)
		})
	}
}

func testMembershipPort(t *testing.T, forwarding bool) {
	l := newL2Lab(t, 2)
	for _, n := range l.nodes {
		l.startL2Speaker(t, t, n, fmt.Sprintf("--forwarding=%v", forwarding), "--cleanup-on-exit")
	}
	took := l.waitMembers(t, 2)
	t.Logf("two speakers see each other after %v", took.Round(time.Millisecond))
	n1, n2 := l.nodes[0], l.nodes[1]
	out, _ := nftTable(t, n1)
	if !strings.Contains(out, "member-input") || !strings.Contains(out, n2.host.IPv4.String()) {
		t.Fatalf("table inet berth of %s has no membership restriction naming %s:\n%s", n1.name, n2.host.IPv4, out)
	}
	if chains := strings.Count(out, "\tchain "); !forwarding && chains != 1 {
		t.Errorf("without forwarding the table of %s has %d chains, want only member-input:\n%s", n1.name, chains, out)
	}
	dial := func(h *netlab.Host, to netip.AddrPort) error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		c, err := h.DialContext(ctx, "tcp", to.String())
		if err == nil {
			c.Close()
		}
		return err
	}
	member := netip.AddrPortFrom(n1.host.IPv4, 7946)
	if err := dial(n2.host, member); err != nil {
		t.Errorf("%s (a node) to %s: %v, want a connection", n2.name, member, err)
	}
	for i := range 3 {
		if err := dial(l.client, member); err == nil {
			t.Fatalf("try %d: %s (no node) connected to %s, want no answer", i+1, l.client.IPv4, member)
		}
	}
	metrics := netip.MustParseAddrPort(n1.speaker.metrics)
	if err := dial(l.client, metrics); err != nil {
		t.Errorf("%s to the metrics port %s: %v, want a connection (the host is reachable)", l.client.IPv4, metrics, err)
	}
	t.Logf("%s refused at %s (3 tries), %s accepted", l.client.IPv4, member, n2.host.IPv4)
}
