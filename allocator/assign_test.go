package allocator

import "testing"

func TestAssignBasics(t *testing.T) {
	lan := pool("lan", "198.51.100.0/29")
	runScenarios(t, []scenario{{
		name: "lowest free first, released addresses reused lowest first",
		steps: []step{
			setPools(lan),
			assign(req("default/a", "lan"), got("lan", "198.51.100.0")),
			assign(req("default/b", "lan"), got("lan", "198.51.100.1")),
			assign(req("default/c", "lan"), got("lan", "198.51.100.2")),
			release("default/b"),
			release("default/b"), // idempotent
			release("default/unknown"),
			assign(req("default/d", "lan"), got("lan", "198.51.100.1")),
			assign(req("default/e", "lan"), got("lan", "198.51.100.3")),
			lookup("default/b"),
			lookup("default/d", got("lan", "198.51.100.1")),
			holders("lan", "default/a", "default/c", "default/d", "default/e"),
		},
	}, {
		name: "exhaustion",
		steps: []step{
			setPools(pool("lan", "198.51.100.1-198.51.100.2")),
			assign(req("default/a", "lan"), got("lan", "198.51.100.1")),
			assign(req("default/b", "lan"), got("lan", "198.51.100.2")),
			fails(req("default/c", "lan"), ReasonPoolExhausted, "pools [lan] have no free IPv4 address"),
			lookup("default/c"),
			release("default/a"),
			assign(req("default/c", "lan"), got("lan", "198.51.100.1")),
		},
	}, {
		name: "reserved ranges are skipped and cannot be requested",
		steps: []step{
			setPools(withPool(lan, func(p *Pool) { p.Reserved = rng("198.51.100.0-198.51.100.2", "198.51.100.4") })),
			assign(req("default/a", "lan"), got("lan", "198.51.100.3")),
			assign(req("default/b", "lan"), got("lan", "198.51.100.5")),
			fails(requested(req("default/c", "lan"), "198.51.100.4"), ReasonRequestedAddressUnavailable,
				`198.51.100.4 is reserved in pool "lan"`),
			assign(requested(req("default/c", "lan"), "198.51.100.7"), got("lan", "198.51.100.7")),
			assign(req("default/d", "lan"), got("lan", "198.51.100.6")),
			fails(req("default/e", "lan"), ReasonPoolExhausted, "pools [lan] have no free IPv4 address"),
		},
	}, {
		name: "avoidBuggyIPs skips .0 and .255 across /24 boundaries",
		steps: []step{
			setPools(withPool(pool("lan", "198.51.100.254-198.51.101.1", "198.51.102.255/32"),
				func(p *Pool) { p.AvoidBuggyIPs = true })),
			assign(req("default/a", "lan"), got("lan", "198.51.100.254")),
			assign(req("default/b", "lan"), got("lan", "198.51.101.1")),
			fails(req("default/c", "lan"), ReasonPoolExhausted, "pools [lan] have no free IPv4 address"),
			fails(requested(req("default/c", "lan"), "198.51.101.0"), ReasonRequestedAddressUnavailable,
				`198.51.101.0 ends in .0 or .255, which pool "lan" avoids (avoidBuggyIPs)`),
		},
	}})
}

func TestAssignEdges(t *testing.T) {
	runScenarios(t, []scenario{{
		name: "without avoidBuggyIPs .0 and .255 are ordinary",
		steps: []step{
			setPools(pool("lan", "198.51.100.255-198.51.101.0")),
			assign(req("default/a", "lan"), got("lan", "198.51.100.255")),
			assign(req("default/b", "lan"), got("lan", "198.51.101.0")),
		},
	}, {
		name: "top of the address space",
		steps: []step{
			setPools(pool("v4", "255.255.255.252/30"), pool("v6", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"),
				pool("top6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127")),
			assign(req("default/a", "v4"), got("v4", "255.255.255.252")),
			assign(req("default/b", "v4"), got("v4", "255.255.255.253")),
			assign(req("default/b2", "v4"), got("v4", "255.255.255.254")),
			// 255.255.255.255 is the limited broadcast: never handed out.
			fails(req("default/c", "v4"), ReasonPoolExhausted, "pools [v4] have no free IPv4 address"),
			assign(families(req("default/d", "v6"), false, IPv6), got("v6", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")),
			assign(families(req("default/e", "v6"), false, IPv6), got("v6", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
			fails(families(req("default/f", "v6"), false, IPv6), ReasonPoolExhausted, "pools [v6] have no free IPv6 address"),
			release("default/d"),
			assign(families(req("default/f", "v6"), false, IPv6), got("v6", "feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")),
			// The top of the IPv6 space is multicast.
			fails(families(req("default/g", "top6"), false, IPv6), ReasonPoolExhausted, "pools [top6] have no free IPv6 address"),
		},
	}, {
		name: "IPv6 in huge pools",
		steps: []step{
			setPools(pool("all", "::/0"), pool("wide", "2001:db8::/48")),
			// Neither :: nor ::1 is ever handed out.
			assign(families(req("default/a", "all"), false, IPv6), got("all", "::2")),
			assign(families(req("default/b", "all"), false, IPv6), got("all", "::3")),
			assign(families(req("default/c", "wide"), false, IPv6), got("wide", "2001:db8::")),
			// ::/0 contains 2001:db8:: too; the global record prevents reuse.
			assign(families(requested(req("default/d", "all"), "2001:db8::1"), false, IPv6), got("all", "2001:db8::1")),
			assign(families(req("default/e", "wide"), false, IPv6), got("wide", "2001:db8::2")),
		},
	}})
}

func TestAssignPoolChoice(t *testing.T) {
	manual := withPool(pool("manual", "203.0.113.0/30"), func(p *Pool) { p.AutoAssign = false })
	runScenarios(t, []scenario{{
		name: "autoAssign=false pools need a request or explicit pools",
		steps: []step{
			setPools(manual),
			fails(req("default/a", "manual"), ReasonNoMatchingPool,
				"pools [manual] have autoAssign disabled; request one of their addresses or name the pools explicitly"),
			assign(with(req("default/a", "manual"), func(r *Request) { r.ExplicitPools = true }), got("manual", "203.0.113.0")),
			assign(requested(req("default/b", "manual"), "203.0.113.2"), got("manual", "203.0.113.2")),
		},
	}, {
		name: "autoAssign=false pools are passed over for automatic choice",
		steps: []step{
			setPools(withPool(manual, func(p *Pool) { p.Priority = -1 }), pool("lan", "198.51.100.0/30")),
			assign(req("default/a", "manual", "lan"), got("lan", "198.51.100.0")),
		},
	}, {
		name: "lower priority first, then name; full pools are skipped",
		steps: []step{
			setPools(
				withPool(pool("a", "198.51.100.10/32"), func(p *Pool) { p.Priority = 10 }),
				pool("c", "198.51.100.30/32"),
				pool("b", "198.51.100.20/32"),
			),
			assign(req("default/x", "a", "b", "c"), got("b", "198.51.100.20")),
			assign(req("default/y", "c", "a", "b"), got("c", "198.51.100.30")),
			assign(req("default/z", "a", "b", "c"), got("a", "198.51.100.10")),
			fails(req("default/w", "a", "b", "c"), ReasonPoolExhausted, "pools [b c a] have no free IPv4 address"),
		},
	}, {
		name: "requested addresses must be in an allowed pool",
		steps: []step{
			setPools(pool("lan", "198.51.100.0/24"), pool("tenant-b", "203.0.113.0/24"), manual),
			assign(requested(req("default/a", "lan"), "198.51.100.77"), got("lan", "198.51.100.77")),
			fails(requested(req("default/b", "lan"), "203.0.113.9"), ReasonRequestedAddressUnavailable,
				`no allowed pool contains 203.0.113.9 (it belongs to pool "tenant-b")`),
			fails(requested(req("default/b", "lan"), "203.0.113.1"), ReasonRequestedAddressUnavailable,
				`no allowed pool contains 203.0.113.1 (it belongs to pools [manual tenant-b])`),
			fails(requested(req("default/b", "lan"), "192.0.2.1"), ReasonRequestedAddressUnavailable,
				"no pool contains 192.0.2.1"),
			fails(requested(req("default/b", "lan"), "198.51.100.77"), ReasonRequestedAddressUnavailable,
				"requested address 198.51.100.77 is held by default/a without a compatible sharing key"),
			// Requested wins over Current and moves the Service.
			assign(requested(current(req("default/a", "lan"), "198.51.100.77"), "198.51.100.78"), got("lan", "198.51.100.78")),
			assign(requested(req("default/b", "lan"), "198.51.100.77"), got("lan", "198.51.100.77")),
		},
	}, {
		name: "no usable pool",
		steps: []step{
			setPools(pool("lan", "198.51.100.0/24")),
			fails(req("default/a"), ReasonNoMatchingPool, "no IP pool is allowed for this Service"),
			fails(req("default/a", "nope"), ReasonNoMatchingPool, "none of the allowed pools [nope] exists"),
			fails(families(req("default/a", "lan", "nope"), false, IPv6), ReasonNoMatchingPool,
				"no allowed pool has IPv6 addresses (allowed: [lan])"),
		},
	}, {
		name: "malformed requests",
		steps: []step{
			setPools(pool("lan", "198.51.100.0/24", "2001:db8::/64")),
			fails(Request{Families: []Family{IPv4}}, ReasonInvalidRequest, "request has no service name"),
			fails(families(req("default/a", "lan"), false), ReasonInvalidRequest, "no IP family requested"),
			fails(families(req("default/a", "lan"), false, 5), ReasonInvalidRequest, "unknown IP family 5"),
			fails(requested(req("default/a", "lan"), "2001:db8::1"), ReasonInvalidRequest,
				"requested address 2001:db8::1 is IPv6, but the Service asks only for [IPv4]"),
			fails(requested(req("default/a", "lan"), "198.51.100.1", "198.51.100.2"), ReasonInvalidRequest,
				"requested addresses 198.51.100.1 and 198.51.100.2 are both IPv4; at most one per family"),
			fails(requested(req("default/a", "lan"), "fe80::1%eth0"), ReasonInvalidRequest,
				`requested address "fe80::1%eth0" is not a valid unzoned IP address`),
			assign(families(req("default/a", "lan"), false, IPv4, IPv4), got("lan", "198.51.100.0")),
		},
	}})
}
