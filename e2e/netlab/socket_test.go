package netlab_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/netlab"
)

// TestSockets checks that Listen and DialContext make their sockets in the
// host's namespace, and that doing so leaves this process's threads (and the
// children they started, which have Pdeathsig) alone.
func TestSockets(t *testing.T) {
	lab := netlab.New(t)
	a, b := lab.AddHost("a"), lab.AddHost("b")
	// A child started before: it dies if its starting thread ends.
	child := a.Command(context.Background(), "sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range []struct{ srv, cli netip.Addr }{{a.IPv4, b.IPv4}, {a.IPv6, b.IPv6}} {
		for _, proto := range []string{"tcp", "udp"} {
			// a's address exists only in a's namespace: listening
			// there proves the socket is in it.
			l, pc, err := a.Listen(proto, netip.AddrPortFrom(fam.srv, 0).String())
			if err != nil {
				t.Fatalf("listen %s on %s: %v", proto, fam.srv, err)
			}
			var addr string
			if l != nil {
				addr = l.Addr().String()
				go func() {
					c, err := l.Accept()
					if err == nil {
						_, _ = io.WriteString(c, c.RemoteAddr().String())
						_ = c.Close()
					}
				}()
				defer l.Close()
			} else {
				addr = pc.LocalAddr().String()
				go func() {
					buf := make([]byte, 64)
					if _, from, err := pc.ReadFrom(buf); err == nil {
						_, _ = pc.WriteTo([]byte(from.String()), from)
					}
				}()
				defer pc.Close()
			}
			c, err := b.DialContext(t.Context(), proto, addr)
			if err != nil {
				t.Fatalf("dial %s %s from b: %v", proto, addr, err)
			}
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if proto == "udp" {
				_, _ = c.Write([]byte("x"))
			}
			buf := make([]byte, 64)
			n, err := c.Read(buf)
			_ = c.Close()
			if err != nil {
				t.Fatalf("%s %s: read: %v", proto, addr, err)
			}
			if got, err := netip.ParseAddrPort(string(buf[:n])); err != nil || got.Addr() != fam.cli {
				t.Errorf("%s %s: server saw %q, want b's %s", proto, addr, buf[:n], fam.cli)
			}
		}
	}
	if after, _ := os.Readlink("/proc/self/ns/net"); after != before {
		t.Errorf("process namespace changed from %s to %s", before, after)
	}
	// A dead child not yet waited for is a zombie: state Z.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child.Process.Pid))
	if f := strings.Fields(string(stat)); err != nil || len(f) < 3 || f[2] == "Z" {
		t.Errorf("the child started before is gone: %q %v", stat, err)
	}
}
