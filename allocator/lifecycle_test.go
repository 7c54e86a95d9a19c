package allocator

import (
	"net/netip"
	"testing"
)

var netipZero netip.Addr

func TestAssignDualStack(t *testing.T) {
	ds := pool("ds", "198.51.100.0/30", "2001:db8::/126")
	v6full := pool("ds", "198.51.100.0/30", "2001:db8::/128")
	runScenarios(t, []scenario{{
		name: "both families, in the order asked",
		steps: []step{
			setPools(ds),
			assign(families(req("default/a", "ds"), true, IPv6, IPv4), got("ds", "2001:db8::"), got("ds", "198.51.100.0")),
			assign(families(req("default/b", "ds"), false, IPv4, IPv6), got("ds", "198.51.100.1"), got("ds", "2001:db8::1")),
			// Dropping a family releases it.
			assign(families(req("default/a", "ds"), false, IPv4), got("ds", "198.51.100.0")),
			assign(families(req("default/c", "ds"), false, IPv6), got("ds", "2001:db8::")),
		},
	}, {
		name: "RequireAll gets both or nothing and keeps what was held",
		steps: []step{
			setPools(v6full),
			assign(families(req("default/a", "ds"), true, IPv4, IPv6), got("ds", "198.51.100.0"), got("ds", "2001:db8::")),
			assign(req("default/b", "ds"), got("ds", "198.51.100.1")),
			fails(families(req("default/b", "ds"), true, IPv4, IPv6), ReasonPoolExhausted, "pools [ds] have no free IPv6 address"),
			lookup("default/b", got("ds", "198.51.100.1")),
			fails(families(req("default/c", "ds"), true, IPv4, IPv6), ReasonPoolExhausted, "pools [ds] have no free IPv6 address"),
			lookup("default/c"),
			assign(req("default/d", "ds"), got("ds", "198.51.100.2")),
		},
	}, {
		name: "PreferDualStack takes what it can",
		steps: []step{
			setPools(v6full),
			assign(families(req("default/a", "ds"), false, IPv6), got("ds", "2001:db8::")),
			assign(families(req("default/b", "ds"), false, IPv6, IPv4), got("ds", "198.51.100.0")),
			assign(families(req("default/c", "ds"), false, IPv4, IPv6), got("ds", "198.51.100.1")),
			release("default/a"),
			assign(families(current(req("default/c", "ds"), "198.51.100.1"), false, IPv4, IPv6),
				got("ds", "198.51.100.1"), got("ds", "2001:db8::")),
			assign(req("default/d", "ds"), got("ds", "198.51.100.2")),
			assign(req("default/e", "ds"), got("ds", "198.51.100.3")),
			fails(families(req("default/f", "ds"), false, IPv4, IPv6), ReasonPoolExhausted,
				"pools [ds] have no free IPv4 address; pools [ds] have no free IPv6 address"),
		},
	}})
}

func TestAssignCurrent(t *testing.T) {
	lan := withPool(pool("lan", "198.51.100.0/29"), func(p *Pool) { p.Reserved = rng("198.51.100.6") })
	runScenarios(t, []scenario{{
		name: "valid current addresses are kept, never moved to a lower one",
		steps: []step{
			setPools(lan, pool("other", "203.0.113.0/29")),
			assign(current(req("default/a", "lan"), "198.51.100.5"), got("lan", "198.51.100.5")),
			// Status not yet written: the allocator's record is kept.
			assign(req("default/a", "lan"), got("lan", "198.51.100.5")),
			// Reserved, held by someone else, outside allowed pools, of the
			// wrong family, zero: none is kept.
			assign(current(req("default/b", "lan"), "198.51.100.6"), got("lan", "198.51.100.0")),
			assign(current(req("default/c", "lan"), "198.51.100.5"), got("lan", "198.51.100.1")),
			assign(current(req("default/d", "lan"), "203.0.113.1"), got("lan", "198.51.100.2")),
			assign(with(current(req("default/e", "lan"), "2001:db8::1"), func(r *Request) { r.Current = append(r.Current, netipZero) }),
				got("lan", "198.51.100.3")),
			// The first valid current address wins.
			assign(current(req("default/f", "lan"), "198.51.100.6", "198.51.100.7", "198.51.100.4"), got("lan", "198.51.100.7")),
		},
	}, {
		name: "current addresses of an autoAssign=false pool are kept while allowed",
		steps: []step{
			setPools(withPool(lan, func(p *Pool) { p.AutoAssign = false })),
			assign(requested(req("default/a", "lan"), "198.51.100.3"), got("lan", "198.51.100.3")),
			assign(current(req("default/a", "lan"), "198.51.100.3"), got("lan", "198.51.100.3")),
			fails(current(req("default/b", "lan"), "198.51.100.3"), ReasonNoMatchingPool,
				"pools [lan] have autoAssign disabled; request one of their addresses or name the pools explicitly"),
		},
	}, {
		name: "rebuild after restart: current addresses claimed twice go to the first",
		steps: []step{
			setPools(lan),
			assign(current(req("default/a", "lan"), "198.51.100.4"), got("lan", "198.51.100.4")),
			assign(current(req("default/b", "lan"), "198.51.100.4"), got("lan", "198.51.100.0")),
		},
	}, {
		name: "a failed re-evaluation leaves the working address alone",
		steps: []step{
			setPools(lan),
			assign(req("default/a", "lan"), got("lan", "198.51.100.0")),
			fails(requested(req("default/a", "lan"), "198.51.100.6"), ReasonRequestedAddressUnavailable,
				`198.51.100.6 is reserved in pool "lan"`),
			lookup("default/a", got("lan", "198.51.100.0")),
			holders("lan", "default/a"),
		},
	}})
}

func TestSetPools(t *testing.T) {
	lan := pool("lan", "198.51.100.0/29")
	runScenarios(t, []scenario{{
		name: "shrinking a pool invalidates holders; re-Assign moves only them",
		steps: []step{
			setPools(lan),
			assign(req("default/a", "lan"), got("lan", "198.51.100.0")),
			assign(req("default/b", "lan"), got("lan", "198.51.100.1")),
			assign(req("default/c", "lan"), got("lan", "198.51.100.2")),
			invalid(),
			setPools(withPool(pool("lan", "198.51.100.1-198.51.100.7"), func(p *Pool) { p.Reserved = rng("198.51.100.2") })),
			invalid("default/a", "default/c"),
			holders("lan", "default/a", "default/b", "default/c"),
			lookup("default/a", got("lan", "198.51.100.0")), // kept as recorded until re-Assigned
			assign(current(req("default/a", "lan"), "198.51.100.0"), got("lan", "198.51.100.3")),
			assign(current(req("default/b", "lan"), "198.51.100.1"), got("lan", "198.51.100.1")),
			invalid("default/c"),
			assign(current(req("default/c", "lan"), "198.51.100.2"), got("lan", "198.51.100.4")),
			invalid(),
		},
	}, {
		name: "removing a pool: holders and invalid services still reported",
		steps: []step{
			setPools(lan, pool("wan", "203.0.113.0/30")),
			assign(req("default/a", "lan"), got("lan", "198.51.100.0")),
			setPools(pool("wan", "203.0.113.0/30")),
			invalid("default/a"),
			holders("lan", "default/a"),
			assign(current(req("default/a", "lan", "wan"), "198.51.100.0"), got("wan", "203.0.113.0")),
			holders("lan"),
			holders("wan", "default/a"),
			invalid(),
		},
	}, {
		name: "a kept address moves to another allowed pool that still has it",
		steps: []step{
			setPools(lan, withPool(pool("wide", "198.51.100.0/24"), func(p *Pool) { p.Priority = 1 })),
			assign(req("default/a", "lan", "wide"), got("lan", "198.51.100.0")),
			setPools(withPool(pool("wide", "198.51.100.0/24"), func(p *Pool) { p.Priority = 1 })),
			invalid("default/a"),
			assign(current(req("default/a", "lan", "wide"), "198.51.100.0"), got("wide", "198.51.100.0")),
			invalid(),
		},
	}, {
		name: "duplicate pool names: the first wins",
		steps: []step{
			setPools(lan, pool("lan", "203.0.113.0/24")),
			assign(req("default/a", "lan"), got("lan", "198.51.100.0")),
		},
	}, {
		name: "invalid ranges are ignored",
		steps: []step{
			setPools(Pool{Name: "odd", AutoAssign: true, Ranges: []Range{
				{}, {First: addr("198.51.100.9"), Last: addr("198.51.100.1")},
				{First: addr("198.51.100.1"), Last: addr("2001:db8::1")},
				{First: addr("fe80::1%eth0"), Last: addr("fe80::2")},
				{First: addr("198.51.100.20"), Last: addr("198.51.100.20")},
			}, Reserved: []Range{{}}}),
			assign(req("default/a", "odd"), got("odd", "198.51.100.20")),
			fails(families(req("default/b", "odd"), false, IPv6), ReasonNoMatchingPool, "no allowed pool has IPv6 addresses (allowed: [odd])"),
		},
	}})
}

func TestOverlappingPools(t *testing.T) {
	runScenarios(t, []scenario{{
		name: "overlapping pools never hand out an address twice",
		steps: []step{
			setPools(pool("a", "198.51.100.0/30"), pool("b", "198.51.100.2-198.51.100.5"),
				withPool(pool("c", "198.51.100.0/29"), func(p *Pool) { p.Reserved = rng("198.51.100.5") })),
			assign(req("default/1", "b"), got("b", "198.51.100.2")),
			assign(req("default/2", "a"), got("a", "198.51.100.0")),
			assign(req("default/3", "a"), got("a", "198.51.100.1")),
			assign(req("default/4", "a"), got("a", "198.51.100.3")),
			fails(req("default/5", "a"), ReasonPoolExhausted, "pools [a] have no free IPv4 address"),
			assign(req("default/5", "c"), got("c", "198.51.100.4")),
			assign(req("default/6", "b"), got("b", "198.51.100.5")), // reserved in c only
			assign(req("default/7", "c"), got("c", "198.51.100.6")),
			release("default/1"),
			assign(req("default/8", "c"), got("c", "198.51.100.2")),
			holders("a", "default/2", "default/3", "default/4"),
			holders("b", "default/6"),
		},
	}})
}

func TestAssignDraining(t *testing.T) {
	draining := withPool(pool("old", "198.51.100.0/29"), func(p *Pool) { p.Draining = true })
	runScenarios(t, []scenario{{
		name: "a draining pool keeps its holders and hands out nothing new",
		steps: []step{
			setPools(pool("old", "198.51.100.0/29")),
			assign(req("default/a", "old"), got("old", "198.51.100.0")),
			setPools(draining),
			// The holder keeps its address, from status or from the record.
			assign(current(req("default/a", "old"), "198.51.100.0"), got("old", "198.51.100.0")),
			assign(req("default/a", "old"), got("old", "198.51.100.0")),
			// Nobody else gets one: not fresh, not on request.
			fails(req("default/b", "old"), ReasonNoMatchingPool, "pools [old] are draining (being deleted or invalid) and hand out no new addresses"),
			fails(requested(req("default/c", "old"), "198.51.100.3"), ReasonRequestedAddressUnavailable,
				`198.51.100.3 belongs to pool "old", which is draining (being deleted or invalid) and hands out no new addresses`),
			// Released addresses are not handed out again while it drains.
			release("default/a"),
			fails(req("default/a", "old"), ReasonNoMatchingPool, "pools [old] are draining (being deleted or invalid) and hand out no new addresses"),
		},
	}})
}
