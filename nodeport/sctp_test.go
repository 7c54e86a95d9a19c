package nodeport

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/hostdeps"
)

// SCTP chunk types (RFC 9260).
const (
	sctpInit    = 1
	sctpInitAck = 2
)

// sctpPacket builds an SCTP packet of one INIT or INIT ACK chunk, with a
// valid CRC32c. An INIT travels with verification tag 0 and announces tag;
// an INIT ACK carries the peer's tag as verification tag, announces tag
// and holds the mandatory state cookie.
func sctpPacket(chunk byte, src, dst uint16, vtag, tag uint32) []byte {
	p := binary.BigEndian.AppendUint16(nil, src)
	p = binary.BigEndian.AppendUint16(p, dst)
	p = binary.BigEndian.AppendUint32(p, vtag)
	p = append(p, 0, 0, 0, 0) // checksum, set below
	length := uint16(20)
	if chunk == sctpInitAck {
		length += 12
	}
	p = append(p, chunk, 0)
	p = binary.BigEndian.AppendUint16(p, length)
	p = binary.BigEndian.AppendUint32(p, tag)
	p = binary.BigEndian.AppendUint32(p, 65536) // a_rwnd
	p = binary.BigEndian.AppendUint16(p, 1)     // outbound streams
	p = binary.BigEndian.AppendUint16(p, 1)     // inbound streams
	p = binary.BigEndian.AppendUint32(p, tag)   // initial TSN
	if chunk == sctpInitAck {
		p = append(p, 0, 7, 0, 12) // state cookie parameter
		p = append(p, "cookie!!"...)
	}
	binary.LittleEndian.PutUint32(p[8:], crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli)))
	return p
}

// sctpHeader is what the test checks of a received SCTP packet.
type sctpHeader struct {
	src, dst uint16
	vtag     uint32
	chunk    byte
}

// parseSCTP returns the header of p, or an error if p is too short or its
// CRC32c is wrong.
func parseSCTP(p []byte) (sctpHeader, error) {
	if len(p) < 16 {
		return sctpHeader{}, fmt.Errorf("SCTP packet of %d bytes", len(p))
	}
	c := make([]byte, len(p))
	copy(c, p)
	sum := binary.LittleEndian.Uint32(c[8:])
	copy(c[8:12], []byte{0, 0, 0, 0})
	if want := crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli)); sum != want {
		return sctpHeader{}, fmt.Errorf("bad CRC32c %#08x, want %#08x", sum, want)
	}
	return sctpHeader{src: binary.BigEndian.Uint16(p), dst: binary.BigEndian.Uint16(p[2:]),
		vtag: binary.BigEndian.Uint32(p[4:]), chunk: p[12]}, nil
}

// listenSCTPRaw opens a raw IP socket for protocol 132 bound to addr in
// namespace ns: it receives every SCTP packet to addr, which needs no SCTP
// support in the kernel (the test kernel has none).
func listenSCTPRaw(t *testing.T, ns string, addr netip.Addr) *net.IPConn {
	t.Helper()
	network := "ip4:132"
	if addr.Is6() {
		network = "ip6:132"
	}
	var c net.PacketConn
	if err := inNetns(nsPath(ns), func() (err error) { c, err = net.ListenPacket(network, addr.String()); return err }); err != nil {
		t.Fatalf("raw SCTP socket on %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.IPConn)
}

// readSCTP reads one SCTP packet from c within two seconds.
func readSCTP(c *net.IPConn) (netip.Addr, sctpHeader, error) {
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		return netip.Addr{}, sctpHeader{}, err
	}
	h, err := parseSCTP(buf[:n])
	addr, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
	return addr.Unmap(), h, err
}

// TestSCTPInNetns checks SCTP forwarding with hand-made packets, since the
// test kernel has no SCTP sockets: a client's INIT to address:port must
// reach the node's raw socket addressed to node IP:NodePort with a valid
// CRC32c, and the node's INIT ACK must reach the client from address:port.
// This needs conntrack's SCTP support (CONFIG_NF_CT_PROTO_SCTP), not the
// SCTP protocol itself.
func TestSCTPInNetns(t *testing.T) {
	l := newLab(t)
	loadConntrackSCTP(t)
	rules := []Rule{
		{Address: svcIP4, Protocol: SCTP, Port: 9000, NodeIP: nodeIP4, NodePort: 30900},
		{Address: svcIP6, Protocol: SCTP, Port: 9000, NodeIP: nodeIP6, NodePort: 30900},
	}
	if err := l.fwd.Sync(l.ctx, rules); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	// Asked in the node's namespace, after the rules that need conntrack
	// are in: whatever ran before this test, conntrack is loaded by now.
	if _, err := l.readInNode(t, "/proc/sys/net/netfilter/nf_conntrack_sctp_timeout_cookie_wait"); err != nil {
		hostdeps.Skip(t, "skipping: the kernel's conntrack has no SCTP support (CONFIG_NF_CT_PROTO_SCTP): %v", err)
	}
	for i, tc := range []struct{ svc, client, node netip.Addr }{
		{svcIP4, clientIP4, nodeIP4},
		{svcIP6, clientIP6, nodeIP6},
	} {
		t.Run(tc.svc.String(), func(t *testing.T) {
			node := listenSCTPRaw(t, l.node, tc.node)
			client := listenSCTPRaw(t, l.client, tc.client)
			port, tag := uint16(40000+i), uint32(0x1000+i)
			if _, err := client.WriteTo(sctpPacket(sctpInit, port, 9000, 0, tag), &net.IPAddr{IP: tc.svc.AsSlice()}); err != nil {
				t.Fatalf("sending INIT: %v", err)
			}
			from, h, err := readSCTP(node)
			if err != nil {
				t.Fatalf("node: INIT to %s: %v", netip.AddrPortFrom(tc.svc, 9000), err)
			}
			// The socket is bound to the node IP, so the destination
			// address was rewritten too.
			if want := (sctpHeader{src: port, dst: 30900, chunk: sctpInit}); from != tc.client || h != want {
				t.Fatalf("node got %+v from %s, want %+v from %s", h, from, want, tc.client)
			}
			if _, err := node.WriteTo(sctpPacket(sctpInitAck, 30900, port, tag, 0x2000), &net.IPAddr{IP: tc.client.AsSlice()}); err != nil {
				t.Fatalf("sending INIT ACK: %v", err)
			}
			from, h, err = readSCTP(client)
			if err != nil {
				t.Fatalf("client: INIT ACK: %v", err)
			}
			if want := (sctpHeader{src: 9000, dst: port, vtag: tag, chunk: sctpInitAck}); from != tc.svc || h != want {
				t.Fatalf("client got %+v from %s, want %+v from %s", h, from, want, tc.svc)
			}
		})
	}
}

// loadConntrackSCTP loads conntrack and its SCTP tracker where they are
// modules, so that the test does not depend on an earlier test having
// loaded them. Since Linux 5.1 SCTP tracking is part of nf_conntrack
// (nf_conntrack_proto_sctp before); a kernel with them built in, or without
// modprobe, needs nothing, and the check after Sync says what is missing.
func loadConntrackSCTP(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("modprobe"); err != nil {
		return
	}
	for _, m := range []string{"nf_conntrack", "nf_conntrack_proto_sctp"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Logf("modprobe %s: %v %s", m, err, out)
		}
	}
}

// readInNode reads a file from inside the node's namespace, where
// /proc/sys/net shows that namespace's settings.
func (l *lab) readInNode(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	var b []byte
	err := inNetns(nsPath(l.node), func() (err error) {
		b, err = os.ReadFile(path)
		return err
	})
	return b, err
}
