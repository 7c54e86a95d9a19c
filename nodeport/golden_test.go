package nodeport

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// recorder is an NFT that logs every transaction it runs, as the nft
// commands it stands for.
type recorder struct {
	NFT
	log strings.Builder
	txs []string // the text of each transaction run, in order
}

func (r *recorder) Run(ctx context.Context, tx *Transaction) error {
	err := r.NFT.Run(ctx, tx)
	kind := "netlink batch"
	if tx.createsTable() {
		kind = "transaction"
	}
	fmt.Fprintf(&r.log, "## %s (%d operations)", kind, tx.NumOperations())
	if err != nil {
		// The errno alone: the rest names the message that failed.
		var errno unix.Errno
		if !errors.As(err, &errno) {
			errno = 0
		}
		fmt.Fprintf(&r.log, " FAILED: %v", errno)
	}
	text := tx.text(DefaultTable)
	r.txs = append(r.txs, text)
	r.log.WriteString("\n" + text)
	return err
}

// newNFTForwarder returns a Forwarder of the table in a new network
// namespace, through a recorder, and the namespace's name.
func newNFTForwarder(t *testing.T, role string) (*Forwarder, *recorder, string, context.Context) {
	t.Helper()
	requirePrivileges(t)
	ns := newNetns(t, role)
	nft, err := NewNFT(NFTOptions{Netns: nsPath(ns)})
	if err != nil {
		t.Fatalf("NewNFT: %v", err)
	}
	_, ctx := ktesting.NewTestContext(t)
	rec := &recorder{NFT: nft}
	return New(rec), rec, ns, ctx
}

// nftScript runs an nft script in namespace ns with the nft binary.
func nftScript(ns, script string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %v\n%s\n%s", err, out, script)
	}
	return nil
}

// noTable is what listTable returns for a missing table.
const noTable = "(no table)\n"

// listTable returns what the nft binary lists of table inet berth in
// namespace ns (args before "list", such as --debug=netlink, are passed to
// nft), or "(no table)".
func listTable(t *testing.T, ns string, args ...string) string {
	t.Helper()
	args = append(append([]string{"ip", "netns", "exec", ns, "nft"}, args...), "list", "table", "inet", DefaultTable)
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No such file or directory") {
			return noTable
		}
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// decodeJSON decodes s into v, keeping numbers as nft spelled them.
func decodeJSON(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	return d.Decode(v)
}

// nftElements returns the elements of a map or set of table inet berth in
// namespace ns, as the nft binary lists them in JSON, spelled "KEY : VALUE"
// (fields of a concatenation joined by " . "), sorted.
func nftElements(t *testing.T, ns, set string) []string {
	t.Helper()
	kind := "set"
	if strings.HasPrefix(set, "port") || strings.HasPrefix(set, "node") {
		kind = "map"
	}
	out := run(t, "ip", "netns", "exec", ns, "nft", "-j", "list", kind, "inet", DefaultTable, set)
	var doc struct {
		Nftables []map[string]struct {
			Elem []json.RawMessage `json:"elem"`
		} `json:"nftables"`
	}
	if err := decodeJSON(out, &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	field := func(raw json.RawMessage) string {
		var concat struct {
			Concat []any `json:"concat"`
		}
		if decodeJSON(string(raw), &concat) == nil && concat.Concat != nil {
			var parts []string
			for _, p := range concat.Concat {
				parts = append(parts, fmt.Sprint(p))
			}
			return strings.Join(parts, " . ")
		}
		var v any
		if err := decodeJSON(string(raw), &v); err != nil {
			t.Fatalf("nft -j: element %s: %v", raw, err)
		}
		return fmt.Sprint(v)
	}
	var elems []string
	for _, obj := range doc.Nftables {
		for _, kind := range []string{"map", "set"} {
			for _, raw := range obj[kind].Elem {
				var kv []json.RawMessage
				if json.Unmarshal(raw, &kv) == nil && len(kv) == 2 {
					elems = append(elems, field(kv[0])+" : "+field(kv[1]))
				} else {
					elems = append(elems, field(raw))
				}
			}
		}
	}
	slices.Sort(elems)
	return elems
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

// restricted returns rules with source ranges cidrs.
func restricted(rules []Rule, cidrs ...string) []Rule {
	out := slices.Clone(rules)
	for i := range out {
		out[i].Restricted = true
		out[i].SourceRanges = nil
		for _, c := range cidrs {
			out[i].SourceRanges = append(out[i].SourceRanges, netip.MustParsePrefix(c))
		}
	}
	return out
}

// ranged are mixed's rules, the first address of each family restricted:
// overlapping and touching IPv4 ranges (merged into two elements), an
// IPv6 range, and IPv4 ranges for an IPv6 address (no client allowed).
var ranged = slices.Concat(
	restricted(mixed[0:2], "192.0.2.0/25", "192.0.2.128/25", "203.0.113.7/32", "192.0.2.64/26", "2001:db8:9::/48"),
	mixed[2:4],
	restricted(mixed[4:5], "2001:db8:9::/48", "198.18.0.0/15"),
	restricted(mixed[5:6], "198.18.0.0/15"),
	mixed[6:],
)

// membersStep restricts the membership port to addrs.
func membersStep(name string, port uint16, addrs ...string) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ string) error {
		var as []netip.Addr
		for _, a := range addrs {
			as = append(as, netip.MustParseAddr(a))
		}
		return f.Members(ctx, MembersPort{Port: port, Protocols: []Protocol{TCP, UDP}}, as)
	}}
}

// failing is a step that must fail with an error is accepts.
func failing(s step, is func(error) bool) step {
	return step{s.name, func(ctx context.Context, f *Forwarder, ns string) error {
		if err := s.do(ctx, f, ns); !is(err) {
			return fmt.Errorf("got error %v, want another", err)
		}
		return nil
	}}
}

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

// step is one action of a golden scenario; its name heads its
// transactions. ns is the namespace of the table.
type step struct {
	name string
	do   func(ctx context.Context, f *Forwarder, ns string) error
}

func syncStep(name string, rules []Rule) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ string) error { return f.Sync(ctx, rules) }}
}

func drainStep(name string, addrs ...string) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ string) error {
		var as []netip.Addr
		for _, a := range addrs {
			as = append(as, netip.MustParseAddr(a))
		}
		return f.Drain(ctx, as)
	}}
}

// tamper changes the table behind the Forwarder's back, with the nft
// binary.
func tamper(name string, script string) step {
	return step{name, func(_ context.Context, _ *Forwarder, ns string) error { return nftScript(ns, script) }}
}

func checkStep(want bool) step {
	return step{fmt.Sprintf("Check, want drifted=%v", want), func(ctx context.Context, f *Forwarder, _ string) error {
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

func cleanupStep(name string) step {
	return step{name, func(ctx context.Context, f *Forwarder, _ string) error { return f.Cleanup(ctx) }}
}

// TestGolden runs scenarios against a real kernel, in a network namespace,
// and compares with testdata/NAME.golden the transactions the Forwarder
// sent, spelled as the nft commands they stand for (TestMatchesNFT checks
// that nft, given those commands, writes the same table), and the table
// afterwards as the nft binary lists it.
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
			tamper("someone deletes an element", "delete element inet berth port4 { 198.51.100.1 . tcp . 80 }"),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", mixed),
			checkStep(false),
		}},
		{"drift-node-element-changed", []step{
			syncStep("Sync mixed rules", mixed),
			tamper("someone points an address at another node IP",
				"delete element inet berth node6 { 2001:db8:5::2 }\nadd element inet berth node6 { 2001:db8:5::2 : 2001:db8:1::99 }"),
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
			tamper("someone flushes a chain", "flush chain inet berth rewrite-prerouting"),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", oneTCP),
		}},
		{"drift-table-deleted-during-update", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone deletes the table", "delete table inet berth"),
			syncStep("Sync mixed rules: incremental fails, full rewrite", mixed),
			checkStep(false),
		}},
		{"element-missing-on-delete", []step{
			syncStep("Sync mixed rules", mixed),
			tamper("someone deletes an element Berth is about to delete", "delete element inet berth port4 { 198.51.100.1 . tcp . 443 }"),
			syncStep("Sync without that rule: the batch still succeeds, no rewrite", slices.Delete(slices.Clone(mixed), 1, 2)),
			checkStep(false),
		}},
		{"element-present-on-add", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone adds the element Berth is about to add", "add element inet berth port4 { 198.51.100.1 . tcp . 443 : 30443 }"),
			syncStep("Sync with that rule: the batch still succeeds, no rewrite", mixed[:2]),
			checkStep(false),
		}},
		{"element-conflict-on-add", []step{
			syncStep("Sync one rule", oneTCP),
			tamper("someone adds the element Berth is about to add, with another value",
				"add element inet berth port4 { 198.51.100.1 . tcp . 443 : 39999 }"),
			syncStep("Sync with that rule: the batch fails, full rewrite", mixed[:2]),
			checkStep(false),
		}},
		{"drain", []step{
			drainStep("Drain before the first Sync: written with the table", "198.51.100.1"),
			syncStep("Sync mixed rules", mixed),
			checkStep(false),
			drainStep("Drain another address of each family: one element batch", "198.51.100.2", "2001:db8:5::1"),
			checkStep(false),
			tamper("someone deletes a drain element", "delete element inet berth drain6 { 0x20010db8000500000000000000000001 }"),
			checkStep(true),
			syncStep("Sync same rules: full rewrite, drain elements included", mixed),
			checkStep(false),
			drainStep("Drain nothing: the elements go"),
			checkStep(false),
		}},
		{"source-ranges", []step{
			syncStep("Sync rules with source ranges", ranged),
			checkStep(false),
			syncStep("Sync with other ranges for one rule, none for another: its elements replaced",
				slices.Concat(restricted(ranged[0:1], "203.0.113.0/24"), mixed[1:2], ranged[2:])),
			checkStep(false),
			tamper("someone deletes an allow element", "delete element inet berth allow6 { 2001:db8:5::1 . tcp . 80 . 2001:db8:9::/48 }"),
			checkStep(true),
			syncStep("Sync same rules: full rewrite", slices.Concat(restricted(ranged[0:1], "203.0.113.0/24"), mixed[1:2], ranged[2:])),
			checkStep(false),
		}},
		{"members", []step{
			membersStep("Members before the first Sync: written with the table", 7946, "198.18.0.1", "2001:db8:1::1"),
			syncStep("Sync one rule", oneTCP),
			checkStep(false),
			membersStep("Another node joins: one element batch", 7946, "198.18.0.1", "198.18.0.2", "2001:db8:1::1"),
			checkStep(false),
			membersStep("Port 0: no restriction", 0),
			checkStep(false),
		}},
		{"invalid-rule-isolated", []step{
			syncStep("Sync one rule", oneTCP),
			failing(syncStep("Sync mixed rules and one invalid: the others are programmed",
				append([]Rule{r4("198.51.100.9", TCP, 80, "2001:db8:1::1", 30080)}, mixed...)), IsInvalidRule),
			checkStep(false),
		}},
		{"cleanup", []step{
			syncStep("Sync one rule", oneTCP),
			cleanupStep("Cleanup"),
			checkStep(false),
			cleanupStep("Cleanup again"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, rec, ns, ctx := newNFTForwarder(t, "g")
			for _, s := range tc.steps {
				fmt.Fprintf(&rec.log, "# %s\n", s.name)
				if err := s.do(ctx, f, ns); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			fmt.Fprintf(&rec.log, "# table afterwards (nft --terse list table inet berth; nft -j list set or map, sorted)\n%s", tableListing(t, ns))
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
// written as a whole table, and a small one is not, and that either way
// the table then holds exactly the rules, as the nft binary lists them.
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
			requirePrivileges(t)
			ns := newNetns(t, "c")
			nft, err := NewNFT(NFTOptions{Netns: nsPath(ns)})
			if err != nil {
				t.Fatalf("NewNFT: %v", err)
			}
			_, ctx := ktesting.NewTestContext(t)
			cnt := &countingNFT{NFT: nft}
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
			expectElements(t, ns, manyRules(tc.to))
		})
	}
}

// expectElements checks, with the nft binary, that the port and node maps
// of the table in namespace ns hold exactly the elements of rules.
func expectElements(t *testing.T, ns string, rules []Rule) {
	t.Helper()
	want := map[string][]string{}
	nodes := map[netip.Addr]netip.Addr{}
	for _, r := range rules {
		f := familyOf(r.Address)
		proto, _ := r.Protocol.nftName()
		want[f.portMap] = append(want[f.portMap], fmt.Sprintf("%s . %s . %d : %d", r.Address, proto, r.Port, r.NodePort))
		nodes[r.Address] = r.NodeIP
	}
	for a, ip := range nodes {
		m := familyOf(a).nodeMap
		want[m] = append(want[m], a.String()+" : "+ip.String())
	}
	for _, m := range []string{portMap4, portMap6, nodeMap4, nodeMap6} {
		slices.Sort(want[m])
		got := nftElements(t, ns, m)
		if diff := cmp.Diff(want[m], got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("map %s as nft lists it (-want +got):\n%s", m, diff)
		}
	}
}

// tableListing returns the table in namespace ns as the nft binary lists
// it: its objects and rules, and then the elements of each map and set,
// sorted (nft lists a hash's elements in an order of the kernel's).
func tableListing(t *testing.T, ns string) string {
	t.Helper()
	out := listTable(t, ns, "--terse")
	if out == noTable {
		return out
	}
	var b strings.Builder
	b.WriteString(out)
	for _, s := range sets() {
		fmt.Fprintf(&b, "%s %s:\n", s.kind, s.name)
		for _, e := range nftElements(t, ns, s.name) {
			fmt.Fprintf(&b, "\t%s\n", e)
		}
	}
	return b.String()
}
