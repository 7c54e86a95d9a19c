package l2

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/berthlb/berth/internal/hostdeps"
)

// The integration tests run Responders and Members in network namespaces.
// Each runs in a child process (this test binary, re-executed through
// "ip netns exec" with BERTH_L2_HELPER set), so that every socket and
// every netlink call of that process lives in the node's namespace. The
// child reads commands on stdin and reports on stdout.
const helperEnv = "BERTH_L2_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "responder":
		os.Exit(helperResponder())
	case "members":
		os.Exit(helperMembers())
	}
	os.Exit(m.Run())
}

func helperLogger() logr.Logger {
	return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
}

// helperResponder answers on eth0. It prints "ready" once its sockets are
// open, then for each stdin line "own ADDR..." calls SetOwned and prints "ok".
func helperResponder() int {
	ctx := logr.NewContext(context.Background(), helperLogger())
	r := NewResponder(ResponderConfig{Interfaces: []string{"eth0"}, Rescan: 200 * time.Millisecond})
	go func() { _ = r.Run(ctx) }()
	for len(r.Links()) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var owned []netip.Addr
		for _, s := range f[1:] {
			owned = append(owned, netip.MustParseAddr(s))
		}
		r.SetOwned(owned)
		fmt.Println("ok")
	}
	return 0
}

// helperMembers joins the cluster and prints "members a,b,c" on every change.
func helperMembers() int {
	ctx := logr.NewContext(context.Background(), helperLogger())
	key, _ := hex.DecodeString(os.Getenv("KEY"))
	var peers []string
	if p := os.Getenv("PEERS"); p != "" {
		peers = strings.Split(p, ",")
	}
	m, err := NewMembers(ctx, MembersConfig{NodeName: os.Getenv("NAME"), BindAddr: os.Getenv("BIND"), SecretKey: key, Peers: peers})
	if err != nil {
		fmt.Println("error", err)
		return 2
	}
	if len(peers) > 0 {
		if _, err := m.Join(); err != nil {
			fmt.Println("joinerr", err)
			return 3
		}
	}
	for {
		fmt.Println("members", strings.Join(m.Members(), ","))
		<-m.Changes()
	}
}

// lab is a bridge in its own namespace and one namespace per node, each
// with eth0 on the bridge. Everything is named after a random id and
// deleted by the test's cleanup.
type lab struct {
	t  *testing.T
	id string
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func requirePrivileges(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		hostdeps.Skip(t, "needs root (network namespaces, CAP_NET_RAW); run as root to include this test")
	}
	hostdeps.Require(t, append([]string{"ip"}, tools...)...)
}

func newLab(t *testing.T) *lab {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &lab{t: t, id: hex.EncodeToString(b)}
	sw := l.ns("sw")
	run(t, "ip", "netns", "add", sw)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", sw).Run() })
	run(t, "ip", "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	run(t, "ip", "-n", sw, "link", "set", "br0", "up")
	return l
}

func (l *lab) ns(name string) string { return "l2t-" + l.id + "-" + name }

// node adds namespace name with eth0 at 198.18.0.i/15 and 2001:db8:b::i/64
// and MAC 02:00:00:00:00:i.
func (l *lab) node(name string, i int) {
	t, ns := l.t, l.ns(name)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	sw := l.ns("sw")
	run(t, "ip", "-n", sw, "link", "add", "v-"+name, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run(t, "ip", "-n", sw, "link", "set", "v-"+name, "master", "br0", "up")
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac(i))
	run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("198.18.0.%d/15", i), "dev", "eth0")
	run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("2001:db8:b::%d/64", i), "dev", "eth0", "nodad")
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
}

func mac(i int) string { return fmt.Sprintf("02:00:00:00:00:%02x", i) }

// helper is a child process in a node namespace.
type helper struct {
	cmd   *exec.Cmd
	in    io.Writer
	lines chan string
}

func (l *lab) start(name, kind string, env ...string) *helper {
	t := l.t
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns(name), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"="+kind)...)
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, in: in, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(h.kill)
	return h
}

func (h *helper) kill() {
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

// expect waits for a line matching re and returns it.
func (h *helper) expect(t *testing.T, re string, within time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited waiting for %q", re)
			}
			if rx.MatchString(l) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q within %v", re, within)
		}
	}
}

func (h *helper) own(t *testing.T, addrs ...netip.Addr) {
	t.Helper()
	s := []string{"own"}
	for _, a := range addrs {
		s = append(s, a.String())
	}
	fmt.Fprintln(h.in, strings.Join(s, " "))
	h.expect(t, "^ok$", 5*time.Second)
}

var arpReply = regexp.MustCompile(`(?i)reply from \S+ \[([0-9a-f:]+)\]`)

// answers asks from the client who has addr, and returns the MACs of all
// replies, lower case. IPv4 uses arping, IPv6 ndisc6 (-m: every reply);
// both report every reply, so two nodes answering show. Without ndisc6,
// IPv6 falls back to the client's kernel (flush the entry, ping, read the
// entry), which reports one MAC.
func (l *lab) answers(t *testing.T, addr netip.Addr) []string {
	t.Helper()
	client := l.ns("client")
	if addr.Is6() {
		if _, err := exec.LookPath("ndisc6"); err == nil {
			out, _ := exec.Command("ip", "netns", "exec", client, "ndisc6", "-q", "-m", "-n", "-r", "2", "-w", "500", addr.String(), "eth0").Output()
			return strings.Fields(strings.ToLower(string(out)))
		}
		_ = exec.Command("ip", "-n", client, "neigh", "flush", "to", addr.String(), "dev", "eth0").Run()
		_ = exec.Command("ip", "netns", "exec", client, "ping", "-c", "1", "-W", "1", addr.String()).Run()
		if m := l.neigh(addr); m != "" {
			return []string{m}
		}
		return nil
	}
	// Two requests, one second apart; each reply is one line, so two
	// nodes answering would show as more lines or two MACs.
	out, _ := exec.Command("ip", "netns", "exec", client, "arping", "-c", "2", "-I", "eth0", addr.String()).CombinedOutput()
	var macs []string
	for _, m := range arpReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	if len(macs) != 2 {
		t.Errorf("arping %v: %d replies to 2 requests:\n%s", addr, len(macs), out)
	}
	return macs
}

// neigh returns the client's cached MAC for addr, or "".
func (l *lab) neigh(addr netip.Addr) string {
	out, _ := exec.Command("ip", "-n", l.ns("client"), "neigh", "show", addr.String(), "dev", "eth0").Output()
	f := strings.Fields(string(out))
	if i := slices.Index(f, "lladdr"); i >= 0 && i+1 < len(f) {
		return strings.ToLower(f[i+1])
	}
	return ""
}

func TestIntegrationResponder(t *testing.T) {
	requirePrivileges(t, "arping", "ping")
	l := newLab(t)
	nodes := []string{"n1", "n2", "n3"}
	for i, n := range nodes {
		l.node(n, i+1)
	}
	l.node("client", 100)
	run(t, "ip", "-n", l.ns("client"), "route", "add", "198.51.100.0/24", "dev", "eth0")

	helpers := map[string]*helper{}
	for _, n := range nodes {
		helpers[n] = l.start(n, "responder")
	}
	for _, n := range nodes {
		helpers[n].expect(t, "^ready$", 10*time.Second)
	}
	macOf := map[string]string{"n1": mac(1), "n2": mac(2), "n3": mac(3)}

	for _, addr := range []netip.Addr{netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:b::51:10")} {
		t.Run(addr.String(), func(t *testing.T) {
			owner := Owner(addr, nodes)
			for _, n := range nodes {
				if n == owner {
					helpers[n].own(t, addr)
				} else {
					helpers[n].own(t)
				}
			}
			if got, want := l.answers(t, addr), []string{macOf[owner]}; !slices.Equal(slices.Compact(got), want) {
				t.Fatalf("answers for %v: %v, want only %v (owner %s)", addr, got, want, owner)
			}
			// Fill the client's neighbour cache the ordinary way.
			ping := "ping"
			_ = exec.Command("ip", "netns", "exec", l.ns("client"), ping, "-c", "1", "-W", "1", addr.String()).Run()
			if got := l.neigh(addr); got != macOf[owner] {
				t.Fatalf("client neighbour entry %q, want %q", got, macOf[owner])
			}

			// Fail over: the old owner lets go first, then the new one
			// takes over, so that two nodes never answer at once.
			next := Owner(addr, slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == owner }))
			helpers[owner].own(t)
			start := time.Now()
			helpers[next].own(t, addr)
			for l.neigh(addr) != macOf[next] {
				if time.Since(start) > 5*time.Second {
					t.Fatalf("client neighbour entry still %q 5s after the takeover by %s", l.neigh(addr), next)
				}
				time.Sleep(2 * time.Millisecond)
			}
			t.Logf("failover %s -> %s: client neighbour entry updated %v after SetOwned on the new owner", owner, next, time.Since(start))
			if got, want := l.answers(t, addr), []string{macOf[next]}; !slices.Equal(slices.Compact(got), want) {
				t.Errorf("answers after failover: %v, want only %v", got, want)
			}
		})
	}
}

func TestIntegrationMembers(t *testing.T) {
	requirePrivileges(t)
	l := newLab(t)
	for i, n := range []string{"n1", "n2", "n3", "client"} {
		l.node(n, i+1)
	}
	key := hex.EncodeToString(testKey)
	seed := "198.18.0.1:7946"
	env := func(name, bind, peers string) []string {
		return []string{"NAME=" + name, "BIND=" + bind, "KEY=" + key, "PEERS=" + peers}
	}
	h1 := l.start("n1", "members", env("node-1", "198.18.0.1", "")...)
	h1.expect(t, "^members node-1$", 10*time.Second)
	l.start("n2", "members", env("node-2", "198.18.0.2", seed)...)
	h1.expect(t, "^members node-1,node-2$", 10*time.Second)

	var ds []time.Duration
	for range 3 {
		// The same node restarted: a new name would stay known, and
		// two crashed names of four would cost the quorum.
		name := "node-3"
		h3 := l.start("n3", "members", env(name, "198.18.0.3", seed)...)
		h1.expect(t, "^members node-1,node-2,"+name+"$", 10*time.Second)
		time.Sleep(500 * time.Millisecond) // let a few probe rounds pass
		start := time.Now()
		h3.kill() // SIGKILL: a crash, no leave message
		h1.expect(t, "^members node-1,node-2$", 15*time.Second)
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	t.Logf("crash detection across namespaces: %v, p50 %v", ds, ds[len(ds)/2])

	bad := hex.EncodeToString([]byte("another key 16b!"))
	hb := l.start("client", "members", "NAME=intruder", "BIND=198.18.0.4", "KEY="+bad, "PEERS="+seed)
	hb.expect(t, "^joinerr", 15*time.Second)
}
