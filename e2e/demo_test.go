package e2e

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/berthlb/berth/internal/hostdeps"
)

// TestDemo runs `berth-demo --once`, what `make demo` shows a newcomer, and
// checks the table it prints against what the example pools and Services
// must give. As root with FRR and nftables installed, the demo also builds
// its network of namespaces: the test then checks that the router learned
// the example addresses over BGP from both nodes and that the client's
// requests were served by a node's NodePort; otherwise, that the demo said
// why it skipped that part.
func TestDemo(t *testing.T) {
	// Build first: under load the build alone can take minutes.
	bin := berthBins.path(t, "berth-demo")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--once").Output()
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
	network := []string{`==> Skipped the network part .*: \S`}
	if demoNetworkAvailable() {
		network = []string{
			// ECMP: one next hop per node.
			`(?m)^\s+198\.51\.100\.2 .*\n\s+nexthop via \S+ dev eth0.*\n\s+nexthop via `,
			`(?m)^\s+2001:db8:200:: .*\n\s+nexthop via `,
			`default/web\s+http://198\.51\.100\.2:80/\s+served by node[12] \(NodePort \d+, client 192\.0\.2\.2:\d+\)`,
			`default/web-dual\s+http://\[2001:db8:200::\]:80/\s+served by node[12] `,
			`default/dns-udp\s+udp 198\.51\.100\.3:53\s+served by node[12] `,
			`default/dns-tcp\s+http://198\.51\.100\.3:53/\s+served by node[12] `,
			`==> Stopping the speakers and FRR, removing the namespaces`,
		}
	}
	for _, want := range network {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// demoNetworkAvailable reports whether berth-demo can build its network:
// root and the demo's Debian packages (FRR, nftables, iproute2).
func demoNetworkAvailable() bool {
	return os.Geteuid() == 0 && len(hostdeps.Missing("demo")) == 0
}
