package status

import (
	"net/netip"
	"testing"
)

func TestAnnounces(t *testing.T) {
	entries := []string{"198.51.100.1-198.51.100.3", "198.51.100.9", "203.0.113.0/28", "2001:db8::1-2001:db8::ff", "garbage", "1-2"}
	tests := []struct {
		addr string
		want bool
	}{
		{"198.51.100.1", true}, {"198.51.100.2", true}, {"198.51.100.3", true}, {"198.51.100.4", false},
		{"198.51.100.9", true}, {"198.51.100.8", false},
		{"203.0.113.15", true}, {"203.0.113.16", false},
		{"2001:db8::80", true}, {"2001:db8::100", false},
	}
	for _, tc := range tests {
		if got := announces(entries, netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("announces(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

func TestServiceName(t *testing.T) {
	for in, want := range map[string]string{"svc/web": "web", "service/web": "web", "Services/web": "web", "web": "web", "deploy/web": "", "svc/": ""} {
		got, err := serviceName(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("serviceName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
