package l2

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// FuzzRequests feeds arbitrary bytes, as an ARP packet or an NDP message
// from the network, through the parser and the Responder's decision, on a
// node that owns 192.0.2.10 and 2001:db8::10. Nothing may panic, and the
// node replies exactly when the packet asks for an owned address of the
// link's family, is not an announcement, and was not sent by the node
// itself.
func FuzzRequests(f *testing.F) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	for _, p := range []struct {
		op       arp.Operation
		from     net.HardwareAddr
		src, dst string
	}{
		{arp.OperationRequest, other, "192.0.2.1", "192.0.2.10"},
		{arp.OperationRequest, mac, "192.0.2.10", "192.0.2.10"},
		{arp.OperationReply, other, "192.0.2.10", "192.0.2.10"},
		{arp.OperationRequest, other, "192.0.2.1", "192.0.2.11"},
	} {
		pkt, err := arp.NewPacket(p.op, p.from, netip.MustParseAddr(p.src), ethernet.Broadcast, netip.MustParseAddr(p.dst))
		if err != nil {
			f.Fatal(err)
		}
		b, err := pkt.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	for _, m := range []ndp.Message{
		&ndp.NeighborSolicitation{TargetAddress: netip.MustParseAddr("2001:db8::10"),
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: other}}},
		&ndp.NeighborSolicitation{TargetAddress: netip.MustParseAddr("2001:db8::11")},
		&ndp.NeighborAdvertisement{Override: true, TargetAddress: netip.MustParseAddr("2001:db8::10"),
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: other}}},
	} {
		b, err := ndp.MarshalMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}

	owned := map[bool]netip.Addr{false: netip.MustParseAddr("192.0.2.10"), true: netip.MustParseAddr("2001:db8::10")}
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		var req request
		if v6 {
			m, err := ndp.ParseMessage(b)
			if err != nil {
				return
			}
			var ok bool
			if req, ok = ndpRequest(m, netip.MustParseAddr("fe80::2")); !ok {
				return
			}
		} else {
			p := new(arp.Packet)
			if err := p.UnmarshalBinary(b); err != nil {
				return
			}
			var ok bool
			if req, ok = arpRequest(p); !ok {
				return
			}
		}

		r := newResponder(ResponderConfig{}, nil, nil)
		r.SetOwned([]netip.Addr{owned[false], owned[true]})
		conn := newFakeConn()
		l := &link{linkKey: linkKey{name: "eth0", index: 2, v6: v6}, mac: mac, conn: conn, groups: map[netip.Addr]int{}}
		r.links[l.linkKey] = l
		asked := req.Target.Unmap().WithZone("")
		r.handle(l, req)

		replies, _, _ := conn.snapshot()
		want := !req.Announce && asked == owned[v6] && !bytes.Equal(req.SenderMAC, mac)
		if got := len(replies) > 0; got != want {
			t.Fatalf("request %+v on a v6=%v link: replied %v, want %v", req, v6, replies, want)
		}
		if len(replies) > 1 || (len(replies) == 1 && replies[0] != owned[v6]) {
			t.Fatalf("replies %v to one request for %v", replies, asked)
		}
	})
}
