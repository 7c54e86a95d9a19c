package bgp

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{in: "65000:100", want: 65000<<16 | 100},
		{in: "0:0", want: 0},
		{in: "65535:65535", want: 0xFFFFFFFF},
		{in: "no-export", want: CommunityNoExport},
		{in: "NO-EXPORT", want: CommunityNoExport},
		{in: "no-advertise", want: CommunityNoAdvertise},
		{in: "no-export-subconfed", want: CommunityNoExportSubconfed},
		{in: "local-as", want: CommunityNoExportSubconfed},
		{in: "no-peer", want: CommunityNoPeer},
		{in: "65536:1", wantErr: true},
		{in: "1:65536", wantErr: true},
		{in: "-1:1", wantErr: true},
		{in: "65000", wantErr: true},
		{in: "1:2:3", wantErr: true},
		{in: "", wantErr: true},
		{in: "no-such", wantErr: true},
		{in: " 1:2", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCommunity(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseCommunity(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseCommunity(%q) (-want +got):\n%s", tc.in, diff)
			}
			if err == nil {
				if back, err := ParseCommunity(FormatCommunity(got)); err != nil || back != got {
					t.Errorf("round trip of %q via %q = %d, %v", tc.in, FormatCommunity(got), back, err)
				}
			}
		})
	}
}

func TestParseLargeCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    LargeCommunity
		wantErr bool
	}{
		{in: "1:2:3", want: LargeCommunity{1, 2, 3}},
		{in: "4294967295:0:4294967295", want: LargeCommunity{4294967295, 0, 4294967295}},
		{in: "4294967296:0:0", wantErr: true},
		{in: "1:2", wantErr: true},
		{in: "1:2:3:4", wantErr: true},
		{in: "a:b:c", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLargeCommunity(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseLargeCommunity(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseLargeCommunity(%q) (-want +got):\n%s", tc.in, diff)
			}
			if err == nil && got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "no-export", "1:2:3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseCommunity(s); err == nil {
			if back, err := ParseCommunity(FormatCommunity(c)); err != nil || back != c {
				t.Errorf("round trip of %q: %d, %v", s, back, err)
			}
		}
		if c, err := ParseLargeCommunity(s); err == nil {
			if back, err := ParseLargeCommunity(c.String()); err != nil || back != c {
				t.Errorf("round trip of %q: %v, %v", s, back, err)
			}
		}
	})
}
