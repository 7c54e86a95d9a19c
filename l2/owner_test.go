package l2

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func TestOwner(t *testing.T) {
	a := netip.MustParseAddr("198.51.100.7")
	three := []string{"node-a", "node-b", "node-c"}
	want := Owner(a, three)
	tests := []struct {
		name  string
		addr  netip.Addr
		nodes []string
		want  string
	}{
		{name: "no nodes", addr: a, nodes: nil, want: ""},
		{name: "one node", addr: a, nodes: []string{"solo"}, want: "solo"},
		{name: "order does not matter", addr: a, nodes: []string{"node-c", "node-a", "node-b"}, want: want},
		{name: "duplicates do not matter", addr: a, nodes: []string{"node-b", "node-a", "node-c", "node-a"}, want: want},
		{name: "v4-mapped v6 is the v4 address", addr: netip.AddrFrom16(a.As16()), nodes: three, want: want},
		// Golden values: the hash is a wire contract between speakers of
		// different versions, so it must never change.
		{name: "golden v4", addr: netip.MustParseAddr("198.51.100.1"), nodes: three, want: "node-a"},
		{name: "golden v6", addr: netip.MustParseAddr("2001:db8::1"), nodes: three, want: "node-c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Owner(tc.addr, tc.nodes); got != tc.want {
				t.Errorf("Owner(%v, %v) = %q, want %q", tc.addr, tc.nodes, got, tc.want)
			}
		})
	}
}

func testAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, 0, n)
	v4 := netip.MustParseAddr("198.51.0.0")
	v6 := netip.MustParseAddr("2001:db8::")
	for i := range n {
		if i%2 == 0 {
			out = append(out, v4)
			v4 = v4.Next()
		} else {
			out = append(out, v6)
			v6 = v6.Next()
		}
	}
	return out
}

func TestOwnerSpread(t *testing.T) {
	for _, nodes := range [][]string{
		{"node-a", "node-b", "node-c"},
		{"worker-1", "worker-2", "worker-3"},
		{"ip-10-0-0-1.ec2.internal", "ip-10-0-0-2.ec2.internal", "ip-10-0-0-3.ec2.internal"},
	} {
		t.Run(fmt.Sprint(nodes), func(t *testing.T) {
			const n = 3000
			count := map[string]int{}
			for _, a := range testAddrs(n) {
				count[Owner(a, nodes)]++
			}
			fair := n / len(nodes)
			for _, node := range nodes {
				if c := count[node]; c < fair*9/10 || c > fair*11/10 {
					t.Errorf("node %s owns %d of %d addresses, want %d±10%%", node, c, n, fair)
				}
			}
			t.Logf("spread: %v", count)
		})
	}
}

func TestOwnerMinimalMovement(t *testing.T) {
	all := []string{"node-a", "node-b", "node-c", "node-d"}
	addrs := testAddrs(3000)
	for i, gone := range all {
		t.Run("remove "+gone, func(t *testing.T) {
			rest := slices.Delete(slices.Clone(all), i, i+1)
			moved := 0
			for _, a := range addrs {
				before, after := Owner(a, all), Owner(a, rest)
				if before != gone && before != after {
					t.Fatalf("%v moved from %s to %s though %s stayed", a, before, after, before)
				}
				if before == gone {
					moved++
				}
			}
			// Adding the node back is the same move in reverse.
			t.Logf("removing %s moved %d of %d addresses", gone, moved, len(addrs))
		})
	}
}

func BenchmarkOwner(b *testing.B) {
	nodes := make([]string, 50)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("node-%02d", i)
	}
	a := netip.MustParseAddr("2001:db8::42")
	for b.Loop() {
		Owner(a, nodes)
	}
}
