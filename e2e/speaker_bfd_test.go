package e2e

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/frr"
)

// TestSpeakerBFD runs two speakers whose BerthBGPPeer asks for BFD at 300 ms x 3
// against FRR (bgpd with "neighbor X bfd", bfdd). A node whose link is
// pulled loses its next hop at the router in about a second, not the 90 s
// hold time, and its speaker takes its own BGP session down on BFD's word;
// plugged back, the node is a next hop again as soon as BFD and BGP are up.
func TestSpeakerBFD(t *testing.T) {
	sl := newSpeakerLab(t, 2)
	var neighbors []frr.Neighbor
	var bfdPeers []frr.BFDPeer
	for _, n := range sl.nodes {
		neighbors = append(neighbors, frr.Neighbor{Addr: n.host.IPv4, ASN: nodeASN})
		bfdPeers = append(bfdPeers, frr.BFDPeer{Addr: n.host.IPv4, MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3})
	}
	r1 := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: neighbors, MaximumPaths: 8})
	r1.StartBFD(t, bfdPeers, routerASN)
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{"198.51.100.0/24"}})
	sl.bgpPeer("r1", r1.Host.IPv4, routerASN, nodeASN, func(s *v1alpha1.BerthBGPPeerSpec) {
		s.BFD = &v1alpha1.BFDProfile{MinTxMillis: ptr.To[int32](300), MinRxMillis: ptr.To[int32](300), Multiplier: ptr.To[int32](3)}
	})
	sl.advertise("all", v1alpha1.BerthBGPAdvertisementSpec{})
	sl.startSpeakers("--l2=false")
	sl.e.namespace(t, "demo", nil)
	waitSessions(t, r1, sl.addrs(false))
	sl.e.service(t, "demo", "web")
	web, _ := split(sl.e.waitAllocated(t, "demo", "web", 1))
	pfx := hostRoute(web)
	waitNextHops(t, r1.Host, pfx, sl.addrs(false), settle)
	n1, n2 := sl.nodes[0], sl.nodes[1]
	poll(t, settle, "BFD up at both ends", func() error {
		for _, p := range bfdPeers {
			if st := r1.BFDPeer(t, p.Addr); st == nil || st.Status != "up" || st.RemoteTransmit != 300 {
				return fmt.Errorf("FRR's BFD session with %s: %+v", p.Addr, st)
			}
		}
		return nil
	})

	if err := sl.lab.SetLink(n1.host, false); err != nil {
		t.Fatal(err)
	}
	d := waitNextHops(t, r1.Host, pfx, sl.addrs(false, n2), failAfter)
	t.Logf("MEASURED: link of %s pulled: its next hop gone at the router after %v", n1.name, d)
	poll(t, 3*time.Second, n1.name+"'s speaker takes its session down", func() error {
		if !n1.speaker.logged("Taking the BGP session down") {
			return fmt.Errorf("not logged")
		}
		return nil
	})
	if err := sl.lab.SetLink(n1.host, true); err != nil {
		t.Fatal(err)
	}
	d = waitNextHops(t, r1.Host, pfx, sl.addrs(false), settle)
	t.Logf("MEASURED: link of %s back: its next hop back at the router after %v", n1.name, d)
	if !n1.speaker.logged("Reopening the BGP session") {
		t.Error("the speaker did not reopen the session on BFD's word")
	}
}
