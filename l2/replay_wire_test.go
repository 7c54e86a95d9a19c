package l2

import (
	"encoding/binary"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/hostdeps"
)

// capture records the payloads of the UDP packets from port from to port
// to on the loopback interface, as an eavesdropper on the path would (they
// are memberlist's encrypted packets), until stopped.
type capture struct {
	fd       int
	mu       sync.Mutex
	payloads [][]byte
	done     chan struct{}
	stopped  chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startCapture(t *testing.T, from, to int) *capture {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(syscall.ETH_P_IP)))
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_IP), Ifindex: lo.Index}); err != nil {
		t.Fatalf("bind packet socket: %v", err)
	}
	tv := syscall.Timeval{Usec: 50_000}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	c := &capture{fd: fd, done: make(chan struct{}), stopped: make(chan struct{})}
	go c.run(uint16(from), uint16(to))
	t.Cleanup(c.stop)
	return c
}

func (c *capture) run(from, to uint16) {
	defer close(c.stopped)
	buf := make([]byte, 70_000)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, sa, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout
		}
		// Each loopback packet shows twice, outgoing and incoming.
		if ll, ok := sa.(*syscall.SockaddrLinklayer); !ok || ll.Pkttype != syscall.PACKET_HOST {
			continue
		}
		p := buf[:n]
		if len(p) < 20 || p[0]>>4 != 4 || p[9] != syscall.IPPROTO_UDP {
			continue
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 {
			continue
		}
		udp := p[ihl:]
		if binary.BigEndian.Uint16(udp[0:2]) != from || binary.BigEndian.Uint16(udp[2:4]) != to {
			continue
		}
		c.mu.Lock()
		c.payloads = append(c.payloads, slices.Clone(udp[8:]))
		c.mu.Unlock()
	}
}

func (c *capture) stop() {
	select {
	case <-c.done:
	default:
		close(c.done)
		<-c.stopped
		_ = syscall.Close(c.fd)
	}
}

// last returns the n newest payloads.
func (c *capture) last(n int) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.payloads[max(len(c.payloads)-n, 0):])
}

// TestMembersIgnoresReplayedPackets captures node-0's real packets to
// node-1 on the wire, stops node-0 without a goodbye, and replays its last
// packets to node-1 every heartbeat interval: node-1 must still find
// node-0 dead within DeadAfter, and count the replays. Before replay
// protection, the replayed newest heartbeat kept node-0 alive for as long
// as the replay went on.
func TestMembersIgnoresReplayedPackets(t *testing.T) {
	if os.Geteuid() != 0 {
		hostdeps.Skip(t, "capturing packets needs root (CAP_NET_RAW)")
	}
	ms := startMembers(t, 2, testKey)
	both := []string{"node-0", "node-1"}
	for _, m := range ms {
		waitMembers(t, m, both, 5*time.Second)
	}
	a, b := ms[0].ml.LocalNode(), ms[1].ml.LocalNode()
	c := startCapture(t, int(a.Port), int(b.Port))
	time.Sleep(500 * time.Millisecond)
	if err := ms[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.stop()
	captured := c.last(10)
	if len(captured) == 0 {
		t.Fatal("captured nothing from node-0 to node-1")
	}

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := &net.UDPAddr{IP: b.Addr, Port: int(b.Port)}
	stopped := time.Now()
	var goneAfter time.Duration
	for time.Since(stopped) < 2*time.Second {
		for _, p := range captured {
			if _, err := conn.WriteToUDP(p, to); err != nil {
				t.Fatal(err)
			}
		}
		alive := slices.Contains(ms[1].Members(), "node-0")
		switch {
		case !alive && goneAfter == 0:
			goneAfter = time.Since(stopped)
		case alive && goneAfter != 0:
			t.Fatalf("node-0 alive again %v after it stopped, under replay", time.Since(stopped))
		}
		time.Sleep(HeartbeatInterval)
	}
	r := ms[1].Rejected()
	t.Logf("replayed %d captured packets every %v: node-0 dead for node-1 after %v; %+v", len(captured), HeartbeatInterval, goneAfter, r)
	if goneAfter == 0 || goneAfter > DeadAfter+300*time.Millisecond {
		t.Errorf("node-0 still alive for node-1 under replay (gone after %v), want dead within about %v", goneAfter, DeadAfter)
	}
	if r.Replayed == 0 {
		t.Errorf("no replay counted: %+v", r)
	}
}
