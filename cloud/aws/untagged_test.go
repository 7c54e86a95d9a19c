package aws

import (
	"slices"
	"testing"
	"time"
)

// untaggedGroups waits for a Berth-named group without tags only for
// madeFor from when it was first seen so, and forgets the groups that
// show tags or are gone.
func TestUntaggedGroups(t *testing.T) {
	var b Backend
	if got := b.untaggedGroups([]string{"g1", "g2"}); !slices.Equal(got, []string{"g1", "g2"}) {
		t.Fatalf("first seen: %v, want both", got)
	}
	// g1 has been without tags for longer than madeFor: someone else's,
	// named like Berth's.
	n := b.untagged.m[""]["g1"]
	n.when = time.Now().Add(-madeFor - time.Second)
	b.untagged.m[""]["g1"] = n
	if got := b.untaggedGroups([]string{"g1", "g2"}); !slices.Equal(got, []string{"g2"}) {
		t.Errorf("after madeFor: %v, want [g2]", got)
	}
	// g2 shows its tags (or is gone): forgotten, and waited for afresh if
	// it ever shows none again.
	b.untaggedGroups([]string{"g1"})
	if b.untagged.has("", "g2") {
		t.Error("g2 still noted after it showed tags")
	}
	if got := b.untaggedGroups(nil); len(got) != 0 || len(b.untagged.list("")) != 0 {
		t.Errorf("with nothing untagged: %v, noted %v", got, b.untagged.list(""))
	}
}
