package awsdouble

import (
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// SeedVariable names the environment variable that repeats a run's
// visibility delays (SetSeededVisibilityDelays).
const SeedVariable = "BERTH_AWS_SEED"

// SetSeededVisibilityDelays turns on every visibility delay of the double
// as ELB and EC2 show them: new load balancers, target groups, listeners
// and ELB tags for elbDelay describes, new Elastic IPs and security groups
// and changes to rules, associations and EC2 tags for ec2Delay, each 1 to
// 3, drawn from a seed that is logged on t; $BERTH_AWS_SEED repeats a
// run's draw.
func (s *Server) SetSeededVisibilityDelays(t testing.TB) (elbDelay, ec2Delay int) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(SeedVariable); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", SeedVariable, v, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	elbDelay, ec2Delay = 1+rng.IntN(3), 1+rng.IntN(3)
	t.Logf("visibility delays: ELB %d, EC2 %d describes (%s=%d)", elbDelay, ec2Delay, SeedVariable, seed)
	s.SetELBVisibilityDelay(elbDelay)
	s.SetELBTagVisibilityDelay(elbDelay)
	s.SetAddressVisibilityDelay(ec2Delay)
	s.SetSecurityGroupVisibilityDelay(ec2Delay)
	s.SetEC2ChangeVisibilityDelay(ec2Delay)
	return elbDelay, ec2Delay
}

// SetEC2ChangeVisibilityDelay makes the changes made afterwards to a
// security group's rules (AuthorizeSecurityGroupIngress,
// RevokeSecurityGroupIngress) and to an Elastic IP's association or tags
// (AssociateAddress, DisassociateAddress, CreateTags, DeleteTags) missing
// from the next n DescribeSecurityGroups or DescribeAddresses calls that
// look at the resource: they show it, and filter it, as it was before the
// change. EC2 documents this eventual consistency ("Eventual consistency in
// the Amazon EC2 API"). A change while an older one is not shown yet keeps
// showing the state before the older one. The network interface and
// instance views show associations at once. Default 0.
func (s *Server) SetEC2ChangeVisibilityDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ec2ChangeDelay = n
}

// staleView is what describes still show of a changed resource, and for
// how many more calls.
type staleView[T any] struct {
	v T
	n int
}

// noteChange records before as the view of id, unless an older view is
// still shown; s.mu is held.
func noteChange[T any](views map[string]staleView[T], delay int, id string, before T) {
	if delay == 0 {
		return
	}
	st, ok := views[id]
	if !ok {
		st.v = before
	}
	st.n = delay
	views[id] = st
}

// shown returns what a describe shows of id, counting this call; s.mu is
// held.
func shown[T any](views map[string]staleView[T], id string, current T) T {
	st, ok := views[id]
	if !ok {
		return current
	}
	if st.n--; st.n > 0 {
		views[id] = st
	} else {
		delete(views, id)
	}
	return st.v
}

// sgChanged is called before a change to sg's rules.
func (s *Server) sgChanged(sg *SecurityGroup) {
	before := *sg
	before.Ingress, before.Tags = slices.Clone(sg.Ingress), maps.Clone(sg.Tags)
	noteChange(s.staleSGs, s.ec2ChangeDelay, sg.ID, &before)
}

// addressChanged is called before a change to a's association or tags.
func (s *Server) addressChanged(a *Address) {
	before := *a
	before.Tags = maps.Clone(a.Tags)
	noteChange(s.staleAddresses, s.ec2ChangeDelay, a.AllocationID, &before)
}
