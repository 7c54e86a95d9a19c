package l2

import (
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"
)

// heapInUse returns the live Go heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// floodStream connects to addr and sends what memberlist takes for the
// start of an encrypted stream (message type 10, encryptMsg) claiming
// claim bytes, then up to claim bytes of garbage, until the other side
// closes. It returns how many bytes were accepted.
func floodStream(addr string, claim int) int {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	header := binary.BigEndian.AppendUint32([]byte{10}, uint32(claim))
	if _, err := c.Write(header); err != nil {
		return 0
	}
	chunk := make([]byte, 64<<10)
	sent := 0
	for sent < claim {
		n, err := c.Write(chunk[:min(len(chunk), claim-sent)])
		sent += n
		if err != nil {
			break
		}
	}
	return sent
}

// TestMembersBoundedStreams has a few parallel connections stream large
// garbage at a member's port, as anyone who reaches it can, and checks
// that the member's memory stays bounded and that the membership keeps
// working (a new member joins through it, which takes a stream).
func TestMembersBoundedStreams(t *testing.T) {
	const (
		conns = 6
		claim = 20<<20 - 1 // memberlist's own limit is 20 MiB
	)
	ms := startMembers(t, 2, testKey)
	waitMembers(t, ms[0], []string{"node-0", "node-1"}, 5*time.Second)
	addr := ms[0].ml.LocalNode().Address()

	heap0 := heapInUse()
	var peak atomic.Uint64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	var accepted atomic.Int64
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			accepted.Add(int64(floodStream(addr, claim)))
		}()
	}
	wg.Wait()
	close(done)
	<-sampled
	grew := float64(int64(peak.Load())-int64(heap0)) / (1 << 20)
	t.Logf("%d connections of %d MiB each: %.1f MiB accepted in all, heap in use grew %.1f MiB at most; %+v",
		conns, claim>>20, float64(accepted.Load())/(1<<20), grew, ms[0].Rejected())
	if grew > 32 {
		t.Errorf("heap in use grew %.1f MiB while %d connections streamed garbage", grew, conns)
	}

	late := joinThrough(t, "node-2", addr)
	all := []string{"node-0", "node-1", "node-2"}
	for _, m := range append(ms, late) {
		waitMembers(t, m, all, 5*time.Second)
	}
	if r := ms[0].Rejected(); r.StreamsTruncated == 0 && r.StreamsRefused == 0 {
		t.Errorf("no stream was cut short: %+v", r)
	}
}

// TestMembersStreamSlots holds more idle connections open than there are
// slots: the extra ones are closed at once, and the slots come back when
// memberlist's TCPTimeout ends the idle ones.
func TestMembersStreamSlots(t *testing.T) {
	ms := startMembers(t, 1, testKey)
	addr := ms[0].ml.LocalNode().Address()
	const extra = 4
	for range maxStreams + extra {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(time.Second)
	for ms[0].Rejected().StreamsRefused < extra {
		if time.Now().After(deadline) {
			t.Fatalf("streams refused: %+v, want %d", ms[0].Rejected(), extra)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := ms[0].Rejected(); r.StreamsRefused != extra {
		t.Errorf("streams refused: %+v, want exactly %d", r, extra)
	}

	// After TCPTimeout (2s) the idle streams are closed: a new member
	// joins through this one.
	time.Sleep(2500 * time.Millisecond)
	joinThrough(t, "node-9", addr)
	waitMembers(t, ms[0], []string{"node-0", "node-9"}, 5*time.Second)
}

// joinThrough starts a member named name on loopback that joins through
// addr, a stream connection to it.
func joinThrough(t *testing.T, name, addr string) *Members {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	m, err := newMembersOnFreePort(ctx, t, MembersConfig{NodeName: name, SecretKey: testKey, Peers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	if _, err := m.Join(); err != nil {
		t.Fatalf("%s joining through %s: %v", name, addr, err)
	}
	return m
}

// TestMembersDialFromBindAddr checks that a member's outgoing streams (a
// join's push/pull) leave from its bind address, the node's InternalIP,
// even where the kernel would pick another source: a member bound to
// 127.0.0.2 joins a listener on 127.0.0.1, to which the kernel's own
// choice of source is 127.0.0.1. Peers' membership chains know only the
// Nodes' addresses and drop a stream from any other.
func TestMembersDialFromBindAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	from := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		from <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		_ = c.Close()
	}()
	_, ctx := ktesting.NewTestContext(t)
	m, err := newMembersOnFreePort(ctx, t, MembersConfig{NodeName: "node-0", BindAddr: "127.0.0.2", SecretKey: testKey,
		Peers: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	_, _ = m.Join() // not a member there: the join fails after connecting
	select {
	case got := <-from:
		if got != "127.0.0.2" {
			t.Errorf("the join's stream came from %s, want the bind address 127.0.0.2", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the join never connected")
	}
}
