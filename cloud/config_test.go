package cloud

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		nilReader bool
		want      Config
		wantErr   string
	}{
		{name: "no file", nilReader: true, want: Config{Backend: BackendPools}},
		{name: "empty file", in: "\n", want: Config{Backend: BackendPools}},
		{name: "pools", in: "backend: pools\n", want: Config{Backend: BackendPools}},
		{name: "pools with kubeconfig", in: "backend: pools\nkubeconfig: /etc/k\n", want: Config{Backend: BackendPools, Kubeconfig: "/etc/k"}},
		{name: "aws not yet", in: "backend: aws\n", wantErr: "not implemented"},
		{name: "unknown backend", in: "backend: gce\n", wantErr: `unknown backend "gce"`},
		{name: "typo in field", in: "backnd: pools\n", wantErr: "parse cloud config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Config
			var err error
			if tc.nilReader {
				got, err = ParseConfig(nil)
			} else {
				got, err = ParseConfig(strings.NewReader(tc.in))
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
