package allocator

import (
	"strings"
	"testing"
)

// TestMessagesNameNoOtherTenant: every refusal a Service of namespace
// "two" gets because of a Service of namespace "one" leaves that Service
// (and its namespace) unnamed, while a holder in the Service's own
// namespace is named, so that a tenant can act on its own conflicts.
func TestMessagesNameNoOtherTenant(t *testing.T) {
	open := withPool(pool("open", "203.0.113.0/29"), func(p *Pool) { p.AllowCrossNamespaceSharing = true })
	strict := pool("strict", "198.51.100.0/29")
	local := func(r Request, key string) Request { return with(r, func(r *Request) { r.BackendKey = key }) }
	a := New()
	a.SetPools([]Pool{open, strict})
	for _, r := range []Request{
		shared(req("one/secret-db", "strict"), "k", tcp(80)),
		shared(req("one/secret-web", "open"), "k", tcp(80)),
		local(shared(req("one/secret-local", "open"), "l", tcp(80)), "selector:one/app=x"),
	} {
		if _, err := a.Assign(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"no sharing key", requested(req("two/b", "strict", "open"), "198.51.100.0"),
			"requested address 198.51.100.0 is held by a Service in another namespace without a compatible sharing key"},
		{"cross-namespace sharing refused", requested(shared(req("two/b", "strict", "open"), "k", tcp(81)), "198.51.100.0"),
			`sharing key "k": requested address 198.51.100.0 is held by a Service in another namespace, and pool "strict" does not allow cross-namespace sharing`},
		{"port clash", requested(shared(req("two/b", "open"), "k", tcp(80)), "203.0.113.0"),
			`sharing key "k" conflicts with a Service in another namespace on TCP/80`},
		{"different backends", requested(local(shared(req("two/b", "open"), "l", tcp(81)), "selector:two/app=x"), "203.0.113.1"),
			`sharing key "l": a Service in another namespace selects different backends`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Assign(tc.req)
			if err == nil {
				t.Fatal("assigned, want a refusal")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) {
				t.Errorf("message %q, want it to contain %q", msg, tc.want)
			}
			if strings.Contains(msg, "secret") || strings.Contains(msg, "one") {
				t.Errorf("message %q names another tenant's Service or namespace", msg)
			}
		})
	}
	// Within its own namespace, the holder is named.
	if _, err := a.Assign(requested(req("one/b", "strict"), "198.51.100.0")); err == nil || !strings.Contains(err.Error(), "held by one/secret-db") {
		t.Errorf("same-namespace refusal %v does not name the holder", err)
	}
}
