package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseSourceRanges(t *testing.T) {
	tests := []struct {
		in      []string
		want    []netip.Prefix
		wantErr string
	}{
		{in: nil, want: []netip.Prefix{}},
		{in: []string{" 10.0.0.1/8 ", "2001:db8::/32"}, want: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}},
		{in: []string{"10.0.0.0/8", "10.0.0.1"}, wantErr: `"10.0.0.1"`},
		{in: []string{"bogus", ""}, wantErr: `"bogus"`},
	}
	for _, tc := range tests {
		got, err := ParseSourceRanges(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || got != nil {
				t.Errorf("ParseSourceRanges(%q) = %v, %v; want nil and an error naming %s", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseSourceRanges(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestSourceRanges(t *testing.T) {
	svc := func(spec []string, ann string) *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
		s.Spec.LoadBalancerSourceRanges = spec
		if ann != "" {
			s.Annotations = map[string]string{corev1.AnnotationLoadBalancerSourceRangesKey: ann}
		}
		return s
	}
	p := netip.MustParsePrefix
	tests := []struct {
		name       string
		svc        *corev1.Service
		restricted bool
		want       []netip.Prefix
		wantErr    bool
	}{
		{name: "neither: everyone", svc: svc(nil, "")},
		{name: "spec", svc: svc([]string{"192.0.2.0/24"}, ""), restricted: true, want: []netip.Prefix{p("192.0.2.0/24")}},
		{name: "spec wins over the annotation", svc: svc([]string{"192.0.2.0/24"}, "198.51.100.0/24"), restricted: true, want: []netip.Prefix{p("192.0.2.0/24")}},
		{name: "annotation, spaces and a trailing comma", svc: svc(nil, " 198.51.100.7/24 , 2001:db8::/32,"), restricted: true, want: []netip.Prefix{p("198.51.100.0/24"), p("2001:db8::/32")}},
		{name: "blank annotation: everyone", svc: svc(nil, "  ")},
		{name: "unreadable: restricted to nobody", svc: svc(nil, "198.51.100.0/24,bogus"), restricted: true, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			restricted, got, err := SourceRanges(tc.svc)
			if restricted != tc.restricted || (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Errorf("SourceRanges = %v, %v, %v; want %v, %v, error %v", restricted, got, err, tc.restricted, tc.want, tc.wantErr)
			}
		})
	}
}
