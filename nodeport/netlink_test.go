package nodeport

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"
)

func TestEncodeElement(t *testing.T) {
	k := func(addr string, proto Protocol, port uint16) key {
		return key{addr: netip.MustParseAddr(addr), proto: proto, port: port}
	}
	a := netip.MustParseAddr
	tests := []struct {
		name         string
		elem         element
		text         string
		key, vl, end []byte
	}{
		{name: "port4 tcp", elem: portElement(k("198.51.100.1", TCP, 80), 30080), text: "198.51.100.1 . tcp . 80 : 30080",
			key: []byte{198, 51, 100, 1, 6, 0, 0, 0, 0, 80, 0, 0}, vl: []byte{0x75, 0x80}},
		{name: "port4 sctp", elem: portElement(k("198.51.100.2", SCTP, 9000), 30900), text: "198.51.100.2 . sctp . 9000 : 30900",
			key: []byte{198, 51, 100, 2, 132, 0, 0, 0, 0x23, 0x28, 0, 0}, vl: []byte{0x78, 0xb4}},
		{name: "port6 udp", elem: portElement(k("2001:db8:5::1", UDP, 53), 30053), text: "2001:db8:5::1 . udp . 53 : 30053",
			key: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0},
			vl:  []byte{0x75, 0x65}},
		{name: "node4", elem: nodeElement(a("198.51.100.1"), a("198.18.0.1")), text: "198.51.100.1 : 198.18.0.1",
			key: []byte{198, 51, 100, 1}, vl: []byte{198, 18, 0, 1}},
		{name: "node6", elem: nodeElement(a("2001:db8:5::1"), a("2001:db8:1::1")), text: "2001:db8:5::1 : 2001:db8:1::1",
			key: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
			vl:  []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{name: "drain4", elem: drainElement(a("198.51.100.2")), text: "0xc6336402", key: []byte{198, 51, 100, 2}},
		{name: "drain6", elem: drainElement(a("2001:db8::5")), text: "0x20010db8000000000000000000000005",
			key: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5}},
		{name: "restrict4", elem: restrictElement(k("198.51.100.2", UDP, 53)), text: "198.51.100.2 . udp . 53",
			key: []byte{198, 51, 100, 2, 17, 0, 0, 0, 0, 53, 0, 0}},
		{name: "allow4 prefix", elem: allowElement(k("198.51.100.2", TCP, 80), addrRange{a("10.0.0.0"), a("10.255.255.255")}),
			text: "198.51.100.2 . tcp . 80 . 10.0.0.0/8",
			key:  []byte{198, 51, 100, 2, 6, 0, 0, 0, 0, 80, 0, 0, 10, 0, 0, 0},
			end:  []byte{198, 51, 100, 2, 6, 0, 0, 0, 0, 80, 0, 0, 10, 255, 255, 255}},
		{name: "allow4 range", elem: allowElement(k("198.51.100.2", TCP, 80), addrRange{a("192.0.2.1"), a("192.0.2.9")}),
			text: "198.51.100.2 . tcp . 80 . 192.0.2.1-192.0.2.9",
			key:  []byte{198, 51, 100, 2, 6, 0, 0, 0, 0, 80, 0, 0, 192, 0, 2, 1},
			end:  []byte{198, 51, 100, 2, 6, 0, 0, 0, 0, 80, 0, 0, 192, 0, 2, 9}},
		{name: "members6", elem: memberElement(a("2001:db8::7")), text: "2001:db8::7",
			key: []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotKey, gotVal, gotEnd := tc.elem.encode()
			if diff := cmp.Diff([][]byte{tc.key, tc.vl, tc.end}, [][]byte{gotKey, gotVal, gotEnd}); diff != "" {
				t.Errorf("encode (-want +got):\n%s", diff)
			}
			if got := tc.elem.String(); got != tc.text {
				t.Errorf("String = %q, want %q", got, tc.text)
			}
			back, err := decodeElement(tc.elem.set, gotKey, gotVal, gotEnd)
			if err != nil || back != tc.elem {
				t.Errorf("decodeElement = %+v, %v; want %+v", back, err, tc.elem)
			}
		})
	}
	for _, bad := range []struct {
		set      string
		key, val []byte
	}{
		{portMap4, []byte{198, 51, 100, 1, 1, 0, 0, 0, 0, 80, 0, 0}, []byte{0, 80}}, // ICMP
		{portMap4, []byte{198, 51, 100, 1}, []byte{0, 80}},
		{nodeMap6, []byte{198, 51, 100, 1}, []byte{198, 18, 0, 1}},
		{drainSet4, []byte{198, 51, 100, 1}, []byte{1}},
		{"other", []byte{198, 51, 100, 1}, nil},
	} {
		if e, err := decodeElement(bad.set, bad.key, bad.val, nil); err == nil {
			t.Errorf("decodeElement(%s, %x, %x) = %v, want an error", bad.set, bad.key, bad.val, e)
		}
	}
}

// describeMessages spells each element message of msgs as "d" if a delete,
// the set, and one x per element.
func describeMessages(t *testing.T, msgs []netlink.Message) []string {
	var out []string
	for _, m := range msgs {
		del := ""
		switch m.Header.Type & 0xff {
		case unix.NFT_MSG_NEWSETELEM:
		case unix.NFT_MSG_DELSETELEM:
			del = "d"
		default:
			t.Fatalf("message of type %#x, want element messages only", m.Header.Type)
		}
		elems, err := parseElements(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		ad, _ := attrs(m)
		var set string
		for ad.Next() {
			if ad.Type() == unix.NFTA_SET_ELEM_LIST_SET {
				set = ad.String()
			}
		}
		out = append(out, del+set+":"+strings.Repeat("x", len(elems)))
	}
	return out
}

func TestElementMessages(t *testing.T) {
	e := func(i int) element {
		return nodeElement(netip.AddrFrom4([4]byte{198, 51, byte(i / 250), byte(1 + i%250)}), nodeIP4)
	}
	many := func(n int, del bool) []ElementOp {
		var ops []ElementOp
		for i := range n {
			ops = append(ops, ElementOp{Delete: del, Element: e(i)})
		}
		return ops
	}
	tests := []struct {
		name string
		ops  []ElementOp
		want []string // per message: "d" if a delete, the map, and one x per element
	}{
		{"runs of one kind share a message", []ElementOp{
			{Element: e(1)}, {Element: e(2)},
			{Delete: true, Element: e(1)}, {Delete: true, Element: e(2)},
			{Element: e(3)},
		}, []string{"node4:xx", "dnode4:xx", "node4:x"}},
		{"another map starts a message", []ElementOp{
			{Element: e(1)}, {Element: portElement(key{addr: svcIP4, proto: TCP, port: 80}, 30080)},
		}, []string{"node4:x", "port4:x"}},
		{"at most maxElemsPerMsg per message", append(many(600, false), many(1, true)...), []string{
			"node4:" + strings.Repeat("x", maxElemsPerMsg), "node4:" + strings.Repeat("x", maxElemsPerMsg),
			"node4:" + strings.Repeat("x", 600-2*maxElemsPerMsg), "dnode4:x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := describeMessages(t, elementTx(tc.ops).messages(DefaultTable))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
		})
	}
}

// countingNFT counts whole-table transactions and element batches.
type countingNFT struct {
	NFT
	runs, batches int
}

func (c *countingNFT) Run(ctx context.Context, tx *Transaction) error {
	if tx.createsTable() {
		c.runs++
	} else {
		c.batches++
	}
	return c.NFT.Run(ctx, tx)
}

// TestNetlinkElementsInNetns checks that elements sent over netlink are the
// ones nft shows and that they forward real traffic, and that a batch copes
// with elements someone else removed or added.
func TestNetlinkElementsInNetns(t *testing.T) {
	l := newLab(t)
	for _, a := range []netip.AddrPort{ap(nodeIP4, 30080), ap(nodeIP4, 30081), ap(nodeIP6, 30080)} {
		serveTCP(t, l.node, a)
	}
	serveUDP(t, l.node, ap(nodeIP4, 30053))
	nft, err := NewNFT(NFTOptions{Netns: nsPath(l.node)})
	if err != nil {
		t.Fatalf("NewNFT: %v", err)
	}
	cnt := &countingNFT{NFT: nft}
	fwd := New(cnt)

	base := []Rule{{Address: svcIP4, Protocol: TCP, Port: 80, NodeIP: nodeIP4, NodePort: 30080}}
	more := []Rule{
		{Address: svcIP4, Protocol: TCP, Port: 8080, NodeIP: nodeIP4, NodePort: 30081},
		{Address: svcIP6, Protocol: TCP, Port: 80, NodeIP: nodeIP6, NodePort: 30080},
		{Address: kpIP4, Protocol: UDP, Port: 53, NodeIP: nodeIP4, NodePort: 30053},
	}
	all := slices.Concat(base, more)
	// How nft prints the elements of more, map by map.
	listed := map[string][]string{
		portMap4: {"198.51.100.1 . tcp . 8080 : 30081", "198.51.100.2 . udp . 53 : 30053"},
		portMap6: {"2001:db8:5::1 . tcp . 80 : 30080"},
		nodeMap4: {"198.51.100.2 : 198.18.0.1"},
		nodeMap6: {"2001:db8:5::1 : 2001:db8:1::1"},
	}
	moreProbes := []probe{
		{"tcp", ap(svcIP4, 8080), "30081 " + clientIP4.String()},
		{"tcp", ap(svcIP6, 80), "30080 " + clientIP6.String()},
		{"udp", ap(kpIP4, 53), "30053 " + clientIP4.String()},
	}
	noMore := []probe{{"tcp", ap(svcIP4, 8080), ""}, {"tcp", ap(svcIP6, 80), ""}, {"udp", ap(kpIP4, 53), ""}}
	baseProbe := probe{"tcp", ap(svcIP4, 80), "30080 " + clientIP4.String()}

	// sync runs Sync and checks how many whole-table writes and element
	// batches it took.
	sync := func(t *testing.T, rules []Rule, runs, batches int) {
		t.Helper()
		r, b := cnt.runs, cnt.batches
		if err := fwd.Sync(l.ctx, rules); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if cnt.runs-r != runs || cnt.batches-b != batches {
			t.Errorf("Sync took %d table writes and %d element batches, want %d and %d", cnt.runs-r, cnt.batches-b, runs, batches)
		}
	}
	// listedByNFT reports, for each element of more, whether nft lists it.
	listedByNFT := func(t *testing.T, want bool) {
		t.Helper()
		table := l.nft(t, "list", "table", "inet", "berth")
		for m, elems := range listed {
			for _, e := range elems {
				if got := strings.Contains(table, e); got != want {
					t.Errorf("map %s: element %q listed %v, want %v; table:\n%s", m, e, got, want, table)
				}
			}
		}
	}
	noDrift := func(t *testing.T) {
		t.Helper()
		if drifted, err := fwd.Check(l.ctx); err != nil || drifted {
			t.Errorf("Check = %v, %v; want false, nil", drifted, err)
		}
	}

	t.Run("added over netlink, shown by nft, forwarding", func(t *testing.T) {
		sync(t, base, 1, 0)
		sync(t, all, 0, 1)
		listedByNFT(t, true)
		l.probe(t, l.client, append(moreProbes, baseProbe)...)
		noDrift(t)
	})
	t.Run("deleted over netlink, gone from nft, not forwarding", func(t *testing.T) {
		sync(t, base, 0, 1)
		listedByNFT(t, false)
		l.probe(t, l.client, append(noMore, baseProbe)...)
		noDrift(t)
	})
	t.Run("an element already deleted by hand", func(t *testing.T) {
		sync(t, all, 0, 1)
		l.nft(t, "delete", "element", "inet", "berth", portMap4, "{ 198.51.100.1 . tcp . 8080 }")
		l.nft(t, "delete", "element", "inet", "berth", nodeMap6, "{ 2001:db8:5::1 }")
		sync(t, base, 0, 1)
		listedByNFT(t, false)
		noDrift(t)
	})
	t.Run("an element already added by hand", func(t *testing.T) {
		l.nft(t, "add", "element", "inet", "berth", portMap4, "{ 198.51.100.1 . tcp . 8080 : 30081 }")
		sync(t, all, 0, 1)
		listedByNFT(t, true)
		l.probe(t, l.client, moreProbes...)
		noDrift(t)
	})
	t.Run("an element added by hand with another value: full rewrite", func(t *testing.T) {
		sync(t, base, 0, 1)
		l.nft(t, "add", "element", "inet", "berth", portMap4, "{ 198.51.100.1 . tcp . 8080 : 30999 }")
		sync(t, all, 1, 1)
		listedByNFT(t, true)
		l.probe(t, l.client, moreProbes...)
		noDrift(t)
	})
	t.Run("a changed NodePort and node IP, replaced in one batch", func(t *testing.T) {
		moved := slices.Clone(all)
		// svcIP4:8080 to another NodePort, kpIP4 to another node IP (one
		// the node lacks: only the elements are checked).
		moved[1].NodePort = 30080
		moved[3].NodeIP, moved[3].NodePort = netip.MustParseAddr("198.18.0.9"), 30081
		sync(t, moved, 0, 1)
		table := l.nft(t, "list", "table", "inet", "berth")
		for _, e := range []string{"198.51.100.1 . tcp . 8080 : 30080", "198.51.100.2 . udp . 53 : 30081", "198.51.100.2 : 198.18.0.9"} {
			if !strings.Contains(table, e) {
				t.Errorf("element %q not listed; table:\n%s", e, table)
			}
		}
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 8080), "30080 " + clientIP4.String()})
		noDrift(t)
		sync(t, all, 0, 1)
		l.probe(t, l.client, moreProbes...)
		noDrift(t)
	})
	t.Run("a deleted map: full rewrite", func(t *testing.T) {
		l.nft(t, "flush", "chain", "inet", "berth", rewritePrerouting)
		l.nft(t, "flush", "chain", "inet", "berth", rewriteOutput)
		l.nft(t, "flush", "chain", "inet", "berth", natPrerouting)
		l.nft(t, "flush", "chain", "inet", "berth", natOutput)
		l.nft(t, "delete", "map", "inet", "berth", portMap6)
		sync(t, base, 1, 1)
		l.probe(t, l.client, append(noMore, baseProbe)...)
		noDrift(t)
	})
	t.Run("a restarted Forwarder finds the rules in place and takes them over", func(t *testing.T) {
		sync(t, all, 0, 1)
		// The old Forwarder's netlink socket stays open: the kernel ties
		// nothing in the table to it, as with a crashed speaker.
		nft2, err := NewNFT(NFTOptions{Netns: nsPath(l.node)})
		if err != nil {
			t.Fatalf("NewNFT: %v", err)
		}
		fwd2 := New(nft2)
		if drifted, err := fwd2.Check(l.ctx); err != nil || drifted {
			t.Errorf("Check before the first Sync = %v, %v; want false, nil", drifted, err)
		}
		l.probe(t, l.client, append(moreProbes, baseProbe)...)
		if err := fwd2.Sync(l.ctx, base); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		listedByNFT(t, false)
		l.probe(t, l.client, append(noMore, baseProbe)...)
		if err := fwd2.Sync(l.ctx, all); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		// The first Forwarder believes the table holds all, which is true
		// again.
		noDrift(t)
	})
	t.Run("Cleanup after netlink updates", func(t *testing.T) {
		sync(t, base, 0, 1)
		if err := fwd.Cleanup(l.ctx); err != nil {
			t.Fatalf("Cleanup: %v", err)
		}
		if out := l.nft(t, "list", "tables"); strings.Contains(out, "berth") {
			t.Errorf("table still there after Cleanup:\n%s", out)
		}
		l.probe(t, l.client, probe{"tcp", ap(svcIP4, 80), ""})
	})
}

// TestLargeBatchInNetns sends the largest batch Sync allows short of a full
// rewrite, split into several messages, to a real kernel.
func TestLargeBatchInNetns(t *testing.T) {
	requirePrivileges(t)
	ns := newNetns(t, "l")
	nft, err := NewNFT(NFTOptions{Netns: nsPath(ns)})
	if err != nil {
		t.Fatalf("NewNFT: %v", err)
	}
	_, ctx := ktesting.NewTestContext(t)
	cnt := &countingNFT{NFT: nft}
	fwd := New(cnt)
	for _, n := range []int{0, 740, 10, 500} { // 990, 1,940 (a rewrite) and 730 operations
		if err := fwd.Sync(ctx, manyRules(n)); err != nil {
			t.Fatalf("Sync %d rules: %v", n, err)
		}
		expectElements(t, ns, manyRules(n))
		if drifted, err := fwd.Check(ctx); err != nil || drifted {
			t.Errorf("Check after %d rules = %v, %v; want false, nil", n, drifted, err)
		}
	}
	if cnt.runs != 2 || cnt.batches != 2 {
		t.Errorf("%d table writes and %d element batches, want 2 and 2", cnt.runs, cnt.batches)
	}
}

// TestLargeTableInNetns writes 10,000 rules as one batch, about 0.45 MiB,
// more than a netlink socket's default send buffer takes (the kernel takes
// a batch only in one datagram), and checks with the nft binary that the
// table holds all of them.
func TestLargeTableInNetns(t *testing.T) {
	f, rec, ns, ctx := newNFTForwarder(t, "t")
	rules := manyRules(10000)
	if err := f.Sync(ctx, rules); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if len(rec.txs) != 1 {
		t.Fatalf("%d transactions, want 1", len(rec.txs))
	}
	expectElements(t, ns, rules)
}
