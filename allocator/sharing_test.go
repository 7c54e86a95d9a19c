package allocator

import "testing"

func TestAssignSharing(t *testing.T) {
	lan := pool("lan", "198.51.100.0/29")
	runScenarios(t, []scenario{{
		name: "same key and disjoint ports share; a port clash gets its own address",
		steps: []step{
			setPools(lan),
			assign(shared(req("default/a", "lan"), "k", tcp(80)), got("lan", "198.51.100.0")),
			assign(shared(req("default/b", "lan"), "k", tcp(443), udp(80)), got("lan", "198.51.100.0")),
			assign(shared(req("default/c", "lan"), "k", tcp(80)), got("lan", "198.51.100.1")),
			assign(shared(req("default/d", "lan"), "k", tcp(53)), got("lan", "198.51.100.0")),
			assign(shared(req("default/e", "lan"), "other", tcp(22)), got("lan", "198.51.100.2")),
			assign(req("default/f", "lan"), got("lan", "198.51.100.3")),
			// The address stays held while one sharer remains.
			release("default/a"), release("default/b"),
			assign(req("default/g", "lan"), got("lan", "198.51.100.4")),
			release("default/d"),
			assign(req("default/h", "lan"), got("lan", "198.51.100.0")),
		},
	}, {
		name: "requesting a shared address with a clashing port is a sharing conflict",
		steps: []step{
			setPools(lan),
			assign(shared(req("default/a", "lan"), "k", tcp(80)), got("lan", "198.51.100.0")),
			fails(requested(shared(req("default/b", "lan"), "k", tcp(80)), "198.51.100.0"), ReasonSharingConflict,
				`sharing key "k" conflicts with default/a on TCP/80`),
			fails(requested(shared(req("default/b", "lan"), "other", tcp(81)), "198.51.100.0"), ReasonRequestedAddressUnavailable,
				"requested address 198.51.100.0 is held by default/a without a compatible sharing key"),
			fails(requested(req("default/b", "lan"), "198.51.100.0"), ReasonRequestedAddressUnavailable,
				"requested address 198.51.100.0 is held by default/a without a compatible sharing key"),
			assign(requested(shared(req("default/b", "lan"), "k", tcp(81)), "198.51.100.0"), got("lan", "198.51.100.0")),
		},
	}})
}

func TestAssignSharingNamespaces(t *testing.T) {
	lan := pool("lan", "198.51.100.0/29")
	open := withPool(pool("open", "203.0.113.0/29"), func(p *Pool) { p.AllowCrossNamespaceSharing = true })
	runScenarios(t, []scenario{{
		name: "cross-namespace sharing only where the pool allows it",
		steps: []step{
			setPools(lan, open),
			assign(shared(req("one/a", "lan"), "k", tcp(80)), got("lan", "198.51.100.0")),
			assign(shared(req("two/b", "lan"), "k", tcp(81)), got("lan", "198.51.100.1")),
			fails(requested(shared(req("two/c", "lan"), "k", tcp(82)), "198.51.100.0"), ReasonSharingConflict,
				`sharing key "k": requested address 198.51.100.0 is held by a Service in another namespace, and pool "lan" does not allow cross-namespace sharing`),
			assign(shared(req("one/d", "open"), "j", tcp(80)), got("open", "203.0.113.0")),
			assign(shared(req("two/e", "open"), "j", tcp(81)), got("open", "203.0.113.0")),
		},
	}, {
		name: "sharers must have equal backend keys",
		steps: []step{
			setPools(lan),
			assign(with(shared(req("default/a", "lan"), "k", tcp(80)), func(r *Request) { r.BackendKey = "app=web" }),
				got("lan", "198.51.100.0")),
			assign(shared(req("default/b", "lan"), "k", tcp(81)), got("lan", "198.51.100.1")),
			assign(with(shared(req("default/c", "lan"), "k", tcp(82)), func(r *Request) { r.BackendKey = "app=web" }),
				got("lan", "198.51.100.0")),
			fails(requested(with(shared(req("default/d", "lan"), "k", tcp(83)), func(r *Request) { r.BackendKey = "app=db" }), "198.51.100.0"),
				ReasonSharingConflict,
				`sharing key "k": default/a selects different backends; Services sharing an address with externalTrafficPolicy Local must select the same endpoints`),
		},
	}, {
		name: "a sharer changing its ports keeps the address only while compatible",
		steps: []step{
			setPools(lan),
			assign(shared(req("default/a", "lan"), "k", tcp(80)), got("lan", "198.51.100.0")),
			assign(shared(req("default/b", "lan"), "k", tcp(81)), got("lan", "198.51.100.0")),
			// b now clashes with a: it keeps nothing shared and moves.
			assign(current(shared(req("default/b", "lan"), "k", tcp(80)), "198.51.100.0"), got("lan", "198.51.100.1")),
			// a drops its key: it is alone on .0, so it keeps it.
			assign(current(req("default/a", "lan"), "198.51.100.0"), got("lan", "198.51.100.0")),
			assign(shared(req("default/c", "lan"), "k", tcp(81)), got("lan", "198.51.100.1")),
		},
	}, {
		name: "overlapping pools: every pool recorded for the sharers must allow cross-namespace sharing",
		steps: []step{
			setPools(open, pool("strict", "203.0.113.0/29"), withPool(open, func(p *Pool) { p.Name = "open2" })),
			assign(shared(req("one/a", "strict"), "k", tcp(80)), got("strict", "203.0.113.0")),
			fails(requested(shared(req("two/b", "open"), "k", tcp(81)), "203.0.113.0"), ReasonSharingConflict,
				`sharing key "k": requested address 203.0.113.0 is held by a Service in another namespace, and pool "strict" does not allow cross-namespace sharing`),
			assign(shared(req("two/b", "open"), "k", tcp(81)), got("open", "203.0.113.1")),
			assign(requested(shared(req("one/c", "open2"), "k", tcp(82)), "203.0.113.1"), got("open2", "203.0.113.1")),
			invalid(),
			// open2 stops allowing it: both sharers are reported, though
			// two/b's own pool still allows it, because the pair is invalid.
			setPools(open, pool("strict", "203.0.113.0/29"), withPool(open, func(p *Pool) { p.Name = "open2"; p.AllowCrossNamespaceSharing = false })),
			invalid("one/c", "two/b"),
			assign(current(shared(req("two/b", "open"), "k", tcp(81)), "203.0.113.1"), got("open", "203.0.113.2")),
			invalid(),
		},
	}, {
		name: "a pool that stops allowing cross-namespace sharing invalidates sharers",
		steps: []step{
			setPools(open),
			assign(shared(req("one/a", "open"), "k", tcp(80)), got("open", "203.0.113.0")),
			assign(shared(req("two/b", "open"), "k", tcp(81)), got("open", "203.0.113.0")),
			invalid(),
			setPools(withPool(open, func(p *Pool) { p.AllowCrossNamespaceSharing = false })),
			invalid("one/a", "two/b"),
			assign(current(shared(req("one/a", "open"), "k", tcp(80)), "203.0.113.0"), got("open", "203.0.113.1")),
			invalid(),
			assign(current(shared(req("two/b", "open"), "k", tcp(81)), "203.0.113.0"), got("open", "203.0.113.0")),
		},
	}})
}
