package doctor

import (
	"fmt"
	"io"
	"strings"
)

// Severity says how bad a finding is.
type Severity int

// Severities, from good to bad.
const (
	OK Severity = iota
	Info
	Warn
	Fail
)

func (s Severity) String() string {
	return [...]string{"ok", "info", "warn", "FAIL"}[s]
}

// Finding is the result of one check, or one problem a check found.
type Finding struct {
	Check    string
	Severity Severity
	// Summary says what was found, in one line.
	Summary string
	// Fix says what to do; empty for OK.
	Fix string
}

// Write prints findings in the order given, then a verdict line, and
// reports how many failed.
func Write(w io.Writer, fs []Finding) (failed int, err error) {
	var b strings.Builder
	warned := 0
	for _, f := range fs {
		fmt.Fprintf(&b, "%-6s %s: %s\n", "["+f.Severity.String()+"]", f.Check, f.Summary)
		if f.Fix != "" {
			for i, line := range strings.Split(f.Fix, "\n") {
				lead := "fix:"
				if i > 0 {
					lead = "    "
				}
				fmt.Fprintf(&b, "       %s %s\n", lead, line)
			}
		}
		switch f.Severity {
		case Fail:
			failed++
		case Warn:
			warned++
		}
	}
	switch {
	case failed == 0 && warned == 0:
		b.WriteString("\nNo problems found.\n")
	default:
		fmt.Fprintf(&b, "\n%s, %s.\n", plural(failed, "problem"), plural(warned, "warning"))
	}
	_, err = io.WriteString(w, b.String())
	return failed, err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
