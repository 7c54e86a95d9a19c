package nodeport

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestMatchesNFT checks that what the Forwarder writes over netlink is
// exactly the table its transactions' nft commands describe (the commands
// the golden files show): it replays each transaction's commands with the
// nft binary in a second namespace, then compares what the nft binary
// lists of both tables, the rules' bytecode as the kernel holds it
// included.
func TestMatchesNFT(t *testing.T) {
	f, rec, ns, ctx := newNFTForwarder(t, "w")
	replay := newNetns(t, "r")
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	steps := []step{
		drainStep("Drain before the first Sync", "198.51.100.1", "2001:db8:5::2"),
		syncStep("Sync mixed rules: the whole table", mixed),
		syncStep("Sync fewer rules, one retargeted: an element batch with deletions",
			retarget(mixed[1:6], "198.18.0.1", "198.18.0.7")),
		{"Drain others: an element batch", func(_ context.Context, f *Forwarder, _ string) error {
			return f.Drain(ctx, addrs("198.51.100.2", "2001:db8:5::1"))
		}},
		syncStep("Sync one rule", oneTCP),
		membersStep("Restrict the membership port: an element batch", 7946, "198.18.0.1", "2001:db8:1::1"),
		syncStep("Sync rules with source ranges: an element batch with intervals", ranged),
		syncStep("Sync other source ranges: intervals deleted and added",
			slices.Concat(restricted(ranged[0:1], "203.0.113.0/24"), mixed[1:2], ranged[2:])),
		{"Cleanup and Sync rules with source ranges: the whole table", func(ctx context.Context, f *Forwarder, _ string) error {
			if err := f.Cleanup(ctx); err != nil {
				return err
			}
			return f.Sync(ctx, ranged)
		}},
	}
	done := 0
	for _, s := range steps {
		if err := s.do(ctx, f, ns); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		for _, tx := range rec.txs[done:] {
			if err := nftScript(replay, tx); err != nil {
				t.Fatalf("%s: replaying with nft: %v", s.name, err)
			}
		}
		done = len(rec.txs)
		if len(rec.txs) == 0 {
			continue // nothing written yet
		}
		if diff := cmp.Diff(tableListing(t, replay), tableListing(t, ns)); diff != "" {
			t.Errorf("%s: the table as nft lists it (-written by nft +written over netlink):\n%s", s.name, diff)
		}
		want, got := bytecode(t, replay), bytecode(t, ns)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: the rules' bytecode (-written by nft +written over netlink):\n%s", s.name, diff)
		}
		if !strings.Contains(got, "[ payload write reg 1 => 16b @ network header + 24 csum_type 0 csum_off 0 csum_flags 0x1 ]") {
			t.Errorf("%s: no IPv6 address rewrite in the bytecode listing:\n%s", s.name, got)
		}
	}
	if len(rec.txs) != 9 {
		t.Errorf("%d transactions, want 9 (two tables, a cleanup, six element batches):\n%s", len(rec.txs), rec.log.String())
	}
}

// bytecode returns the table in namespace ns as nft --debug=netlink lists
// it: its sets' elements as the kernel stores them, and its rules'
// expressions, with the elements of each set sorted.
func bytecode(t *testing.T, ns string) string {
	lines := strings.SplitAfter(listTable(t, ns, "--terse", "--debug=netlink"), "\n")
	isElem := func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "element ") }
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && isElem(lines[j]) {
			j++
		}
		slices.Sort(lines[i:j])
		i = max(j, i+1)
	}
	return strings.Join(lines, "")
}
