package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestLoggingFormatJSON starts berth-controller, berth-speaker (no back
// end: it needs no privileges) and berth-ccm against a real API server
// with --logging-format=json and checks that every line each writes is a
// JSON object with a message, and that the line it is waited for is among
// them.
func TestLoggingFormatJSON(t *testing.T) {
	e := newEnv(t)
	jsonFlag := "--logging-format=json"
	tests := []struct {
		name  string
		start func(t *testing.T) *proc
		want  string // a message the process logs when it has started
	}{
		{"berth-controller", func(t *testing.T) *proc { return e.startController(t, jsonFlag).proc }, "Rebuilt allocations from Service status"},
		{"berth-speaker", func(t *testing.T) *proc {
			cmd := exec.Command(berthBins.path(t, "berth-speaker"), "--kubeconfig", e.speakerKubeconfig(t, "n1"),
				"--node-name", "n1", "--namespace", berthNS, "--bgp=false", "--l2=false", "--forwarding=false",
				"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), jsonFlag)
			cmd.Env = berthEnviron()
			return startProc(t, "berth-speaker", cmd, syscall.SIGTERM)
		}, "Speaker starting"},
		{"berth-ccm", func(t *testing.T) *proc {
			return e.startCCMWith(t, "backend: pools\n", nil, jsonFlag, fmt.Sprintf("--readyz-address=127.0.0.1:%d", freePort(t)))
		}, "Starting service controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.start(t)
			deadline := time.Now().Add(30 * time.Second)
			for !p.logged(tt.want) {
				if time.Now().After(deadline) {
					t.Fatalf("%q not logged; log:\n%s", tt.want, p.tail(20))
				}
				time.Sleep(50 * time.Millisecond)
			}
			p.logMu.Lock()
			lines := append([]string(nil), p.log...)
			p.logMu.Unlock()
			for _, l := range lines {
				var entry map[string]any
				if err := json.Unmarshal([]byte(l), &entry); err != nil {
					t.Errorf("not a JSON line: %q (%v)", l, err)
					continue
				}
				if _, ok := entry["msg"]; !ok {
					t.Errorf("a JSON line without msg: %q", l)
				}
			}
			t.Logf("%d JSON lines, for example %s", len(lines), lines[0])
		})
	}
}
