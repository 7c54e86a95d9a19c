package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/cluster"
	"github.com/berthlb/berth/e2e/netlab"
	"github.com/berthlb/berth/internal/hostdeps"
)

// TestDemoCluster runs `berth-demo --cluster`, what `make demo` shows, until
// it says the cluster stays up, then interrupts it as Ctrl-C would. It
// checks what the demo printed (two Ready nodes, Berth's pods from the
// chart, both Services' addresses, the router's ECMP route through both
// nodes, every request answered by an echo pod, the node answering ARP)
// and that the demo removed everything it made: the lab's namespaces and
// links, every process and cgroup of its nodes, its directories.
//
// It brings up a whole cluster of its own, as TestCluster does (about two
// minutes warm on an idle machine, more under load), so it runs only with
// BERTH_DEMO_CLUSTER=1 (`make demo-test`).
func TestDemoCluster(t *testing.T) {
	if os.Getenv("BERTH_DEMO_CLUSTER") == "" {
		t.Skip("brings up a cluster of its own, as TestCluster does (minutes); BERTH_DEMO_CLUSTER=1 or `make demo-test` runs it")
	}
	netlab.RequireRoot(t)
	hostdeps.Require(t, append(cluster.Commands, "vtysh")...)
	bin := berthBins.path(t, "berth-demo")
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--cluster")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var upAfter time.Duration
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "The cluster stays up until you press Ctrl-C") {
			upAfter = time.Since(began)
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Error(err)
			}
		}
	}
	err = cmd.Wait()
	report := out.String()
	t.Logf("berth-demo --cluster printed:\n%s", report)
	if err != nil {
		t.Fatalf("berth-demo --cluster: %v\n%s", err, lastBytes(stderr.String(), 5000))
	}
	if upAfter == 0 {
		t.Fatal("the demo never said that the cluster stays up")
	}
	t.Logf("MEASURED: berth-demo --cluster showed its traffic %v after it started; it exited, clean, %v after Ctrl-C",
		upAfter.Round(time.Second), (time.Since(began) - upAfter).Round(time.Second))

	pod := `pod=echo-\S+ node=node[12] client=\S+\n`
	for _, want := range []string{
		`(?m)^node1\s+Ready\s+198\.18\.\d+\.\d+\s+198\.19\.\S+/25\s+v1\.37\.2\s+containerd://`,
		`(?m)^node2\s+Ready\s`,
		`(?m)^    berth-controller-\S+\s+node[12]\s+berth-controller\s`,
		`(?m)^    berth-speaker-\S+\s+node1\s+berth-speaker\s`,
		`(?m)^    berth-speaker-\S+\s+node2\s+berth-speaker\s`,
		`(?m)^    demo/echo-bgp\s+bgp\s+203\.0\.113\.\d+\s+TCP/80\s`,
		`(?m)^    demo/echo-l2\s+l2\s+198\.18\.\d+\.24\d\s+TCP/80\s`,
		`(?m)^    203\.0\.113\.\d+ .*proto bgp.*\n\s+nexthop via 198\.18\.\d+\.\d+ dev eth0 .*\n\s+nexthop via 198\.18\.\d+\.\d+ dev eth0 `,
		`(?m)^\$ curl http://203\.0\.113\.\d+/ .*\n(` + pod + `){6}`,
		`(?m)^\$ curl http://198\.18\.\d+\.24\d/ .*\n(` + pod + `){6}`,
		`==> node[12] answers ARP for 198\.18\.\d+\.24\d: the client's neighbor entry is \S+ \(node[12]'s eth0\)`,
		`(?m)^    done: nothing of the demo is left$`,
	} {
		if !regexp.MustCompile(want).MatchString(report) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Every answer came from one of the Deployment's pods the demo listed.
	pods := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^    (echo-\S+)\s+node[12]\s+198\.19\.`).FindAllStringSubmatch(report, -1) {
		pods[m[1]] = true
	}
	answers := regexp.MustCompile(`(?m)^pod=(\S+) `).FindAllStringSubmatch(report, -1)
	for _, m := range answers {
		if !pods[m[1]] {
			t.Errorf("answer from pod %s, not one of the echo pods %v", m[1], pods)
		}
	}
	if len(pods) != 2 || len(answers) != 12 {
		t.Errorf("%d echo pods listed, %d answers; want 2 and 12", len(pods), len(answers))
	}
	checkDemoCleanedUp(t, report)
}

// checkDemoCleanedUp checks that nothing the cluster demo reported making is
// left: the lab's namespaces and links, processes in the lab's namespaces,
// under its directory or in its nodes' cgroups, the cgroups, the cluster's
// and the router's directories.
func checkDemoCleanedUp(t *testing.T, report string) {
	t.Helper()
	m := regexp.MustCompile(`cluster up: lab ([0-9a-f]+), directory (\S+);`).FindStringSubmatch(report)
	if m == nil {
		t.Fatal("the demo did not print its lab and directory")
	}
	id, dir := m[1], m[2]
	namespaces, links, err := netlab.Leftovers(id)
	if err != nil {
		t.Fatal(err)
	}
	if len(namespaces)+len(links) > 0 {
		t.Errorf("lab %s left namespaces %v and links %v", id, namespaces, links)
	}
	paths := []string{dir}
	if r := regexp.MustCompile(`vtysh --vty_socket (\S+) `).FindStringSubmatch(report); r != nil {
		paths = append(paths, r[1])
	} else {
		t.Error("the demo did not print the router's directory")
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/berth-" + id + "-*")
	more, _ := filepath.Glob("/sys/fs/cgroup/berth-" + id + "-*")
	paths = append(paths, append(cgroups, more...)...)
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
	if procs := demoProcesses(id, dir); len(procs) > 0 {
		t.Errorf("processes left: %v", procs)
	}
}

// demoProcesses lists the processes whose command line names the lab id or
// the cluster's directory, or whose cgroups are a node's of lab id.
func demoProcesses(id, dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := fmt.Sscan(e.Name(), new(int)); err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cgroup, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		line := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(line, "bth-"+id+"-") || strings.Contains(line, dir) || strings.Contains(string(cgroup), "/berth-"+id+"-") {
			out = append(out, e.Name()+": "+line)
		}
	}
	return out
}
