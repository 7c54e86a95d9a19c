package migrate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/berthlb/berth/migrate"
)

// FuzzConvert feeds arbitrary YAML to the converter: reading may fail, but
// converting whatever was read and writing the result must not panic, and
// every output must read back as YAML.
//
// No execution is slow (0.2 to 2 ms, the YAML parser's cost), but the
// fuzzer minimizes every new interesting input before going on, and
// minimizing is quadratic in the input's length: from the 2 kB test files,
// each minimization ran into Go's default -fuzzminimizetime of 60 s and the
// fuzzer reported 0 executions a second after its baseline. Run it as
// hack/fuzz.sh does, with -fuzzminimizetime 1s; the seeds are the test
// files without their comments and each of their documents alone, so that
// mutated inputs, and their minimization, stay short.
func FuzzConvert(f *testing.F) {
	for _, seed := range convertSeeds(f) {
		f.Add(seed)
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

var (
	commentLine = regexp.MustCompile(`(?m)^#.*\n`)
	docSep      = regexp.MustCompile(`(?m)^---\n`)
)

// convertSeeds returns each testdata file without its comment lines, and
// each of its documents alone.
func convertSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) == 0 {
		tb.Fatalf("no seed files in testdata: %v", err)
	}
	var seeds [][]byte
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			tb.Fatal(err)
		}
		b = commentLine.ReplaceAll(b, nil)
		seeds = append(seeds, b)
		if docs := docSep.Split(string(b), -1); len(docs) > 1 {
			for _, d := range docs {
				seeds = append(seeds, []byte(d))
			}
		}
	}
	return seeds
}
