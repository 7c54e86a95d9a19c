package speaker

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/client-go/tools/record"
)

func TestProblemMemo(t *testing.T) {
	type call struct {
		object, problem string
		changed         bool
	}
	tests := []struct {
		name  string
		max   int
		calls []call
	}{
		{name: "same problem once", max: 4, calls: []call{{"a", "x", true}, {"a", "x", false}, {"a", "y", true}, {"a", "y", false}}},
		{name: "objects apart", max: 4, calls: []call{{"a", "x", true}, {"b", "x", true}, {"a", "x", false}}},
		{name: "least recently reported forgotten", max: 2, calls: []call{
			{"a", "x", true}, {"b", "x", true}, {"a", "x", false}, // a is now newer than b
			{"c", "x", true},                    // forgets b
			{"a", "x", false}, {"b", "x", true}, // b again: reported once more, forgets c
			{"c", "x", true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newProblemMemo(tc.max)
			for i, c := range tc.calls {
				if got := m.changed(c.object, c.problem); got != c.changed {
					t.Errorf("call %d (%s, %s): changed %v, want %v", i, c.object, c.problem, got, c.changed)
				}
				if m.len() > tc.max {
					t.Fatalf("call %d: %d remembered, more than %d", i, m.len(), tc.max)
				}
			}
		})
	}
}

// TestEventReporterBounded reports problems for many more objects than
// are remembered, as deleted Services would over time.
func TestEventReporterBounded(t *testing.T) {
	rec := record.NewFakeRecorder(3*maxRememberedProblems + 1)
	e := newEventReporter(rec)
	for i := range 3 * maxRememberedProblems {
		e.report(context.Background(), fmt.Sprintf("Service/ns/svc-%d", i), "problem")
	}
	if n := len(rec.Events); n != 3*maxRememberedProblems {
		t.Errorf("%d Events, want one per object", n)
	}
	if n := e.last.len(); n != maxRememberedProblems {
		t.Errorf("%d objects remembered, want %d", n, maxRememberedProblems)
	}
}
