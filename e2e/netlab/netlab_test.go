package netlab_test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"testing"

	"github.com/berthlb/berth/e2e/netlab"
)

// TestLab checks that hosts reach a server in the root namespace on both of
// the bridge's addresses, and that cleanup removes every namespace and link.
func TestLab(t *testing.T) {
	netlab.RequireRoot(t)
	var id string
	t.Run("reach the bridge", func(t *testing.T) {
		lab := netlab.New(t)
		id = lab.ID
		if len(lab.Bridge) > 15 {
			t.Errorf("bridge name %q is longer than IFNAMSIZ-1", lab.Bridge)
		}
		hosts := []*netlab.Host{lab.AddHost("a"), lab.AddHost("b")}
		if hosts[0].IPv4 == hosts[1].IPv4 || !lab.Prefix4.Contains(hosts[1].IPv4) || !lab.Prefix6.Contains(hosts[1].IPv6) {
			t.Fatalf("bad host addresses: %+v %+v in %v %v", hosts[0], hosts[1], lab.Prefix4, lab.Prefix6)
		}
		for _, gw := range []netip.Addr{lab.Gateway4, lab.Gateway6} {
			l, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprint(w, r.RemoteAddr)
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
			for _, h := range hosts {
				out, err := h.Exec(t.Context(), "curl", "-sS", "--max-time", "5", "http://"+l.Addr().String()+"/")
				if err != nil {
					t.Fatal(err)
				}
				from, err := netip.ParseAddrPort(out)
				want := h.IPv4
				if gw.Is6() {
					want = h.IPv6
				}
				if err != nil || from.Addr() != want {
					t.Errorf("%s reached %s from %q, want %s", h.Name, gw, out, want)
				}
			}
		}
	})
	if id == "" {
		return
	}
	namespaces, links, err := netlab.Leftovers(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(namespaces) > 0 || len(links) > 0 {
		t.Errorf("lab %s left namespaces %v and links %v", id, namespaces, links)
	}
}
