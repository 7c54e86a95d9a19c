package e2e

import (
	"context"
	"os/exec"
	"regexp"
	"testing"
	"time"
)

// TestDemo runs `berth-demo --once`, what `make demo` shows a newcomer, and
// checks the table it prints against what the example pools and Services
// must give.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, berthBins.path(t, "berth-demo"), "--once").Output()
	if err != nil {
		t.Fatalf("berth-demo --once: %v\n%s", err, out)
	}
	for _, want := range []string{
		`default/web\s+TCP/80\s+198\.51\.100\.2\s+True\s+Allocated`,
		`default/web-dual\s+TCP/80\s+203\.0\.113\.0,2001:db8:200::\s+True`,
		`default/dns-udp\s+UDP/53\s+198\.51\.100\.3\s+True`,
		`default/dns-tcp\s+TCP/53\s+198\.51\.100\.3\s+True`,
		`default/not-mine\s+TCP/80\s+-\s+False\s+RequestedAddressUnavailable\s+.*pool "team-a"`,
		`default-v4\s+198\.51\.100\.0/24\s+2/253\s+True`,
		`default-v6\s+2001:db8:100::/64\s+0/18446744073709551616\s+True`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
