package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/e2e/frr"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// The forwarding lab's pool.
const (
	fwdPool4 = "198.51.100.0/24"
	fwdPool6 = "2001:db8:5100::/112"
)

// fwdLab is a speakerLab whose nodes forward: an FRR router learning the
// Service addresses over BGP (ECMP), a client namespace on a subnet of its
// own behind the router, and the speakers with forwarding on.
type fwdLab struct {
	*speakerLab
	router *frr.Router
	client *netlab.Host
	// started is when newFwdLab was called, for timings.
	started time.Time
}

// newFwdLab builds the lab with two nodes and starts their speakers with
// forwarding on, a 1 s drift check and cleanup on exit.
func newFwdLab(t *testing.T) *fwdLab {
	t.Helper()
	return newFwdLabWith(t, nil, "--forwarding=true", "--drift-check-interval=1s", "--cleanup-on-exit")
}

// newFwdLabWith is newFwdLab with the controller's extra args and the
// speakers' args.
func newFwdLabWith(t *testing.T, ctrlArgs []string, speakerArgs ...string) *fwdLab {
	t.Helper()
	started := time.Now()
	frr.Require(t)
	requireFwdTools(t)
	sl := newSpeakerLabWith(t, 2, controlplane.Options{}, ctrlArgs...)
	r := frr.Start(t, sl.lab, "r1", frr.Config{ASN: routerASN, Neighbors: sl.neighbors(nodeASN, ""), MaximumPaths: 8})
	fl := &fwdLab{speakerLab: sl, router: r, started: started}
	// The router routes, and hashes ECMP flows on ports too, so that one
	// client reaches both nodes.
	mustExec(t, r.Host, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1")
	client, err := sl.lab.AddHostBehind(t.Context(), r.Host, "client")
	if err != nil {
		t.Fatal(err)
	}
	fl.client = client
	for _, n := range sl.nodes {
		// The nodes have no default route: send replies to the client
		// back through the router.
		if err := netlab.RouteBehind(t.Context(), n.host, r.Host); err != nil {
			t.Fatal(err)
		}
	}
	sl.e.pool(t, "main", v1alpha1.BerthIPPoolSpec{Addresses: []v1alpha1.AddressRange{v1alpha1.AddressRange(fwdPool4), v1alpha1.AddressRange(fwdPool6)}})
	sl.bgpPeer("r1-v4", r.Host.IPv4, routerASN, nodeASN)
	sl.bgpPeer("r1-v6", r.Host.IPv6, routerASN, nodeASN)
	sl.advertise("main", v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: v1alpha1.AdvertisementSelector{IPPools: []string{"main"}}})
	sl.startSpeakers(speakerArgs...)
	waitSessions(t, r, sl.addrs(false), sl.addrs(true))
	t.Logf("forwarding lab up after %v", time.Since(started))
	return fl
}

// requireFwdTools skips the test when nft or curl is missing.
func requireFwdTools(t *testing.T) {
	t.Helper()
	hostdeps.Require(t, "nft", "curl")
}

func mustExec(t testing.TB, h *netlab.Host, argv ...string) string {
	t.Helper()
	out, err := h.Exec(t.Context(), argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listen starts, in every node, the stand-ins for a NodePort on the node's
// IPv4 and IPv6 addresses: an HTTP server (TCP) or an echo (UDP), each
// answering "<node> <nodePort> <client address:port>".
func (fl *fwdLab) listen(t *testing.T, proto string, nodePort int) {
	t.Helper()
	for _, n := range fl.nodes {
		for _, a := range []netip.Addr{n.host.IPv4, n.host.IPv6} {
			addr := netip.AddrPortFrom(a, uint16(nodePort)).String()
			l, pc, err := n.host.Listen(proto, addr)
			if err != nil {
				t.Fatalf("%s: listen %s %s: %v", n.name, proto, addr, err)
			}
			if pc != nil {
				t.Cleanup(func() { _ = pc.Close() })
				go udpEcho(pc, n.name, nodePort)
				continue
			}
			srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %d %s\n", n.name, nodePort, r.RemoteAddr)
			})}
			t.Cleanup(func() { _ = srv.Close() })
			go func() { _ = srv.Serve(l) }()
		}
	}
}

func udpEcho(pc net.PacketConn, node string, nodePort int) {
	buf := make([]byte, 1500)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(fmt.Appendf(nil, "%s %d %s\n", node, nodePort, from), from)
	}
}

// answer is what a NodePort stand-in said.
type answer struct {
	node     string
	nodePort int
	client   netip.AddrPort
}

func parseAnswer(s string) (answer, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return answer{}, fmt.Errorf("unexpected answer %q", s)
	}
	np, err := strconv.Atoi(f[1])
	if err != nil {
		return answer{}, fmt.Errorf("answer %q: %w", s, err)
	}
	c, err := netip.ParseAddrPort(f[2])
	if err != nil {
		return answer{}, fmt.Errorf("answer %q: %w", s, err)
	}
	return answer{node: f[0], nodePort: np, client: c}, nil
}

// get fetches http://addr:port/ from the client with curl.
func (fl *fwdLab) get(ctx context.Context, addr netip.Addr, port int) (answer, error) {
	url := "http://" + netip.AddrPortFrom(addr, uint16(port)).String() + "/"
	out, err := fl.client.Exec(ctx, "curl", "-sS", "-g", "--connect-timeout", "1", "--max-time", "2", url)
	if err != nil {
		return answer{}, fmt.Errorf("curl %s: %w", url, err)
	}
	return parseAnswer(out)
}

// udp sends one datagram from the client to addr:port and reads the
// answer. The socket is connected, so only an answer from addr:port (the
// NodePort's reply translated back by conntrack) is received.
func (fl *fwdLab) udp(ctx context.Context, addr netip.Addr, port int) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := fl.client.DialContext(ctx, "udp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return answer{}, err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	_ = c.SetDeadline(dl)
	if _, err := c.Write([]byte("ping")); err != nil {
		return answer{}, err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return answer{}, fmt.Errorf("udp %s:%d: %w", addr, port, err)
	}
	return parseAnswer(string(buf[:n]))
}

// request is fl.get or fl.udp.
type request func(context.Context, netip.Addr, int) (answer, error)

// waitAnswer polls req until it answers from nodePort, within d.
func waitAnswer(t testing.TB, req request, addr netip.Addr, port, nodePort int, d time.Duration) (answer, time.Duration) {
	t.Helper()
	var a answer
	took := poll(t, d, fmt.Sprintf("client reaches NodePort %d through %s", nodePort, netip.AddrPortFrom(addr, uint16(port))), func() error {
		var err error
		if a, err = req(t.Context(), addr, port); err != nil {
			return err
		}
		if a.nodePort != nodePort {
			return fmt.Errorf("answered by NodePort %d (%s)", a.nodePort, a.node)
		}
		return nil
	})
	return a, took
}

// waitNoAnswer polls req until it fails twice in a row, within d.
func waitNoAnswer(t testing.TB, req request, addr netip.Addr, port int, d time.Duration) time.Duration {
	t.Helper()
	failures := 0
	return poll(t, d, fmt.Sprintf("%s stops answering", netip.AddrPortFrom(addr, uint16(port))), func() error {
		a, err := req(t.Context(), addr, port)
		if err == nil {
			failures = 0
			return fmt.Errorf("still answered by %s NodePort %d", a.node, a.nodePort)
		}
		if failures++; failures < 2 {
			return errors.New("failed once")
		}
		return nil
	})
}

// nftTable returns `nft list table inet berth` in n, and whether it exists.
func nftTable(t testing.TB, n *labNode) (string, bool) {
	t.Helper()
	out, err := n.host.Exec(t.Context(), "nft", "list", "table", "inet", "berth")
	if err != nil {
		if strings.Contains(out, "No such file") {
			return "", false
		}
		t.Fatalf("%s: nft list table: %v", n.name, err)
	}
	return out, true
}

// counter returns the value of an unlabelled metric of p, -1 if absent.
func counter(t testing.TB, p *speakerProc, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(body)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	return -1
}
