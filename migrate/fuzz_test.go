package migrate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthlb/berth/migrate"
)

// FuzzConvert feeds arbitrary YAML to the converter: reading may fail, but
// converting whatever was read and writing the result must not panic, and
// every output must read back as YAML.
func FuzzConvert(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.yaml")
	for _, in := range inputs {
		if b, err := os.ReadFile(in); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: x}\nspec: {holdTime: 1h, keepaliveTime: -3s, peerASN: -1}\n"))
	f.Add([]byte("apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: x}\nspec: {blocks: [{cidr: '::/0'}], allowFirstLastIPs: 'No'}\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		objs, err := migrate.ReadYAML(bytes.NewReader(in))
		if err != nil {
			return
		}
		res := migrate.Convert(objs)
		var out, report bytes.Buffer
		if err := migrate.WriteYAML(&out, res); err != nil {
			t.Fatalf("WriteYAML: %v", err)
		}
		if err := migrate.WriteReport(&report, res); err != nil {
			t.Fatalf("WriteReport: %v", err)
		}
		if _, err := migrate.ReadYAML(&out); err != nil {
			t.Fatalf("the output does not read back: %v\n%s", err, out.String())
		}
	})
}
