package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// A target bounds one metric of one benchmark.
type target struct {
	bench, metric string
	// atMost: the figure must not exceed bound (latency, memory); else it
	// must not fall below it (Services served).
	atMost bool
	bound  float64
	// exact: no margin (counts such as addresses moved, where 0 means 0).
	exact bool
	// figure names the figure as docs/benchmarks.md does.
	figure string
}

// parseTargets reads lines of the form
//
//	BenchmarkName/sub  metric  op  bound  figure words...
//
// where op is <= or >=, or <=exact or >=exact for a bound that takes no
// margin; blank lines and # comments are skipped.
func parseTargets(r io.Reader) ([]target, error) {
	var out []target
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("line %d: want benchmark, metric, op, bound and the figure's name: %q", n, line)
		}
		t := target{bench: f[0], metric: f[1], figure: strings.Join(f[4:], " ")}
		op, exact := strings.CutSuffix(f[2], "exact")
		t.exact = exact
		switch op {
		case "<=":
			t.atMost = true
		case ">=":
		default:
			return nil, fmt.Errorf("line %d: op %q is not <=, >=, <=exact or >=exact", n, f[2])
		}
		b, err := strconv.ParseFloat(f[3], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		t.bound = b
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no targets")
	}
	return out, nil
}

// procSuffix is the -GOMAXPROCS suffix go test appends to a name.
var procSuffix = regexp.MustCompile(`-\d+$`)

// parseResults reads `go test -bench` output: result lines are
//
//	BenchmarkName/sub-2  	 1	 123 ns/op	 4.5 unit	...
//
// A benchmark that ran more than once (-count) keeps every value.
func parseResults(r io.Reader) (map[string]map[string][]float64, error) {
	out := map[string]map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with a benchmark's name
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		if out[name] == nil {
			out[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			out[name][f[i+1]] = append(out[name][f[i+1]], v)
		}
	}
	return out, sc.Err()
}

// verdict is one target against the figures measured for it.
type verdict struct {
	target
	margin  float64
	got     float64 // the worst of the measured values
	missing bool
	ok      bool
}

func (v verdict) describe() string {
	op := ">="
	if v.atMost {
		op = "<="
	}
	bound := fmt.Sprintf("target %s %g %s", op, v.bound, v.metric)
	if !v.exact {
		bound += fmt.Sprintf(", fails beyond %g", v.limit())
	}
	if v.missing {
		return fmt.Sprintf("%s (%s %s): no figure in the output; %s", v.figure, v.bench, v.metric, bound)
	}
	return fmt.Sprintf("%s (%s): %g %s; %s", v.figure, v.bench, v.got, v.metric, bound)
}

// limit is the value beyond which the figure fails.
func (v verdict) limit() float64 {
	switch {
	case v.exact:
		return v.bound
	case v.atMost:
		return v.bound * v.margin
	default:
		return v.bound / v.margin
	}
}

func check(targets []target, results map[string]map[string][]float64, margin float64) []verdict {
	out := make([]verdict, 0, len(targets))
	for _, t := range targets {
		v := verdict{target: t, margin: margin}
		vals := results[t.bench][t.metric]
		if len(vals) == 0 {
			v.missing = true
			out = append(out, v)
			continue
		}
		v.got = vals[0]
		for _, x := range vals[1:] {
			if t.atMost {
				v.got = math.Max(v.got, x)
			} else {
				v.got = math.Min(v.got, x)
			}
		}
		if t.atMost {
			v.ok = v.got <= v.limit()
		} else {
			v.ok = v.got >= v.limit()
		}
		out = append(out, v)
	}
	return out
}
