package allocator

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24", "2001:db8::/64", "198.51.100.10-198.51.100.20", "198.51.100.10 - 198.51.100.20",
		"198.51.100.7", "::/0", "0.0.0.0/0", "198.51.100.1/24", "198.51.100.20-198.51.100.10",
		"198.51.100.1-2001:db8::1", "fe80::1%eth0", "::ffff:198.51.100.7", "::ffff:198.51.100.0/120", "-", "/", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("ParseRange(%q): empty error message", s)
			}
			return
		}
		if !r.valid() || r.First.Is4In6() || r.Last.Is4In6() {
			t.Fatalf("ParseRange(%q) = %v, which is not a valid range", s, r)
		}
		back, err := ParseRange(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRange(%q) = %v; round trip via %q gives %v, %v", s, r, r.String(), back, err)
		}
		dash, err := ParseRange(r.First.String() + " - " + r.Last.String())
		if err != nil || dash != r {
			t.Fatalf("ParseRange(%q) = %v; as first-last gives %v, %v", s, r, dash, err)
		}
		if !r.Contains(r.First) || !r.Contains(r.Last) {
			t.Fatalf("%v does not contain its own ends", r)
		}
	})
}

// fuzzPools returns one of 27 configurations of three small overlapping
// pools, chosen by v. They straddle a /24 boundary so .0/.255 matter, and
// are small enough for the brute-force model to enumerate.
func fuzzPools(v byte) []Pool {
	variants := [3][2]*Pool{{
		{Name: "a", AutoAssign: true, AvoidBuggyIPs: true, Ranges: rng("10.0.0.250-10.0.1.5", "fd00::-fd00::7"), Reserved: rng("10.0.1.1")},
		{Name: "a", AutoAssign: true, Priority: 2, AllowCrossNamespaceSharing: true,
			Ranges: rng("10.0.0.252-10.0.1.2"), Reserved: rng("10.0.0.253", "fd00::2")},
	}, {
		{Name: "b", AutoAssign: true, Priority: 1, AllowCrossNamespaceSharing: true,
			Ranges: rng("10.0.0.254-10.0.1.3", "fd00::4-fd00::b"), Reserved: rng("fd00::6")},
		{Name: "b", AutoAssign: true, AvoidBuggyIPs: true, Ranges: rng("10.0.1.0/30", "10.0.0.255")},
	}, {
		{Name: "c", AllowCrossNamespaceSharing: true, Ranges: rng("10.0.1.3-10.0.1.10", "fd00::a-fd00::f")},
		{Name: "c", AutoAssign: true, Priority: 5, Ranges: rng("10.0.1.3-10.0.1.6", "fd00::/126")},
	}}
	var out []Pool
	for i := range variants {
		if k := v % 3; k < 2 {
			out = append(out, *variants[i][k])
		}
		v /= 3
	}
	return out
}

var fuzzAddrs = addrs("10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "10.0.1.2", "fd00::2", "fd00::6", "fd00::a")

// fuzzRequest decodes three bytes into a request.
func fuzzRequest(a *Allocator, b0, b1, b2 byte) Request {
	i := b0 & 7
	r := Request{
		Service:       fmt.Sprintf("ns%d/s%d", i%2, i),
		Namespace:     fmt.Sprintf("ns%d", i%2),
		SharingKey:    []string{"", "k", "j"}[(b0>>3)%3],
		Families:      [][]Family{{IPv4}, {IPv6}, {IPv4, IPv6}, {IPv4, IPv6}, {IPv6, IPv4}, {IPv6, IPv4}, {IPv4}, {IPv6}}[b1&7],
		RequireAll:    b1&7 == 2 || b1&7 == 5,
		ExplicitPools: b1&64 != 0,
		BackendKey:    []string{"", "x"}[b1>>7],
		Ports:         [][]Port{{tcp(80)}, {tcp(81)}, {tcp(80), udp(443)}, nil}[b2&3],
	}
	for k, name := range []string{"a", "b", "c"} {
		if b1&(8<<k) != 0 {
			r.Pools = append(r.Pools, name)
		}
	}
	if k := (b2 >> 2) & 7; k >= 4 {
		r.Requested = []netip.Addr{fuzzAddrs[(k-4)*2+(b0>>5)%2]}
	}
	switch k := b2 >> 5; {
	case k == 1:
		for _, as := range a.Lookup(r.Service) {
			r.Current = append(r.Current, as.Addr)
		}
	case k >= 2:
		r.Current = []netip.Addr{fuzzAddrs[k]}
	}
	return r
}

func FuzzAllocateRelease(f *testing.F) {
	f.Add([]byte{0, 0, 0x3a, 0, 0, 1, 0x3b, 0, 8, 2, 0x3a, 0x01, 9, 3, 0x3a, 0x21, 4, 0, 0, 0, 5, 13, 0, 0})
	f.Add([]byte{0, 0x08, 0x1a, 0x10, 0, 0x09, 0x1a, 0x11, 5, 4, 0, 0, 0, 0x0a, 0x5c, 0x33})
	f.Add([]byte{0, 1, 0x7a, 0x12, 0, 2, 0x7d, 0x32, 0, 3, 0xfa, 0x40, 5, 26, 0, 0, 0, 4, 0x3b, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New()
		a.SetPools(fuzzPools(0))
		for step := 0; len(data) >= 4 && step < 64; step++ {
			op := data[:4]
			data = data[4:]
			switch op[0] % 6 {
			case 0, 1, 2:
				fuzzAssign(t, a, fuzzRequest(a, op[1], op[2], op[3]))
			case 3:
				fuzzAssign(t, a, fuzzRequest(a, op[1], op[2], op[3]&^0xe0|0x20)) // re-evaluate with Current
			case 4:
				svc := fmt.Sprintf("ns%d/s%d", op[1]&7%2, op[1]&7)
				a.Release(svc)
				if a.Lookup(svc) != nil {
					t.Fatalf("Lookup(%s) after Release is not empty", svc)
				}
			case 5:
				a.SetPools(fuzzPools(op[1]))
			}
			if errs := brokenInvariants(a); len(errs) > 0 {
				t.Fatalf("step %d (op % x): %v", step, op, errs)
			}
		}
	})
}

func fuzzAssign(t *testing.T, a *Allocator, r Request) {
	t.Helper()
	before, invalidBefore := snapshot(a), a.Invalid()
	expect := lowestFreeModel(a, r)
	res, err := a.Assign(r)
	if err != nil {
		if ReasonOf(err) == "" {
			t.Fatalf("Assign(%+v): untyped error %v", r, err)
		}
		if d := cmp.Diff(before, snapshot(a)); d != "" {
			t.Fatalf("Assign(%+v) failed (%v) but changed state:\n%s", r, err, d)
		}
		return
	}
	if len(res) == 0 || (r.RequireAll && len(res) != len(r.Families)) {
		t.Fatalf("Assign(%+v) = %v: wrong number of addresses", r, res)
	}
	for _, as := range res {
		if !slices.Contains(r.Families, familyOf(as.Addr)) || !slices.Contains(r.Pools, as.Pool) {
			t.Fatalf("Assign(%+v) = %v: family or pool not asked for", r, res)
		}
		if want, ok := expect[familyOf(as.Addr)]; ok && want != as {
			t.Fatalf("Assign(%+v) = %v, want lowest free %v", r, res, want)
		}
	}
	// An Assign never makes anyone's holding invalid, its own included.
	for _, s := range a.Invalid() {
		if s == r.Service || !slices.Contains(invalidBefore, s) {
			t.Fatalf("Assign(%+v) = %v left %s invalid", r, res, s)
		}
	}
	if d := cmp.Diff(res, a.Lookup(r.Service), addrCmp); d != "" {
		t.Fatalf("Lookup after Assign (-assign +lookup):\n%s", d)
	}
	after := snapshot(a)
	again, err := a.Assign(r)
	if err != nil || !cmp.Equal(res, again, addrCmp) {
		t.Fatalf("Assign(%+v) not idempotent: %v then %v, %v", r, res, again, err)
	}
	if d := cmp.Diff(after, snapshot(a)); d != "" {
		t.Fatalf("repeated Assign(%+v) changed state:\n%s", r, d)
	}
}

// lowestFreeModel predicts, by brute force, the address each family of a
// fresh, unshared, unrequested request must get: the lowest free address of
// the first usable pool by priority and name that has one.
func lowestFreeModel(a *Allocator, r Request) map[Family]Assignment {
	if len(a.Lookup(r.Service)) > 0 || len(r.Current) > 0 || len(r.Requested) > 0 || r.SharingKey != "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var usable []Pool
	for _, p := range a.byName {
		if slices.Contains(r.Pools, p.Name) && (p.AutoAssign || r.ExplicitPools) {
			usable = append(usable, p.Pool)
		}
	}
	sort.SliceStable(usable, func(i, j int) bool { return usable[i].Priority < usable[j].Priority })
	out := map[Family]Assignment{}
	for _, f := range []Family{IPv4, IPv6} {
		for _, p := range usable {
			all, _ := enumerate(p, f)
			if i := slices.IndexFunc(all, func(x netip.Addr) bool { return a.addrs[x] == nil }); i >= 0 {
				out[f] = Assignment{Addr: all[i], Pool: p.Name}
				break
			}
		}
	}
	return out
}
