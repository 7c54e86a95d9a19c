package nodeport

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"

	gnft "github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// NFT is what a Forwarder needs of nftables for its one table: whole-table
// transactions and reads, in knftables' terms, and element updates. NewNFT
// builds the real one, which runs the nft binary for the former and talks
// netlink for the latter (see doc.go for why).
type NFT interface {
	// NewTransaction returns an empty transaction for the table.
	NewTransaction() *knftables.Transaction
	// Run applies tx atomically.
	Run(ctx context.Context, tx *knftables.Transaction) error
	// ListRules returns the rules of one chain of the table.
	ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error)
	// ListElements returns the elements of a set or map of the table.
	ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error)
	// UpdateElements applies ops, in order, to the table's maps as one
	// atomic batch: all of them or none. It reads nothing first. As in the
	// kernel, adding an element that is already there with the same value
	// succeeds, while adding one that holds another value, deleting one
	// that is missing, or naming a missing map or table fails the batch.
	UpdateElements(ctx context.Context, ops []ElementOp) error
}

// ElementOp is one step of NFT.UpdateElements.
type ElementOp struct {
	// Delete, if set, removes the element with Element's key (its value
	// is ignored); otherwise the element is added.
	Delete bool
	// Element names the map (Element.Map), key and value.
	Element *knftables.Element
}

// DefaultTable is the name of the inet table a Forwarder owns by default.
const DefaultTable = "berth"

// NFTOptions configure NewNFT.
type NFTOptions struct {
	// Table is the name of the inet table to own; DefaultTable if empty.
	Table string
	// Netns, if set, is the path of a network namespace (such as
	// /run/netns/NAME or /proc/PID/ns/net) whose nftables to program instead
	// of the caller's. The speaker leaves it empty; tests use it.
	Netns string
}

// NewNFT returns the NFT of table inet opts.Table: it runs the nft binary
// (which must be on PATH, version 1.0.1 or later) for transactions and
// reads, and sends element updates over netlink itself.
func NewNFT(opts NFTOptions) (NFT, error) {
	table := opts.Table
	if table == "" {
		table = DefaultTable
	}
	var nft knftables.Interface
	err := inNetns(opts.Netns, func() error {
		var err error
		nft, err = knftables.New(knftables.InetFamily, table)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("setting up nftables for table inet %s: %w", table, err)
	}
	return &nftables{knft: nft, table: table, netns: opts.Netns}, nil
}

// nftables is the NFT NewNFT returns. Its knftables methods run every nft
// command inside netns, if set; UpdateElements, in netlink.go, keeps a
// netlink socket open between batches.
type nftables struct {
	knft  knftables.Interface
	table string
	netns string

	mu   sync.Mutex
	conn *gnft.Conn    // lasting netlink connection; nil until the first batch and after an error
	sock *netlink.Conn // conn's socket, to set deadlines on
}

func (n *nftables) NewTransaction() *knftables.Transaction { return n.knft.NewTransaction() }

func (n *nftables) Run(ctx context.Context, tx *knftables.Transaction) error {
	return inNetns(n.netns, func() error { return n.knft.Run(ctx, tx) })
}

func (n *nftables) ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error) {
	var rules []*knftables.Rule
	err := inNetns(n.netns, func() error {
		var err error
		rules, err = n.knft.ListRules(ctx, chain)
		return err
	})
	return rules, err
}

func (n *nftables) ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error) {
	var elems []*knftables.Element
	err := inNetns(n.netns, func() error {
		var err error
		elems, err = n.knft.ListElements(ctx, objectType, name)
		return err
	})
	return elems, err
}

// inNetns runs fn on a fresh OS thread that has joined the network namespace
// at path (or directly, if path is empty). knftables forks nft from the
// calling thread, and a child inherits that thread's namespaces, so this is
// enough to make nft act in the namespace. The thread is never unlocked: Go
// then discards it when the goroutine ends, rather than reusing a thread in
// the wrong namespace.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("opening network namespace: %w", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
