package status

import "testing"

func TestUsageBar(t *testing.T) {
	for _, tc := range []struct {
		used, total, want string
	}{
		{"0", "256", "[....................] 0.0%"},
		{"1", "256", "[#...................] 0.3%"},
		{"128", "256", "[##########..........] 50.0%"},
		{"255", "256", "[###################.] 99.6%"},
		{"256", "256", "[####################] 100.0%"},
		{"9999", "10000", "[###################.] 99.9%"},
		// A few addresses of a /48: never shown as empty.
		{"3", "1208925819614629174706176", "[#...................] 0.1%"},
		// More used than total (a status written mid-change) is full.
		{"300", "256", "[####################] 100.0%"},
		{"", "256", "?"},
		{"1", "0", "?"},
		{"-1", "256", "?"},
	} {
		if got := usageBar(tc.used, tc.total); got != tc.want {
			t.Errorf("usageBar(%q, %q) = %q, want %q", tc.used, tc.total, got, tc.want)
		}
	}
}
