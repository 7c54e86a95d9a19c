package aws

import (
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// eipNote is an Elastic IP as this process's last write left it. EC2's
// describes may show the state before a write for a while (tags, an
// association), which would make the next call place the address again
// and leak the placement it does not see, or take an address it just
// returned to the list for another Service's.
type eipNote struct {
	addr     ec2types.Address // tags and association as written
	released bool
	// seen is true once a describe has shown the allocation: a new
	// allocation that no describe has shown is waited for instead
	// (serviceEIP), never added to a listing.
	seen bool
	when time.Time
}

// noteEIP records a as this process just left it; seen says a describe
// showed it. Call with b.mu held.
func (b *Backend) noteEIP(a ec2types.Address, seen bool) {
	if b.eips == nil {
		b.eips = map[string]eipNote{}
	}
	id := sdk.ToString(a.AllocationId)
	a.Tags = slices.Clone(a.Tags)
	b.eips[id] = eipNote{addr: a, seen: seen || b.eips[id].seen, when: time.Now()}
}

// noteReleased records that the allocation is released. Call with b.mu
// held.
func (b *Backend) noteReleased(id string) {
	if b.eips == nil {
		b.eips = map[string]eipNote{}
	}
	b.eips[id] = eipNote{released: true, seen: true, when: time.Now()}
}

// eipView corrects a listing of Elastic IPs with this process's writes of
// the last freshFor: an address is shown as last written (and left out
// when released), then kept when keep says so; one written but missing
// from the listing (its new tags not shown yet) is added when keep says
// so. Call with b.mu held.
func (b *Backend) eipView(shown []ec2types.Address, keep func(ec2types.Address) bool) []ec2types.Address {
	for id, n := range b.eips {
		if time.Since(n.when) >= freshFor {
			delete(b.eips, id)
		}
	}
	var out []ec2types.Address
	listed := map[string]bool{}
	for _, a := range shown {
		id := sdk.ToString(a.AllocationId)
		listed[id] = true
		if n, ok := b.eips[id]; ok {
			n.seen = true
			b.eips[id] = n
			if n.released {
				continue
			}
			a = n.addr
		}
		if keep(a) {
			out = append(out, a)
		}
	}
	for id, n := range b.eips {
		if !listed[id] && n.seen && !n.released && keep(n.addr) {
			out = append(out, n.addr)
		}
	}
	slices.SortFunc(out, func(x, y ec2types.Address) int {
		return strings.Compare(sdk.ToString(x.AllocationId), sdk.ToString(y.AllocationId))
	})
	return out
}

// withTag returns tags with k set to v.
func withTag(tags []ec2types.Tag, k, v string) []ec2types.Tag {
	out := slices.DeleteFunc(slices.Clone(tags), func(t ec2types.Tag) bool { return sdk.ToString(t.Key) == k })
	return append(out, ec2types.Tag{Key: sdk.String(k), Value: sdk.String(v)})
}

// withoutTags returns tags without the keys.
func withoutTags(tags []ec2types.Tag, keys []ec2types.Tag) []ec2types.Tag {
	return slices.DeleteFunc(slices.Clone(tags), func(t ec2types.Tag) bool {
		return slices.ContainsFunc(keys, func(k ec2types.Tag) bool { return sdk.ToString(k.Key) == sdk.ToString(t.Key) })
	})
}
