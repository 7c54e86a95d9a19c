package frr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/hostdeps"
)

// BFDPeer is one peer of FRR's bfdd.
type BFDPeer struct {
	// Addr is the peer's address; Local, if valid, FRR's own.
	Addr, Local netip.Addr
	// Neighbor, if set, names the BGP neighbor whose session the profile
	// is for, when it is not Addr (an interface neighbor's interface).
	Neighbor string
	Multihop bool
	// MinTx, MinRx and Multiplier default to FRR's 300 ms, 300 ms and 3.
	MinTx, MinRx time.Duration
	Multiplier   int
}

// StartBFD runs FRR's bfdd next to the router's zebra and bgpd until tb's
// cleanup, with a profile per peer. Without bgpASN, bfdd runs the peers'
// sessions itself; with it, each peer is a BGP neighbor of that AS whose
// bgpd asks bfdd for the session ("neighbor X bfd profile"), so that bgpd
// drops the BGP session, and the routes learnt over it, when BFD goes
// down. Configuring both would make bfdd restart the session once.
func (r *Router) StartBFD(tb testing.TB, peers []BFDPeer, bgpASN uint32) {
	tb.Helper()
	hostdeps.Require(tb, filepath.Join(Dir, "bfdd"))
	if err := r.writeFile("bfdd.conf", bfddConf(r.Host.Name, peers, bgpASN == 0)); err != nil {
		tb.Fatal(err)
	}
	r.logs = append(r.logs, "bfdd.log")
	if err := r.start([]string{filepath.Join(Dir, "bfdd"), "-f", r.path("bfdd.conf"), "-i", r.path("bfdd.pid"),
		"--log", "file:" + r.path("bfdd.log"), "--bfdctl", r.path("bfdd.sock"),
		"-P", "0", "-z", r.path("zserv.api"), "--vty_socket", r.Dir}); err != nil {
		tb.Fatal(err)
	}
	if err := r.waitFor(context.Background(), "bfdd.vty"); err != nil {
		tb.Fatal(err)
	}
	if bgpASN == 0 {
		return
	}
	args := []string{"--vty_socket", r.Dir, "-c", "configure terminal", "-c", fmt.Sprintf("router bgp %d", bgpASN)}
	for i, p := range peers {
		neighbor := p.Neighbor
		if neighbor == "" {
			neighbor = p.Addr.String()
		}
		args = append(args, "-c", fmt.Sprintf("neighbor %s bfd profile p%d", neighbor, i))
	}
	r.vtyshArgs(tb, args)
}

func bfddConf(name string, peers []BFDPeer, sessions bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\nbfd\n", name)
	for i, p := range peers {
		fmt.Fprintf(&b, " profile p%d\n", i)
		if p.MinTx != 0 {
			fmt.Fprintf(&b, "  transmit-interval %d\n", p.MinTx.Milliseconds())
		}
		if p.MinRx != 0 {
			fmt.Fprintf(&b, "  receive-interval %d\n", p.MinRx.Milliseconds())
		}
		if p.Multiplier != 0 {
			fmt.Fprintf(&b, "  detect-multiplier %d\n", p.Multiplier)
		}
		b.WriteString(" !\n")
	}
	for i, p := range peers {
		if !sessions {
			break
		}
		fmt.Fprintf(&b, " peer %s", p.Addr)
		if p.Multihop {
			b.WriteString(" multihop")
		}
		if p.Local.IsValid() {
			fmt.Fprintf(&b, " local-address %s", p.Local)
		}
		fmt.Fprintf(&b, "\n  profile p%d\n  no shutdown\n !\n", i)
	}
	b.WriteString("!\n")
	return b.String()
}

func (r *Router) vtyshArgs(tb testing.TB, args []string) string {
	tb.Helper()
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("vtysh %q: %v: %s", args, err, out)
	}
	return string(out)
}

// BFDPeerState is FRR's view of one BFD session.
type BFDPeerState struct {
	Peer     string `json:"peer"`
	Local    string `json:"local"`
	Multihop bool   `json:"multihop"`
	Status   string `json:"status"` // "up", "down", "init", "shutdown"
	Diag     string `json:"diagnostic"`
	RemoteID uint32 `json:"remote-id"`
	// The intervals FRR negotiated, in milliseconds.
	TransmitInterval int `json:"transmit-interval"`
	ReceiveInterval  int `json:"receive-interval"`
	DetectMultiplier int `json:"detect-multiplier"`
	RemoteTransmit   int `json:"remote-transmit-interval"`
	RemoteReceive    int `json:"remote-receive-interval"`
	RemoteMultiplier int `json:"remote-detect-multiplier"`
}

// BFDPeers returns bfdd's sessions ("show bfd peers json").
func (r *Router) BFDPeers(tb testing.TB) []BFDPeerState {
	tb.Helper()
	var got []BFDPeerState
	out := r.Vtysh(tb, "show bfd peers json")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		tb.Fatalf("parse %q: %v", out, err)
	}
	return got
}

// BFDPeer returns bfdd's session with addr, or nil.
func (r *Router) BFDPeer(tb testing.TB, addr netip.Addr) *BFDPeerState {
	tb.Helper()
	for _, p := range r.BFDPeers(tb) {
		if p.Peer == addr.String() {
			return &p
		}
	}
	return nil
}

// LockBFDPorts serialises, across test processes, the tests that listen
// on the BFD ports (3784, 4784) in the root network namespace, where only
// one can at a time: go test runs packages in parallel. It holds an
// exclusive lock until tb's cleanup.
func LockBFDPorts(tb testing.TB) {
	tb.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "berth-bfd-ports.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() }) // closing releases the lock
}
