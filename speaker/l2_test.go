package speaker

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/berthlb/berth/l2"
)

// leaseMembers is a membership whose lease the test sets.
type leaseMembers struct {
	fakeMembers
	gen     uint64
	quorate bool
}

func (m *leaseMembers) Lease() (uint64, bool) { return m.gen, m.quorate }

// nopResponder accepts any answer set.
type nopResponder struct{}

func (nopResponder) Set(map[netip.Addr]l2.Ownership) {}

// TestL2Gate checks the Responder's gate: open only under the lease the
// answer set was computed with.
func TestL2Gate(t *testing.T) {
	tests := []struct {
		name    string
		applied uint64 // generation of the last applied answer set
		gen     uint64
		quorate bool
		want    bool
	}{
		{name: "same lease", applied: 3, gen: 3, quorate: true, want: true},
		{name: "lease lost", applied: 3, gen: 3, quorate: false},
		{name: "lease regained, answer set from before", applied: 3, gen: 4, quorate: true},
		{name: "lease regained and applied", applied: 4, gen: 4, quorate: true, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &leaseMembers{gen: tc.gen, quorate: tc.quorate}
			st := newL2State(m, nopResponder{}, 0)
			st.applied.Store(tc.applied)
			if got := st.gate(); got != tc.want {
				t.Errorf("gate() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestL2Stage checks that a gained address is answered one sync later, and
// that what is already answered is never held back.
func TestL2Stage(t *testing.T) {
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	st := newL2State(&leaseMembers{}, nopResponder{}, 0)
	st.owned = map[netip.Addr]bool{a: true}
	steps := []struct {
		want     []netip.Addr
		answered []netip.Addr
		held     bool
	}{
		{want: []netip.Addr{a, b}, answered: []netip.Addr{a}, held: true},
		{want: []netip.Addr{a, b}, answered: []netip.Addr{a, b}},
		{want: []netip.Addr{a, b}, answered: []netip.Addr{a, b}},
		// Lost, then gained again: staged again.
		{want: []netip.Addr{a}, answered: []netip.Addr{a}},
		{want: []netip.Addr{a, b}, answered: []netip.Addr{a}, held: true},
	}
	for i, step := range steps {
		want := map[netip.Addr]bool{}
		for _, x := range step.want {
			want[x] = true
		}
		held := st.stage(want)
		var got []netip.Addr
		for _, x := range []netip.Addr{a, b} {
			if want[x] {
				got = append(got, x)
			}
		}
		if held != step.held || !slices.Equal(got, step.answered) {
			t.Errorf("step %d: answers %v (held %v), want %v (held %v)", i, got, held, step.answered, step.held)
		}
		st.owned = want
	}
}
