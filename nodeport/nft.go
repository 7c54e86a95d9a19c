package nodeport

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"
)

// NFT is the part of knftables.Interface a Forwarder uses: build and run
// transactions against its one table, and read back chains and maps. Both
// knftables.New and knftables.NewFake satisfy it; NewNFT builds the real one.
type NFT interface {
	// NewTransaction returns an empty transaction for the table.
	NewTransaction() *knftables.Transaction
	// Run applies tx atomically.
	Run(ctx context.Context, tx *knftables.Transaction) error
	// ListRules returns the rules of one chain of the table.
	ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error)
	// ListElements returns the elements of a set or map of the table.
	ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error)
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

// NewNFT returns an NFT that runs the nft binary (which must be on PATH,
// version 1.0.1 or later) against table inet opts.Table.
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
	if opts.Netns == "" {
		return nft, nil
	}
	return &netnsNFT{inner: nft, netns: opts.Netns}, nil
}

// netnsNFT runs every nft command of inner inside a network namespace.
type netnsNFT struct {
	inner knftables.Interface
	netns string
}

func (n *netnsNFT) NewTransaction() *knftables.Transaction { return n.inner.NewTransaction() }

func (n *netnsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	return inNetns(n.netns, func() error { return n.inner.Run(ctx, tx) })
}

func (n *netnsNFT) ListRules(ctx context.Context, chain string) ([]*knftables.Rule, error) {
	var rules []*knftables.Rule
	err := inNetns(n.netns, func() error {
		var err error
		rules, err = n.inner.ListRules(ctx, chain)
		return err
	})
	return rules, err
}

func (n *netnsNFT) ListElements(ctx context.Context, objectType, name string) ([]*knftables.Element, error) {
	var elems []*knftables.Element
	err := inNetns(n.netns, func() error {
		var err error
		elems, err = n.inner.ListElements(ctx, objectType, name)
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
