package l2

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"k8s.io/klog/v2/ktesting"
)

// TestMembersRestartLearnsDeadNodes restarts a member while a third one
// is dead: memberlist, joined through the one live peer, passes on no node
// that peer declared dead, but the state exchange (known.go) carries the
// peer's known membership, so the restarted member counts the dead node in
// its quorum as the peer does.
func TestMembersRestartLearnsDeadNodes(t *testing.T) {
	ms := startMembers(t, 3, testKey)
	all := []string{"node-0", "node-1", "node-2"}
	for _, m := range ms {
		waitMembers(t, m, all, 5*time.Second)
	}
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	// Until memberlist at node-1 no longer counts node-2 among the live.
	deadline := time.Now().Add(20 * time.Second)
	for slices.ContainsFunc(ms[1].ml.Members(), func(n *memberlist.Node) bool { return n.Name == "node-2" }) {
		if time.Now().After(deadline) {
			t.Fatal("memberlist at node-1 still has node-2 alive after 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	port := ms[0].ml.LocalNode().Port
	if err := ms[0].Shutdown(); err != nil {
		t.Fatal(err)
	}
	_, ctx := ktesting.NewTestContext(t)
	peer := fmt.Sprintf("127.0.0.1:%d", ms[1].ml.LocalNode().Port)
	again, err := NewMembers(ctx, MembersConfig{NodeName: "node-0", BindAddr: "127.0.0.1", BindPort: int(port), SecretKey: testKey, Peers: []string{peer}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Shutdown() })
	if _, err := again.Join(); err != nil {
		t.Fatal(err)
	}
	// The state exchange is part of Join: no wait.
	if got := again.Known(); !slices.Equal(got, all) {
		t.Errorf("restarted node-0 knows %v, want %v", got, all)
	}
	waitQuorate(t, again, true, 5*time.Second)
	waitMembers(t, again, all[:2], 5*time.Second)
}
