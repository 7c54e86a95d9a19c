package l2

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2/ktesting"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func freePort(t *testing.T) int {
	t.Helper()
	// memberlist needs the same port for UDP and TCP; a free TCP port is
	// almost always a free UDP port on loopback.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newMembersOnFreePort is NewMembers on a port of loopback that was free a
// moment ago. The member binds the port itself, so someone may take it in
// between: then it tries another.
func newMembersOnFreePort(ctx context.Context, t *testing.T, cfg MembersConfig) (*Members, error) {
	t.Helper()
	for i := 0; ; i++ {
		if cfg.BindAddr == "" {
			cfg.BindAddr = "127.0.0.1"
		}
		cfg.BindPort = freePort(t)
		m, err := NewMembers(ctx, cfg)
		if err == nil || i == 4 || !strings.Contains(err.Error(), "address already in use") {
			return m, err
		}
	}
}

// startMembers starts n members on loopback, the first alone and the others
// joining it.
func startMembers(t *testing.T, n int, key []byte, opts ...func(*MembersConfig)) []*Members {
	t.Helper()
	_, ctx := ktesting.NewTestContext(t)
	return startMembersCtx(ctx, t, n, key, opts...)
}

// startMembersCtx is startMembers with ctx's logger.
func startMembersCtx(ctx context.Context, t *testing.T, n int, key []byte, opts ...func(*MembersConfig)) []*Members {
	t.Helper()
	var out []*Members
	var seed string
	for i := range n {
		cfg := MembersConfig{NodeName: fmt.Sprintf("node-%d", i), SecretKey: key}
		if i > 0 {
			cfg.Peers = []string{seed}
		}
		for _, o := range opts {
			o(&cfg)
		}
		m, err := newMembersOnFreePort(ctx, t, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			seed = fmt.Sprintf("127.0.0.1:%d", m.ml.LocalNode().Port)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		if i > 0 {
			if _, err := m.Join(); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, m)
	}
	return out
}

func waitMembers(t *testing.T, m *Members, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !slices.Equal(m.Members(), want) {
		if time.Since(start) > within {
			t.Fatalf("%s sees %v, want %v after %v", m.name, m.Members(), want, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// waitQuorate waits until m's Quorate is want.
func waitQuorate(t *testing.T, m *Members, want bool, within time.Duration) {
	t.Helper()
	start := time.Now()
	for m.Quorate() != want {
		if time.Since(start) > within {
			t.Fatalf("%s: Quorate() is not %v after %v (members %v, known %v)", m.name, want, within, m.Members(), m.Known())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMembersValidation(t *testing.T) {
	_, ctx := ktesting.NewTestContext(t)
	for _, cfg := range []MembersConfig{
		{NodeName: "a", SecretKey: []byte("short")},
		{NodeName: "a"},
		{SecretKey: testKey},
	} {
		if m, err := NewMembers(ctx, cfg); err == nil {
			_ = m.Shutdown()
			t.Errorf("NewMembers(%+v) succeeded", cfg)
		}
	}
}

func TestMembersFailureAndQuorum(t *testing.T) {
	ms := startMembers(t, 3, testKey)
	all := []string{"node-0", "node-1", "node-2"}
	for _, m := range ms {
		waitMembers(t, m, all, 5*time.Second)
		waitQuorate(t, m, true, time.Second)
	}
	// A crash (no Leave): the others notice, and keep quorum (2 of 3).
	start := time.Now()
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		waitMembers(t, m, all[:2], 10*time.Second)
	}
	t.Logf("crash of node-2 detected by both survivors after %v", time.Since(start))
	if !ms[0].Quorate() || !ms[1].Quorate() {
		t.Error("2 of 3 alive must be quorate")
	}
	if got := ms[0].Known(); !slices.Equal(got, all) {
		t.Errorf("Known() = %v, a crashed node must stay known", got)
	}
	// Another crash: node-0 alone is 1 of 3 and must stop answering.
	if err := ms[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, ms[0], all[:1], 10*time.Second)
	waitQuorate(t, ms[0], false, QuorumLease)
	// Kubernetes says node-2 is gone for good: 1 of 2 is still no quorum.
	ms[0].Forget("node-2")
	if ms[0].Quorate() {
		t.Error("1 of 2 must not be quorate")
	}
	ms[0].Forget("node-1", "node-0") // forgetting oneself is ignored
	// Quorate again, alone, once the hold-down has passed.
	waitQuorate(t, ms[0], true, RegainHoldDown+100*time.Millisecond)
}

func TestMembersGracefulLeave(t *testing.T) {
	ms := startMembers(t, 3, testKey)
	all := []string{"node-0", "node-1", "node-2"}
	waitMembers(t, ms[0], all, 5*time.Second)
	waitQuorate(t, ms[0], true, time.Second)
	if err := ms[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	// No failure detection to wait for: the goodbye is enough.
	d := waitMembers(t, ms[0], all[:2], DeadAfter/2)
	t.Logf("graceful leave seen after %v", d)
	if got := ms[0].Known(); !slices.Equal(got, all) {
		t.Errorf("Known() = %v, a node that left stays known until forgotten", got)
	}
	if !ms[0].Quorate() {
		t.Error("2 of 3 must be quorate")
	}
}

func TestMembersWrongKey(t *testing.T) {
	ms := startMembers(t, 2, testKey)
	_, ctx := ktesting.NewTestContext(t)
	bad, err := newMembersOnFreePort(ctx, t, MembersConfig{
		NodeName:  "intruder",
		SecretKey: []byte("another key 16b!"),
		Peers:     []string{fmt.Sprintf("127.0.0.1:%d", ms[0].ml.LocalNode().Port)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bad.Shutdown() }()
	if _, err := bad.Join(); err == nil {
		t.Error("join with the wrong key succeeded")
	}
	if bad.Quorate() {
		t.Error("a node that never met a peer must not be quorate")
	}
	time.Sleep(500 * time.Millisecond)
	if got := ms[0].Members(); slices.Contains(got, "intruder") {
		t.Errorf("intruder admitted: %v", got)
	}
}

// TestMembersDetectionTime measures how long a crash takes to be noticed.
func TestMembersDetectionTime(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	var ds []time.Duration
	for range 5 {
		ms := startMembers(t, 3, testKey)
		all := []string{"node-0", "node-1", "node-2"}
		waitMembers(t, ms[0], all, 5*time.Second)
		start := time.Now()
		_ = ms[2].Shutdown()
		waitMembers(t, ms[0], all[:2], 10*time.Second)
		ds = append(ds, time.Since(start))
		for _, m := range ms[:2] {
			_ = m.Shutdown()
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	t.Logf("crash detection over %d runs (loopback): min %v p50 %v max %v", len(ds), ds[0], ds[len(ds)/2], ds[len(ds)-1])
	if ds[len(ds)/2] > 3*time.Second {
		t.Errorf("p50 detection %v, want under 3s", ds[len(ds)/2])
	}
}

// TestMembersKeyRotation rotates the key in three steps, one node at a
// time, as the speakers do when the Secret changes: no message goes
// undecrypted on the way, every node is whole and quorate after each
// change, the old key is refused at the end and the new one admitted.
//
// It runs real memberlist over loopback with real timers. On a loaded
// machine (load average 7-10 on 2 cores) three such members lose a lease
// now and then with no key change at all (2 of 8 runs of 12 s each), and
// the process is not visibly starved when they do (no 10 ms timer woke
// 200 ms late), so a lease lost during a step says nothing about the
// rotation: it is logged, and the nodes must be whole again before the
// next change. What a broken rotation does is send with a key a peer does
// not have (or no longer has), which that peer's memberlist reports at
// the next heartbeat, however loaded the machine: the test counts those
// reports and fails on the first.
func TestMembersKeyRotation(t *testing.T) {
	newKey := []byte("a new key of 24 bytes!!!")
	var undecryptable atomic.Int64
	_, ctx := ktesting.NewTestContext(t)
	ctx = logr.NewContext(ctx, logr.New(decryptCounter{LogSink: logr.FromContextOrDiscard(ctx).GetSink(), n: &undecryptable}))
	ms := startMembersCtx(ctx, t, 3, testKey)
	names := []string{"node-0", "node-1", "node-2"}
	whole := func(what string) {
		t.Helper()
		for _, m := range ms {
			waitMembers(t, m, names, 10*time.Second)
			waitQuorate(t, m, true, 10*time.Second)
		}
		if n := undecryptable.Load(); n != 0 {
			t.Fatalf("%s: %d messages that no installed key could decrypt", what, n)
		}
	}
	whole("before the rotation")
	steps := []struct {
		primary []byte
		others  [][]byte
	}{
		{testKey, [][]byte{newKey}}, // accept the new key
		{newKey, [][]byte{testKey}}, // send with it
		{newKey, nil},               // forget the old one
	}
	// After each key change, with the nodes on different keys, the members
	// exchange heartbeats for longer than both DeadAfter and QuorumLease:
	// a node that cannot read the others' heartbeats would lose its lease
	// and its peers by then, besides the reports of undecrypted messages.
	window := 2 * DeadAfter
	for i, step := range steps {
		for j, m := range ms {
			gens := make([]uint64, len(ms))
			for k, o := range ms {
				gens[k], _ = o.Lease()
			}
			if err := m.SetKeys(step.primary, step.others); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			what := fmt.Sprintf("step %d, %d of 3 members changed", i, j+1)
			var lost string
			for start := time.Now(); time.Since(start) < window; time.Sleep(10 * time.Millisecond) {
				for k, o := range ms {
					if gen, ok := o.Lease(); lost == "" && (!ok || gen != gens[k] || len(o.Members()) != 3) {
						lost = fmt.Sprintf("after %v: %s lost the membership or its lease (quorate %v, lease generation %d -> %d, members %v)",
							time.Since(start).Round(time.Millisecond), o.name, ok, gens[k], gen, o.Members())
					}
				}
				if n := undecryptable.Load(); n != 0 {
					t.Fatalf("%s, after %v: %d messages that no installed key could decrypt", what, time.Since(start).Round(time.Millisecond), n)
				}
			}
			if lost != "" {
				t.Logf("%s, %s, with every message decrypted: the machine, not the rotation", what, lost)
			}
			whole(what)
		}
	}
	if err := ms[0].SetKeys([]byte("short"), nil); err == nil {
		t.Error("SetKeys accepted a 5-byte key")
	}
	seed := []string{fmt.Sprintf("127.0.0.1:%d", ms[0].ml.LocalNode().Port)}
	for _, tc := range []struct {
		key   []byte
		admit bool
	}{{testKey, false}, {newKey, true}} {
		m, err := newMembersOnFreePort(ctx, t, MembersConfig{NodeName: fmt.Sprintf("late-%v", tc.admit), SecretKey: tc.key, Peers: seed})
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Join()
		_ = m.Shutdown()
		if (err == nil) != tc.admit {
			t.Errorf("join with key %q after the rotation: err = %v, want admitted %v", tc.key, err, tc.admit)
		}
	}
}

// decryptCounter passes every log line on and counts memberlist's errors
// about messages that no installed key could decrypt.
type decryptCounter struct {
	logr.LogSink
	n *atomic.Int64
}

func (d decryptCounter) Error(err error, msg string, kv ...any) {
	if strings.Contains(strings.ToLower(msg), "decrypt") {
		d.n.Add(1)
	}
	d.LogSink.Error(err, msg, kv...)
}

func (d decryptCounter) WithValues(kv ...any) logr.LogSink {
	return decryptCounter{LogSink: d.LogSink.WithValues(kv...), n: d.n}
}

func (d decryptCounter) WithName(name string) logr.LogSink {
	return decryptCounter{LogSink: d.LogSink.WithName(name), n: d.n}
}

// TestMembersWaitForRecord: members that must read the membership record
// first send nothing and hold no lease until they have, then proceed.
func TestMembersWaitForRecord(t *testing.T) {
	ms := startMembers(t, 2, testKey, func(c *MembersConfig) { c.WaitForRecord = true })
	time.Sleep(2 * DeadAfter)
	for _, m := range ms {
		if got := m.Members(); len(got) != 1 || m.Quorate() {
			t.Fatalf("%s before reading the record: members %v, quorate %v; want itself only, not quorate", m.name, got, m.Quorate())
		}
	}
	for _, m := range ms {
		m.SetRecord(MemberRecord{})
	}
	for _, m := range ms {
		waitQuorate(t, m, true, 5*time.Second)
	}
}
