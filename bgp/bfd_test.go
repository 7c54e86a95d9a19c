package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"

	"github.com/berthlb/berth/bfd"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
	"github.com/berthlb/berth/internal/testwait"
)

// bfdLab is an FRR router with bgpd and bfdd ("neighbor X bfd"), and a
// Server whose peer is watched by a BFD session at 300 ms x 3, wired as the
// speaker wires them.
type bfdLab struct {
	lab   *netlab.Lab
	r     *frr.Router
	s     *Server
	bfd   *bfd.Server
	downs chan bfd.Change
	ups   chan bfd.Change
}

func startBFDLab(t *testing.T) *bfdLab {
	t.Helper()
	frr.Require(t)
	frr.LockBFDPorts(t)
	lab := netlab.New(t)
	r := frr.Start(t, lab, "r1", frr.Config{ASN: routerASN, Neighbors: []frr.Neighbor{{Addr: lab.Gateway4, ASN: localASN}}})
	r.StartBFD(t, []frr.BFDPeer{{Addr: lab.Gateway4, MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3}}, routerASN)
	s := newServer(t, lab)
	l := &bfdLab{lab: lab, r: r, s: s, downs: make(chan bfd.Change, 16), ups: make(chan bfd.Change, 16)}
	ctx := logr.NewContext(context.Background(), testr.New(t))
	b, err := bfd.New(ctx, bfd.Options{Transport: bfd.NewUDP(), OnChange: func(c bfd.Change) {
		if err := s.OnBFD(context.Background(), c); err != nil {
			t.Errorf("OnBFD: %v", err)
		}
		switch c.To {
		case bfd.StateDown:
			l.downs <- c
		case bfd.StateUp:
			l.ups <- c
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	l.bfd = b
	p := Peer{Name: "r1", Address: r.Host.IPv4, ASN: routerASN, LocalASN: localASN, HoldTime: 90 * time.Second}
	if err := s.SetPeers(context.Background(), []Peer{p}); err != nil {
		t.Fatal(err)
	}
	mustAdvertise(t, s, "r1", Advertisement{Prefix: bfdPrefix})
	if err := b.Set(context.Background(), []bfd.Session{{Name: "r1", Peer: r.Host.IPv4, Timers: bfd.Timers{MinTx: 300 * time.Millisecond, MinRx: 300 * time.Millisecond, Multiplier: 3}}}); err != nil {
		t.Fatal(err)
	}
	return l
}

var bfdPrefix = netip.MustParsePrefix("198.51.100.20/32")

// settle waits until BFD and BGP have been steady for a while (FRR's
// bgpd restarts the BFD session it registers once, which we see as the
// neighbor going Down) and forgets the changes seen so far.
func (l *bfdLab) settle(t *testing.T) {
	t.Helper()
	for {
		time.Sleep(2 * time.Second)
		seen := 0
		for drained := false; !drained; {
			select {
			case <-l.downs:
				seen++
			case <-l.ups:
				seen++
			default:
				drained = true
			}
		}
		testwait.Eventually(t, 10*time.Second, func() error {
			if st := l.bfd.Status(); len(st) != 1 || st[0].State != bfd.StateUp {
				return fmt.Errorf("BFD %+v", st)
			}
			return nil
		})
		l.waitRouted(t, 20*time.Second, true)
		if seen == 0 {
			return
		}
	}
}

func wait(t *testing.T, ch chan bfd.Change, d time.Duration, what string) bfd.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(d):
		t.Fatalf("no BFD %s within %v", what, d)
		return bfd.Change{}
	}
}

// waitRouted waits until the router has (or has not) the route, and the
// session is (or is not) Established on both sides.
func (l *bfdLab) waitRouted(t *testing.T, d time.Duration, want bool) {
	t.Helper()
	testwait.Eventually(t, d, func() error {
		st := peerStatus(t, l.s, "r1")
		frrState, _ := l.r.NeighborState(t, l.lab.Gateway4)
		has := l.r.Path(t, bfdPrefix) != nil
		if (st.State == StateEstablished) != want || (frrState == "Established") != want || has != want {
			return fmt.Errorf("ours %s, FRR's %s, route at FRR: %v; want up: %v", st.State, frrState, has, want)
		}
		return nil
	})
}

// TestBFDTearsDownBGP: with the path to the router cut (a pulled link),
// BFD at 300 ms x 3 takes the BGP session down in under a second, instead
// of the 90 s hold time, and FRR drops the route; when the link is back,
// the session is up again as soon as BFD is, and the route is back. A flap
// shorter than the detection time changes nothing.
func TestBFDTearsDownBGP(t *testing.T) {
	l := startBFDLab(t)
	wait(t, l.ups, 10*time.Second, "up")
	l.waitRouted(t, 20*time.Second, true)
	l.settle(t)

	for i := range 2 {
		cut := time.Now()
		if err := l.lab.SetLink(l.r.Host, false); err != nil {
			t.Fatal(err)
		}
		down := wait(t, l.downs, 3*time.Second, "down")
		testwait.Eventually(t, 3*time.Second, func() error {
			if st := peerStatus(t, l.s, "r1"); st.State == StateEstablished {
				return errors.New("BGP session still established")
			}
			return nil
		})
		bgpDown := time.Since(cut)
		if took := down.At.Sub(cut); took > time.Second {
			t.Errorf("BFD down after %v, want under 1s", took)
		}
		if !l.s.BFDHeldDown("r1") {
			t.Error("session not held down")
		}
		testwait.Eventually(t, 5*time.Second, func() error {
			if l.r.Path(t, bfdPrefix) != nil {
				return errors.New("FRR still has the route")
			}
			return nil
		})
		routeGone := time.Since(cut)
		time.Sleep(2 * time.Second) // stays down while the path is

		if st := peerStatus(t, l.s, "r1"); st.State == StateEstablished {
			t.Fatalf("BGP session re-established over a dead path: %+v", st)
		}
		back := time.Now()
		if err := l.lab.SetLink(l.r.Host, true); err != nil {
			t.Fatal(err)
		}
		up := wait(t, l.ups, 10*time.Second, "up")
		testwait.Eventually(t, 20*time.Second, func() error {
			if st := peerStatus(t, l.s, "r1"); st.State != StateEstablished {
				return fmt.Errorf("BGP session %s", st.State)
			}
			return nil
		})
		established := time.Since(back)
		l.waitRouted(t, 20*time.Second, true)
		routeBack := time.Since(back)
		l.settle(t)
		t.Logf("flap %d: BFD down %v and BGP down %v after the cut, route gone at FRR after %v; BFD up %v, BGP established %v and route back at FRR %v after the link",
			i, down.At.Sub(cut).Round(time.Millisecond), bgpDown.Round(time.Millisecond), routeGone.Round(time.Millisecond),
			up.At.Sub(back).Round(time.Millisecond), established.Round(time.Millisecond), routeBack.Round(time.Millisecond))
		if l.s.BFDHeldDown("r1") {
			t.Error("session still held down")
		}
	}

	t.Run("a flap under the detection time changes nothing", func(t *testing.T) {
		// Silent loss: a pulled link FRR would see (it takes its BFD
		// sessions down with the interface).
		hostdeps.Require(t, "nft")
		_, before := l.r.NeighborState(t, l.lab.Gateway4)
		if out, err := l.r.Host.Exec(context.Background(), "nft", "add table inet bfdloss; add chain inet bfdloss in { type filter hook input priority 0; policy drop; }; add chain inet bfdloss out { type filter hook output priority 0; policy drop; }"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		time.Sleep(400 * time.Millisecond)
		if out, err := l.r.Host.Exec(context.Background(), "nft", "delete table inet bfdloss"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		select {
		case c := <-l.downs:
			t.Fatalf("BFD went down: %+v", c)
		case <-time.After(2 * time.Second):
		}
		if state, after := l.r.NeighborState(t, l.lab.Gateway4); state != "Established" || after != before {
			t.Errorf("FRR's session %s, established %d times, was %d", state, after, before)
		}
	})

	t.Run("removing BFD holds nothing down", func(t *testing.T) {
		// Our session goes AdminDown, which must not be taken for a
		// failure (RFC 5882 §3.2). FRR 8.4's bgpd resets its BGP
		// session on it all the same (Cease, BFD Down); the session must
		// come back without BFD.
		if err := l.bfd.Set(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if l.s.BFDHeldDown("r1") {
			t.Error("session held down after BFD was removed")
		}
		l.waitRouted(t, 20*time.Second, true)
	})
}
