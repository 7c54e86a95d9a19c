package speaker

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthlb/berth/internal/hostdeps"
)

// TestNetlinkRoutes checks, in a network namespace of its own, that the
// drain routes replace exactly the routes of RouteProtocol, leftovers
// included, and leave every other route alone.
func TestNetlinkRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		hostdeps.Skip(t, "needs root to create a network namespace")
	}
	errc := make(chan error, 1)
	var got [][]string
	go func() {
		// The thread stays locked and dies with the goroutine, so that
		// no other goroutine runs in the namespace.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth1"}
			if err := netlink.LinkAdd(link); err != nil {
				return err
			}
			for _, name := range []string{"eth0", "eth1"} {
				l, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if err := netlink.LinkSetUp(l); err != nil {
					return err
				}
			}
			for _, p := range []string{"198.18.0.1/24", "2001:db8:1::1/64"} {
				a, _ := netlink.ParseAddr(p)
				if err := netlink.AddrAdd(link, a); err != nil {
					return err
				}
			}
			host := func(a, via string, proto netlink.RouteProtocol) *netlink.Route {
				ip := netip.MustParseAddr(a)
				return &netlink.Route{Dst: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())},
					Gw: net.ParseIP(via), Protocol: proto}
			}
			// A crashed run's leftover, and someone else's route.
			for _, r := range []*netlink.Route{host("198.51.100.9", "198.18.0.9", RouteProtocol), host("198.51.100.10", "198.18.0.10", unix.RTPROT_STATIC)} {
				if err := netlink.RouteAdd(r); err != nil {
					return err
				}
			}
			r := &netlinkRoutes{}
			for _, want := range []map[netip.Addr]netip.Addr{
				{netip.MustParseAddr("198.51.100.5"): netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::5"): netip.MustParseAddr("2001:db8:1::2")},
				{netip.MustParseAddr("198.51.100.5"): netip.MustParseAddr("198.18.0.3")},
				nil,
			} {
				if err := r.Set(want); err != nil {
					return err
				}
				rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
				if err != nil {
					return err
				}
				var step []string
				for _, rt := range rs {
					if rt.Gw != nil {
						step = append(step, rt.Dst.String()+" via "+rt.Gw.String()+" proto "+rt.Protocol.String())
					}
				}
				slices.Sort(step)
				got = append(got, step)
			}
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"198.51.100.10/32 via 198.18.0.10 proto static", "198.51.100.5/32 via 198.18.0.2 proto 190", "2001:db8::5/128 via 2001:db8:1::2 proto 190"},
		{"198.51.100.10/32 via 198.18.0.10 proto static", "198.51.100.5/32 via 198.18.0.3 proto 190"},
		{"198.51.100.10/32 via 198.18.0.10 proto static"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes after each Set (-want +got):\n%s", diff)
	}
}
