package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/controlplane"
)

// binaries builds Berth's commands once per test binary.
type binaries struct {
	once sync.Once
	dir  string
	err  error
}

var berthBins binaries

// path returns the path of a Berth command built from this checkout.
func (b *binaries) path(t testing.TB, name string) string {
	t.Helper()
	b.once.Do(func() {
		root, err := controlplane.RepoRoot()
		if err != nil {
			b.err = err
			return
		}
		b.dir, b.err = os.MkdirTemp("", "berth-e2e-bin-")
		if b.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", b.dir+"/", "./cmd/...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/...: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("build Berth: %v", b.err)
	}
	return filepath.Join(b.dir, name)
}

// env is one control plane with clients, shared by the subtests of a test.
type env struct {
	t     testing.TB
	cp    *controlplane.ControlPlane
	kube  kubernetes.Interface
	berth versioned.Interface
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, controlplane.Options{})
}

func newEnvWith(t testing.TB, opts controlplane.Options) *env {
	t.Helper()
	cp := controlplane.StartForTest(t, opts)
	cfg := cp.RESTConfig()
	return &env{t: t, cp: cp, kube: kubernetes.NewForConfigOrDie(cfg), berth: versioned.NewForConfigOrDie(cfg)}
}

// proc is a process a test started, with the tail of its log.
type proc struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	logMu sync.Mutex
	log   []string
	// refused is the first line of the log that reports the API server
	// refusing a ServiceAccount a request (RBAC). It fails the test at
	// cleanup unless mayBeRefused is set: some refusals (an Event not
	// written, a retry that later succeeds) have no other visible effect.
	refused      string
	mayBeRefused bool
}

// isRefusal reports whether a log line says the API server refused a
// ServiceAccount a request.
func isRefusal(line string) bool {
	return strings.Contains(line, "forbidden") && strings.Contains(line, "system:serviceaccount:")
}

// startProc starts cmd, keeps the tail of its standard error, and at t's
// cleanup stops it with sig and, if t failed, logs that tail.
func startProc(t testing.TB, name string, cmd *exec.Cmd, sig syscall.Signal) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.logMu.Lock()
			if p.refused == "" && isRefusal(sc.Text()) {
				p.refused = sc.Text()
			}
			p.log = append(p.log, sc.Text())
			if len(p.log) > 600 {
				p.log = p.log[len(p.log)-400:]
			}
			p.logMu.Unlock()
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(sig)
		p.logMu.Lock()
		refused, mayBe := p.refused, p.mayBeRefused
		p.logMu.Unlock()
		if refused != "" && !mayBe {
			t.Errorf("%s was refused a request by RBAC (a permission missing from the manifests?):\n%s", name, refused)
		}
		if t.Failed() {
			t.Logf("%s log tail:\n%s", name, p.tail(60))
		}
	})
	return p
}

// stop sends sig and waits (at most 20 s, then SIGKILL) for the exit. It
// continues a process a test stopped, so that it can act on sig.
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return strings.Join(p.log[max(0, len(p.log)-n):], "\n")
}

// logged reports whether a line of the log contains substr.
func (p *proc) logged(substr string) bool {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	for _, l := range p.log {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// loggedLine reports whether one line of the log contains every part.
func (p *proc) loggedLine(parts ...string) bool {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	for _, l := range p.log {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(l, s) }) {
			return true
		}
	}
	return false
}

// saKubeconfig returns the kubeconfig a Berth component runs with: the
// token of its ServiceAccount in Berth's namespace, bound by the RBAC the
// manifests ship (controlplane.ServiceAccountKubeconfig), never the admin
// token, so that a permission the manifests lack fails the test. The
// tests' own requests keep using the admin client.
func (e *env) saKubeconfig(t testing.TB, account string) string {
	t.Helper()
	path, err := e.cp.ServiceAccountKubeconfig(t.Context(), berthNS, account)
	if err != nil {
		t.Fatalf("kubeconfig of ServiceAccount %s: %v", account, err)
	}
	return path
}

// speakerKubeconfig is saKubeconfig for the speaker on node: its token is
// bound to the speaker's Pod on that node (a Pod object; no kubelet runs
// it), as the kubelet's projected token is, without which the chart's
// admission policy refuses the speaker its node's BerthNodeStatus.
func (e *env) speakerKubeconfig(t testing.TB, node string) string {
	t.Helper()
	path, err := e.cp.NodeServiceAccountKubeconfig(t.Context(), berthNS, "berth-speaker", node)
	if err != nil {
		t.Fatalf("kubeconfig of the speaker on %s: %v", node, err)
	}
	return path
}

// berthEnviron is the environment of Berth's processes, with extra added.
// Their informers list and then watch, as against an API server without
// watch-list streaming, instead of streaming their initial list over a
// watch (client-go's WatchListClient, which this API server supports, so
// that list would never be asked for): so a test fails if the manifests
// lack either verb.
func berthEnviron(extra ...string) []string {
	return append(append(os.Environ(), "KUBE_FEATURE_WatchListClient=false"), extra...)
}

// controllerProc is a running berth-controller.
type controllerProc struct {
	*proc
	metrics string
}

// startController runs berth-controller against the env's API server, as
// ServiceAccount berth-controller (see saKubeconfig). It is stopped
// (SIGTERM) at cleanup unless the test stopped it already.
func (e *env) startController(t testing.TB, args ...string) *controllerProc {
	t.Helper()
	return e.startControllerAs(t, e.saKubeconfig(t, "berth-controller"), nil, args...)
}

// startControllerAs is startController with another kubeconfig and extra
// environment variables (see berthEnviron), for the tests of RBAC itself.
func (e *env) startControllerAs(t testing.TB, kubeconfig string, environ []string, args ...string) *controllerProc {
	t.Helper()
	var metrics string
	p, _ := startOnFreePorts(t, 1, func(ports []int) *proc {
		metrics = fmt.Sprintf("127.0.0.1:%d", ports[0])
		all := append([]string{
			"--kubeconfig", kubeconfig,
			"--metrics-addr", metrics,
			"--leader-elect=false",
			"--pool-status-delay=200ms",
			"-v=2",
		}, args...)
		cmd := exec.Command(berthBins.path(t, "berth-controller"), all...)
		cmd.Env = berthEnviron(environ...)
		return startProc(t, "berth-controller", cmd, syscall.SIGTERM)
	})
	return &controllerProc{proc: p, metrics: metrics}
}

// waitReady waits until the controller's /readyz answers ok.
func (p *controllerProc) waitReady(t testing.TB) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + p.metrics + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("controller not ready: %v", err)
	}
}

// metric returns the value of an unlabelled counter or gauge from /metrics.
func (p *controllerProc) metric(t testing.TB, name string) string {
	t.Helper()
	v, err := scrapeMetric(p.metrics, name, "")
	if err != nil {
		t.Fatalf("get metrics: %v", err)
	}
	return v
}

// scrapeMetric reads the /metrics of the process serving addr and returns
// the value of the sample of name: unlabelled when labels is empty, else the
// first whose labels contain labels (`peer="r1"`). "" when there is none.
func scrapeMetric(addr, name, labels string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if (labels == "" && f[0] == name) || (labels != "" && strings.HasPrefix(f[0], name+"{") && strings.Contains(f[0], labels)) {
			return f[1], nil
		}
	}
	return "", sc.Err()
}

// freePort returns a free port on 127.0.0.1 for a Berth process to bind
// (controlplane.FreePort: outside the ephemeral range, so no outgoing
// connection takes it before the process binds it).
func freePort(t testing.TB) int {
	t.Helper()
	port, err := controlplane.FreePort(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// namespace creates a namespace with labels.
func (e *env) namespace(t testing.TB, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := e.kube.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// pool creates an IPPool.
func (e *env) pool(t testing.TB, name string, spec v1alpha1.IPPoolSpec) *v1alpha1.IPPool {
	t.Helper()
	p, err := e.berth.BerthV1alpha1().IPPools().Create(t.Context(), &v1alpha1.IPPool{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pool %s: %v", name, err)
	}
	return p
}

// updatePool changes a pool's spec, retrying on conflicts.
func (e *env) updatePool(t *testing.T, name string, mutate func(*v1alpha1.IPPoolSpec)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.berth.BerthV1alpha1().IPPools().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		mutate(&p.Spec)
		_, err = e.berth.BerthV1alpha1().IPPools().Update(ctx, p, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("update pool %s: %v", name, err)
	}
}

// svcOpt changes a Service before it is created.
type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", p), Port: p, Protocol: corev1.ProtocolTCP})
		}
	}
}

func withFamilies(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.IPFamilyPolicy = &policy
		s.Spec.IPFamilies = fams
	}
}

func withClass(class string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &class }
}

// service creates a LoadBalancer Service.
func (e *env) service(t *testing.T, ns, name string, opts ...svcOpt) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	out, err := e.kube.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s/%s: %v", ns, name, err)
	}
	return out
}

// addrs returns the ingress IPs of a Service.
func addrs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// condition returns the Service's AddressAllocated condition, if any.
func condition(s *corev1.Service) *metav1.Condition {
	for i := range s.Status.Conditions {
		if s.Status.Conditions[i].Type == v1alpha1.ServiceConditionAddressAllocated {
			return &s.Status.Conditions[i]
		}
	}
	return nil
}

// waitService polls a Service until ok accepts it.
func (e *env) waitService(t *testing.T, ns, name string, what string, ok func(*corev1.Service) bool) *corev1.Service {
	t.Helper()
	var last *corev1.Service
	err := wait.PollUntilContextTimeout(t.Context(), 25*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := e.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = s
		return ok(s), nil
	})
	if err != nil {
		t.Fatalf("service %s/%s: waiting for %s: %v; last status: %s", ns, name, what, err, statusString(last))
	}
	return last
}

// waitAllocated waits until the Service has n addresses and a True condition.
func (e *env) waitAllocated(t *testing.T, ns, name string, n int) []netip.Addr {
	t.Helper()
	s := e.waitService(t, ns, name, fmt.Sprintf("%d addresses", n), func(s *corev1.Service) bool {
		c := condition(s)
		return len(addrs(s)) == n && c != nil && c.Status == metav1.ConditionTrue
	})
	return addrs(s)
}

// waitPending waits until the Service's condition is False with reason.
func (e *env) waitPending(t *testing.T, ns, name, reason string) *metav1.Condition {
	t.Helper()
	s := e.waitService(t, ns, name, "condition reason "+reason, func(s *corev1.Service) bool {
		c := condition(s)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == reason && len(s.Status.LoadBalancer.Ingress) == 0
	})
	return condition(s)
}

func statusString(s *corev1.Service) string {
	if s == nil {
		return "<none>"
	}
	c := condition(s)
	cs := "<no condition>"
	if c != nil {
		cs = fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	}
	return fmt.Sprintf("ingress=%v %s", addrs(s), cs)
}

// events waits briefly for Events about a Service with reason (they are
// written asynchronously) and returns their messages.
func (e *env) events(t *testing.T, ns, name, reason string) []string {
	t.Helper()
	return e.eventsWithin(t, ns, name, reason, 5*time.Second)
}

// eventsWithin waits up to d for Events about a Service with reason.
func (e *env) eventsWithin(t *testing.T, ns, name, reason string, d time.Duration) []string {
	t.Helper()
	var out []string
	_ = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, d, true, func(ctx context.Context) (bool, error) {
		list, err := e.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=" + reason,
		})
		if err != nil {
			return false, nil
		}
		out = out[:0]
		for _, ev := range list.Items {
			out = append(out, ev.Message)
		}
		return len(out) > 0, nil
	})
	return out
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
