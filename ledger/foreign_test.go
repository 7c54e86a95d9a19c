package ledger

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHolderNames(t *testing.T) {
	tests := []struct {
		name        string
		ids         []string
		want        []string
		wantForeign int
	}{
		{name: "none", ids: nil, want: nil},
		{name: "only Berth's", ids: []string{"a/x", "b/y"}, want: []string{"a/x", "b/y"}},
		{
			name:        "foreign ones by name, in order",
			ids:         []string{"a/x", "c/z", "foreign:b/ccm", "foreign:d/ccm"},
			want:        []string{"a/x", "b/ccm", "c/z", "d/ccm"},
			wantForeign: 2,
		},
		{
			name:        "a Service in both roles while it changes hands is listed once",
			ids:         []string{"a/x", "foreign:a/x"},
			want:        []string{"a/x"},
			wantForeign: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, foreign := HolderNames(tc.ids)
			if diff := cmp.Diff(tc.want, got); diff != "" || foreign != tc.wantForeign {
				t.Errorf("HolderNames(%v) = %v, %d; want %v, %d (-want +got):\n%s", tc.ids, got, foreign, tc.want, tc.wantForeign, diff)
			}
		})
	}
}
