package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlb/berth/e2e/controlplane"
)

// startOnFreePorts starts a process on n ports freePort picks (start puts
// them on its command line) and waits until it listens on all of them. A
// port is picked below the ephemeral range and checked free, but another
// process may bind it before this one does: when the process then ends
// saying an address was in use, it is started again on new ports, three
// times at most, as controlplane retries etcd and kube-apiserver. A
// process that neither listens nor ends within 30 s is returned as it is,
// for the test to fail on what it does.
func startOnFreePorts(t testing.TB, n int, start func(ports []int) *proc) (*proc, []int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			ports[i] = freePort(t)
		}
		p := start(ports)
		if !endsInUse(p, ports) || attempt == 3 {
			return p, ports
		}
		t.Logf("%s: a port of %v was taken before it bound it; starting it again on others", p.name, ports)
	}
}

// endsInUse waits until p listens on ports (false), ends saying an address
// was in use (true), ends otherwise or has done neither for 30 s (false).
func endsInUse(p *proc, ports []int) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			return controlplane.AddrInUse(errors.New(p.tail(20)))
		default:
		}
		if listensOn(p.cmd.Process.Pid, ports) {
			return false
		}
	}
	return false
}

// listensOn reports whether process pid holds a listening TCP socket on
// each of ports (on any address), read from /proc: the sockets listening
// on a port, by inode, and the process's file descriptors.
func listensOn(pid int, ports []int) bool {
	inodes := map[string]int{} // socket inode -> port
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // TCP_LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			port, err := strconv.ParseUint(hexPort, 16, 16)
			if ok && err == nil && slices.Contains(ports, int(port)) {
				inodes["socket:["+fields[9]+"]"] = int(port)
			}
		}
		_ = fh.Close()
	}
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	held := map[int]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil {
			if port, ok := inodes[link]; ok {
				held[port] = true
			}
		}
	}
	return len(held) == len(ports)
}

// TestStartOnTakenPort takes the port picked for berth-controller's
// metrics before the controller binds it, as another process may: the
// controller ends saying the address is in use, and startOnFreePorts starts
// it again on another port, where it serves.
func TestStartOnTakenPort(t *testing.T) {
	e := newEnv(t)
	kubeconfig := e.saKubeconfig(t, "berth-controller")
	var taken []int
	p, ports := startOnFreePorts(t, 1, func(ports []int) *proc {
		if taken == nil {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = l.Close() })
			taken = ports
		}
		cmd := exec.Command(berthBins.path(t, "berth-controller"), "--kubeconfig", kubeconfig,
			"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--leader-elect=false")
		cmd.Env = berthEnviron()
		return startProc(t, "berth-controller", cmd, syscall.SIGTERM)
	})
	if ports[0] == taken[0] {
		t.Fatalf("started on the taken port %d", taken[0])
	}
	(&controllerProc{proc: p, metrics: fmt.Sprintf("127.0.0.1:%d", ports[0])}).waitReady(t)
}
