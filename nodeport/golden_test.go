package nodeport

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"
	"sigs.k8s.io/knftables"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// recorder is an NFT that remembers every transaction and element batch it
// is asked to run.
type recorder struct {
	NFT
	log strings.Builder
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	err := r.NFT.Run(ctx, tx)
	fmt.Fprintf(&r.log, "## transaction (%d operations)", tx.NumOperations())
	if err != nil {
		fmt.Fprintf(&r.log, " FAILED: %v", err)
	}
	fmt.Fprintf(&r.log, "\n%s", tx.String())
	return err
}

// UpdateElements logs the batch in nft's syntax.
func (r *recorder) UpdateElements(ctx context.Context, ops []ElementOp) error {
	err := r.NFT.UpdateElements(ctx, ops)
	fmt.Fprintf(&r.log, "## netlink batch (%d operations)", len(ops))
	if err != nil {
		fmt.Fprintf(&r.log, " FAILED: %v", err)
	}
	fmt.Fprintf(&r.log, "\n%s", opsTransaction(r.NFT, ops).String())
	return err
}

// opsTransaction spells ops as a knftables transaction.
func opsTransaction(nft NFT, ops []ElementOp) *knftables.Transaction {
	tx := nft.NewTransaction()
	for _, op := range ops {
		if op.Delete {
			tx.Delete(op.Element)
		} else {
			tx.Add(op.Element)
		}
	}
	return tx
}

// fakeNFT is a knftables.Fake whose UpdateElements behaves like the
// kernel's element batches: atomic, an error for a missing table, map or
// element to delete, and for adding an element that holds another value
// (the Fake alone would overwrite it).
type fakeNFT struct {
	*knftables.Fake
}

func (f fakeNFT) UpdateElements(ctx context.Context, ops []ElementOp) error {
	pending := make(map[string]*string) // map and key -> value, nil if deleted
	for _, op := range ops {
		e := op.Element
		if e.Set != "" {
			// Set elements have no value to conflict.
			continue
		}
		id := e.Map + " " + strings.Join(e.Key, " . ")
		cur, seen := pending[id]
		if !seen && f.Table != nil && f.Table.Maps[e.Map] != nil {
			if old := f.Table.Maps[e.Map].FindElement(e.Key...); old != nil {
				cur = &old.Value[0]
			}
		}
		if op.Delete {
			pending[id] = nil
			continue
		}
		if cur != nil && *cur != e.Value[0] {
			return fmt.Errorf("element %s holds %s: %w", id, *cur, unix.EEXIST)
		}
		pending[id] = &e.Value[0]
	}
	return f.Run(ctx, opsTransaction(f, ops))
}

func newTestForwarder(t *testing.T) (*Forwarder, *knftables.Fake, *recorder, context.Context) {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	fake := knftables.NewFake(knftables.InetFamily, DefaultTable)
	rec := &recorder{NFT: fakeNFT{fake}}
	return New(rec), fake, rec, ctx
}

func r4(addr string, proto Protocol, port uint16, node string, nodePort uint16) Rule {
	return Rule{Address: netip.MustParseAddr(addr), Protocol: proto, Port: port,
		NodeIP: netip.MustParseAddr(node), NodePort: nodePort}
}

var (
	oneTCP = []Rule{r4("198.51.100.1", TCP, 80, "198.18.0.1", 30080)}
	mixed  = []Rule{
		r4("198.51.100.1", TCP, 80, "198.18.0.1", 30080),
		r4("198.51.100.1", TCP, 443, "198.18.0.1", 30443),
		r4("198.51.100.2", UDP, 53, "198.18.0.1", 30053),
		r4("198.51.100.2", SCTP, 9000, "198.18.0.1", 30900),
		r4("2001:db8:5::1", TCP, 80, "2001:db8:1::1", 30080),
		r4("2001:db8:5::1", UDP, 53, "2001:db8:1::1", 30053),
		r4("2001:db8:5::2", SCTP, 9000, "2001:db8:1::1", 30900),
	}
)

// retarget returns rules with node IP from replaced by to.
func retarget(rules []Rule, from, to string) []Rule {
	out := slices.Clone(rules)
	for i := range out {
		if out[i].NodeIP == netip.MustParseAddr(from) {
			out[i].NodeIP = netip.MustParseAddr(to)
		}
	}
	return out
}

// step is one action of a golden scenario; its name heads its transactions.
type step struct {
	name string
	do   func(ctx context.Context, f *Forwarder, fake *knftables.Fake) error
}

func syncStep(name string, rules []Rule) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ *knftables.Fake) error { return f.Sync(ctx, rules) }}
}

func drainStep(name string, addrs ...string) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ *knftables.Fake) error {
		var as []netip.Addr
		for _, a := range addrs {
			as = append(as, netip.MustParseAddr(a))
		}
		return f.Drain(ctx, as)
	}}
}

// tamper changes the table behind the Forwarder's back.
func tamper(name string, edit func(tx *knftables.Transaction)) step {
	return step{name, func(ctx context.Context, _ *Forwarder, fake *knftables.Fake) error {
		tx := fake.NewTransaction()
		edit(tx)
		return fake.Run(ctx, tx)
	}}
}

func checkStep(want bool) step {
	return step{fmt.Sprintf("Check, want drifted=%v", want), func(ctx context.Context, f *Forwarder, _ *knftables.Fake) error {
		got, err := f.Check(ctx)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("Check: drifted=%v, want %v", got, want)
		}
		return nil
	}}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"empty", []step{syncStep("Sync no rules", nil)}},
		{"one-v4-tcp", []step{syncStep("Sync one rule", oneTCP)}},
		{"mixed", []step{syncStep("Sync mixed rules", mixed)}},
		{"incremental", []step{
			syncStep("Sync one rule", oneTCP),
			syncStep("Sync mixed rules: only additions", mixed),
			syncStep("Sync same rules again: no transaction", mixed),
			syncStep("Sync fewer rules with one retargeted: deletions and a replacement", []Rule{
				r4("198.51.100.1", TCP, 80, "198.18.0.1", 31080),
				r4("2001:db8:5::1", UDP, 53, "2001:db8:1::1", 30053),
			}),
		}},
		{"drift-element-removed", []step{
			syncStep("Sync mixed rules", mixed),
			tamper("someone deletes an element", func(tx *knftables.Transaction) {
				tx.Delete(&knftables.Element{Map: portMap4, Key: []string{"198.51.100.1", "tcp", "80"}})
			}),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", mixed),
			checkStep(false),
		}},
		{"drift-node-element-changed", []step{
			syncStep("Sync mixed rules", mixed),
			tamper("someone points an address at another node IP", func(tx *knftables.Transaction) {
				tx.Delete(&knftables.Element{Map: nodeMap6, Key: []string{"2001:db8:5::2"}})
				tx.Add(&knftables.Element{Map: nodeMap6, Key: []string{"2001:db8:5::2"}, Value: []string{"2001:db8:1::99"}})
			}),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", mixed),
			checkStep(false),
		}},
		{"node-ip-changed", []step{
			syncStep("Sync mixed rules", mixed),
			syncStep("Sync with the IPv4 node IP changed: node elements replaced, port elements kept", retarget(mixed, "198.18.0.1", "198.18.0.7")),
			checkStep(false),
		}},
		{"drift-chain-flushed", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone flushes a chain", func(tx *knftables.Transaction) {
				tx.Flush(&knftables.Chain{Name: rewritePrerouting})
			}),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", oneTCP),
		}},
		{"drift-table-deleted-during-update", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone deletes the table", func(tx *knftables.Transaction) {
				tx.Delete(&knftables.Table{})
			}),
			syncStep("Sync mixed rules: incremental fails, full rewrite", mixed),
			checkStep(false),
		}},
		{"element-missing-on-delete", []step{
			syncStep("Sync mixed rules", mixed),
			tamper("someone deletes an element Berth is about to delete", func(tx *knftables.Transaction) {
				tx.Delete(&knftables.Element{Map: portMap4, Key: []string{"198.51.100.1", "tcp", "443"}})
			}),
			syncStep("Sync without that rule: the batch still succeeds, no rewrite", slices.Delete(slices.Clone(mixed), 1, 2)),
			checkStep(false),
		}},
		{"element-present-on-add", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone adds the element Berth is about to add", func(tx *knftables.Transaction) {
				tx.Add(&knftables.Element{Map: portMap4, Key: []string{"198.51.100.1", "tcp", "443"}, Value: []string{"30443"}})
			}),
			syncStep("Sync with that rule: the batch still succeeds, no rewrite", mixed[:2]),
			checkStep(false),
		}},
		{"element-conflict-on-add", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone adds the element Berth is about to add, with another value", func(tx *knftables.Transaction) {
				tx.Add(&knftables.Element{Map: portMap4, Key: []string{"198.51.100.1", "tcp", "443"}, Value: []string{"39999"}})
			}),
			syncStep("Sync with that rule: the batch fails, full rewrite", mixed[:2]),
			checkStep(false),
		}},
		{"drain", []step{
			drainStep("Drain before the first Sync: written with the table", "198.51.100.1"),
			syncStep("Sync mixed rules", mixed),
			checkStep(false),
			drainStep("Drain another address of each family: one element batch", "198.51.100.2", "2001:db8:5::1"),
			checkStep(false),
			tamper("someone deletes a drain element", func(tx *knftables.Transaction) {
				tx.Delete(drainElement(netip.MustParseAddr("2001:db8:5::1")))
			}),
			checkStep(true),
			syncStep("Sync same rules: full rewrite, drain elements included", mixed),
			checkStep(false),
			drainStep("Drain nothing: the elements go"),
			checkStep(false),
		}},
		{"cleanup", []step{
			syncStep("Sync one rule", oneTCP),
			{"Cleanup", func(ctx context.Context, f *Forwarder, _ *knftables.Fake) error { return f.Cleanup(ctx) }},
			checkStep(false),
			{"Cleanup again", func(ctx context.Context, f *Forwarder, _ *knftables.Fake) error { return f.Cleanup(ctx) }},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, fake, rec, ctx := newTestForwarder(t)
			for _, s := range tc.steps {
				fmt.Fprintf(&rec.log, "# %s\n", s.name)
				if err := s.do(ctx, f, fake); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			fmt.Fprintf(&rec.log, "# table afterwards\n%s", fake.Dump())
			compareGolden(t, filepath.Join("testdata", tc.name+".golden"), rec.log.String())
		})
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; run with -update to accept):\n%s", path, diff)
	}
}

// TestLargeChange checks that a change too big for one element batch is
// written as a whole table, and a small one is not.
func TestLargeChange(t *testing.T) {
	tests := []struct {
		name          string
		from, to      int // rules before and after, from manyRules
		runs, batches int
	}{
		{"one rule added", 600, 601, 0, 1},
		{"one rule removed", 601, 600, 0, 1},
		{"400 rules removed", 600, 200, 0, 1}, // 800 operations
		{"600 rules removed", 600, 0, 1, 0},   // 1,200 operations
		{"1,000 rules added", 0, 1000, 1, 0},  // 1,250 operations (with 250 addresses)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ctx := ktesting.NewTestContext(t)
			cnt := &countingNFT{NFT: fakeNFT{knftables.NewFake(knftables.InetFamily, DefaultTable)}}
			f := New(cnt)
			if err := f.Sync(ctx, manyRules(tc.from)); err != nil {
				t.Fatal(err)
			}
			cnt.runs, cnt.batches = 0, 0
			if err := f.Sync(ctx, manyRules(tc.to)); err != nil {
				t.Fatal(err)
			}
			if cnt.runs != tc.runs || cnt.batches != tc.batches {
				t.Errorf("%d table writes and %d element batches, want %d and %d", cnt.runs, cnt.batches, tc.runs, tc.batches)
			}
			if drifted, err := f.Check(ctx); err != nil || drifted {
				t.Errorf("Check = %v, %v; want false, nil", drifted, err)
			}
		})
	}
}
