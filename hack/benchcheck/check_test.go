package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleTargets = `
# comment
BenchmarkForwarding10k  change-p99-ms  <=       20    one change p99
BenchmarkControllerRestart  moved      <=exact  0     addresses moved
BenchmarkControllerWaiting  served     >=exact  1000  waiting Services served
BenchmarkControllerScale/10000 ms-p99  <=       1000  p99 at 10,000
`

func output(p99, moved, served, scale string) string {
	return `goos: linux
BenchmarkForwarding10k-2   	       1	1234567 ns/op	 ` + p99 + ` change-p99-ms	 100 cold-start-ms
BenchmarkForwarding10k logs a line that is no result
BenchmarkControllerRestart 	       1	 0.45 s-to-ready	 ` + moved + ` moved
BenchmarkControllerWaiting-2 	       1	 ` + served + ` served
BenchmarkControllerScale/10000-2 	 1	 ` + scale + ` ms-p99
PASS
`
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		partial bool
		fail    []string // figures that must be reported as failing
	}{
		{name: "all met", out: output("6.8", "0", "1000", "289")},
		{name: "within the margin", out: output("29.9", "0", "1000", "1499")},
		{name: "latency beyond 1.5x", out: output("30.1", "0", "1000", "289"), fail: []string{"one change p99 (BenchmarkForwarding10k): 30.1 change-p99-ms; target <= 20 change-p99-ms, fails beyond 30"}},
		{name: "an exact count takes no margin", out: output("6.8", "1", "999", "289"), fail: []string{"addresses moved", "waiting Services served"}},
		{name: "a figure not in the output fails", out: output("6.8", "0", "1000", "289")[:120], fail: []string{"addresses moved (BenchmarkControllerRestart moved): no figure", "waiting Services served", "p99 at 10,000"}},
		{name: "unless partial", out: output("6.8", "0", "1000", "289")[:120], partial: true},
	}
	dir := t.TempDir()
	tf := filepath.Join(dir, "targets.txt")
	if err := os.WriteFile(tf, []byte(sampleTargets), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			of := filepath.Join(dir, "out.txt")
			if err := os.WriteFile(of, []byte(tc.out), 0o600); err != nil {
				t.Fatal(err)
			}
			var w bytes.Buffer
			err := run(&w, tf, []string{of}, 1.5, tc.partial)
			if (err != nil) != (len(tc.fail) > 0) {
				t.Fatalf("run = %v, want failure %v\n%s", err, len(tc.fail) > 0, w.String())
			}
			var failing []string
			for _, l := range strings.Split(w.String(), "\n") {
				if strings.HasPrefix(l, "FAIL") {
					failing = append(failing, l)
				}
			}
			if len(failing) != len(tc.fail) {
				t.Fatalf("%d failing lines, want %d:\n%s", len(failing), len(tc.fail), w.String())
			}
			for i, want := range tc.fail {
				if !strings.Contains(failing[i], want) {
					t.Errorf("line %q does not name %q", failing[i], want)
				}
			}
		})
	}
}

func TestParseTargetsRejects(t *testing.T) {
	for _, in := range []string{"", "BenchmarkX m <= 1", "BenchmarkX m < 1 fig", "BenchmarkX m <= one fig"} {
		if _, err := parseTargets(strings.NewReader(in)); err == nil {
			t.Errorf("parseTargets(%q) accepted it", in)
		}
	}
}

// TestTargetsFile checks that the repository's targets parse and name
// benchmarks that exist.
func TestTargetsFile(t *testing.T) {
	f, err := os.Open("targets.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts, err := parseTargets(f)
	if err != nil {
		t.Fatal(err)
	}
	var src bytes.Buffer
	for _, glob := range []string{"../../*/*_test.go"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			b, _ := os.ReadFile(name)
			src.Write(b)
		}
	}
	for _, tg := range ts {
		top, _, _ := strings.Cut(tg.bench, "/")
		if !strings.Contains(src.String(), "func "+top+"(b *testing.B)") {
			t.Errorf("target %q: no benchmark %s in the repository", tg.figure, top)
		}
	}
}
