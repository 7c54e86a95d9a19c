// Command benchcheck gates the figures docs/benchmarks.md calls "met": it
// reads `go test -bench` output, finds each target's metric (the figures
// benchmarks report with b.ReportMetric) and fails, naming figure and
// target, when one misses its target by more than the margin.
//
//	go test -run '^$' -bench . ./... | tee bench.txt
//	go run ./hack/benchcheck -targets hack/benchcheck/targets.txt bench.txt
//
// A target whose benchmark did not run fails too, unless -partial is given
// (then it is listed as not checked): a gate that skips silently guards
// nothing. `make bench-check` runs every benchmark, then this.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	targets := flag.String("targets", "hack/benchcheck/targets.txt", "file of targets, one a line")
	margin := flag.Float64("margin", 1.5, "how many times its target a figure may miss by before it fails (a noisy, shared machine)")
	partial := flag.Bool("partial", false, "only check the targets whose benchmark ran; list the others")
	flag.Parse()
	if err := run(os.Stdout, *targets, flag.Args(), *margin, *partial); err != nil {
		fmt.Fprintf(os.Stderr, "benchcheck: %v\n", err)
		os.Exit(1)
	}
}

func run(w io.Writer, targetsFile string, outputs []string, margin float64, partial bool) error {
	tf, err := os.Open(targetsFile)
	if err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	defer tf.Close()
	targets, err := parseTargets(tf)
	if err != nil {
		return fmt.Errorf("targets %s: %w", targetsFile, err)
	}
	var in io.Reader = os.Stdin
	if len(outputs) > 0 {
		var rs []io.Reader
		for _, name := range outputs {
			f, err := os.Open(name)
			if err != nil {
				return fmt.Errorf("read benchmark output: %w", err)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		in = io.MultiReader(rs...)
	}
	results, err := parseResults(in)
	if err != nil {
		return fmt.Errorf("benchmark output: %w", err)
	}
	failed := 0
	for _, v := range check(targets, results, margin) {
		switch {
		case v.missing && partial:
			fmt.Fprintf(w, "not run  %s\n", v.describe())
		case v.missing || !v.ok:
			failed++
			fmt.Fprintf(w, "FAIL     %s\n", v.describe())
		default:
			fmt.Fprintf(w, "ok       %s\n", v.describe())
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d targets missed (margin %.2g×)", failed, len(targets), margin)
	}
	return nil
}
