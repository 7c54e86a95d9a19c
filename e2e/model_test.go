package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/berthlb/berth/e2e/controlplane"
)

var (
	modelSeed     = flag.Uint64("model.seed", 0, "TestControllerModel: run this seed only (0: the fixed seeds, or random ones with -model.duration)")
	modelSteps    = flag.Int("model.steps", 40, "TestControllerModel: operations per seed")
	modelDuration = flag.Duration("model.duration", 0, "TestControllerModel: run random seeds until this much time has passed (make soak)")
	modelGoOn     = flag.Bool("model.keep-going", false, "TestControllerModel: report every violation and carry on instead of stopping at the first failing step")
)

// modelFixedSeeds are what `make test` runs: one seed (two replicas, no
// berth-ccm) that fits in about a minute and, on the code of issue 12,
// fails at step 21 (a requested address silently dropped) and goes on to
// liveness and restart violations with -model.keep-going.
var modelFixedSeeds = []uint64{713400}

// TestControllerModel drives seeded random sequences of operations on
// Services, BerthIPPools, namespaces and the controller processes against a
// real API server, and after every step checks the invariants of
// model_check_test.go and model_inv_test.go. A failure prints the seed;
// rerun it with -model.seed.
func TestControllerModel(t *testing.T) {
	switch {
	case *modelSeed != 0:
		runModel(t, *modelSeed)
	case *modelDuration > 0:
		end := time.Now().Add(*modelDuration)
		for time.Now().Before(end) {
			seed := rand.Uint64()%1_000_000 + 3
			if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runModel(t, seed) }) && !*modelGoOn {
				return
			}
		}
	default:
		for _, seed := range modelFixedSeeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runModel(t, seed) })
		}
	}
}

// fleet is the controller processes of a run: one, or two replicas with
// leader election; berth-ccm beside them when ccm.
type fleet struct {
	e     *env
	t     *testing.T
	ccm   bool
	ha    bool
	ctrls []*controllerProc
	cloud *proc
}

func (f *fleet) args() []string {
	var a []string
	if f.ha {
		a = append(a, "--leader-elect", "--leader-election-namespace=berth-system",
			"--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms", "--leader-elect-retry-period=250ms")
	}
	if f.ccm {
		a = append(a, "--handle-unclassed=false")
	}
	return a
}

func (f *fleet) start() {
	n := 1
	if f.ha {
		n = 2
	}
	f.ctrls = slices.DeleteFunc(f.ctrls, func(c *controllerProc) bool { return !alive(c.proc) })
	for len(f.ctrls) < n {
		f.ctrls = append(f.ctrls, f.e.startController(f.t, f.args()...))
	}
}

func (f *fleet) stop(sig syscall.Signal) {
	for _, c := range f.ctrls {
		c.stop(sig)
	}
	f.ctrls = nil
}

func alive(p *proc) bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// leader returns the running replica that leads (the only one without
// leader election), nil if none does yet.
func (f *fleet) leader() *controllerProc {
	for _, c := range f.ctrls {
		if alive(c.proc) && (!f.ha || c.logged("Became leader")) {
			return c
		}
	}
	return nil
}

// waitUp waits until a leader runs and reports ready (it is ready only
// once it has replayed the Services' status).
func (f *fleet) waitUp(ctx context.Context) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		l := f.leader()
		if l == nil {
			return false, nil
		}
		resp, err := http.Get("http://" + l.metrics + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// modelRun is one seed's run.
type modelRun struct {
	t     *testing.T
	seed  uint64
	m     *model
	fl    *fleet
	chk   checker
	log   []string
	prev  *snapshot
	fails int
	told  map[int]bool   // invariants whose first violation was reported with every operation
	seen  map[string]int // condition reasons of the controller's Services over all checks: what the run exercised
}

func runModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e := newEnv(t)
	ctx := t.Context()
	e.namespace(t, "berth-system", nil)
	for _, ns := range modelNamespaces {
		e.namespace(t, ns, nil)
	}
	fl := &fleet{e: e, t: t, ccm: seed%2 == 1, ha: rng.IntN(2) == 0}
	if fl.ccm {
		if _, err := controlplane.CreateNode(ctx, e.kube, "node-1", netip.MustParseAddr("10.0.0.1")); err != nil {
			t.Fatal(err)
		}
		fl.cloud = e.startCCM(t)
	}
	fl.start()
	r := &modelRun{t: t, seed: seed, fl: fl, chk: checker{ccm: fl.ccm}, seen: map[string]int{}, told: map[int]bool{},
		m: &model{rng: rng, e: e, pools: map[string]*modelPool{}, services: map[string]*modelService{}, nsGold: map[string]bool{}, touched: newTouches()}}
	t.Logf("seed %d: berth-ccm %v, two replicas %v, %d steps", seed, fl.ccm, fl.ha, *modelSteps)
	if err := fl.waitUp(ctx); err != nil {
		t.Fatalf("controller not up: %v", err)
	}
	// A run starts with three pools, so that most Services are served and
	// the pools fill up early.
	for _, name := range []string{"v4a", "v6a", "dual"} {
		slot := modelSlots[slices.IndexFunc(modelSlots, func(s modelSlot) bool { return s.name == name })]
		p := &modelPool{slot: slot, reserved: map[netip.Addr]bool{}}
		if slot.base4.IsValid() {
			p.n4 = 2
		}
		if slot.base6.IsValid() {
			p.n6 = 2
		}
		if err := r.m.writePool(ctx, p, true); err != nil {
			t.Fatal(err)
		}
		r.log = append(r.log, fmt.Sprintf("  0. create pool %s with %d IPv4 and %d IPv6 addresses", name, p.n4, p.n6))
	}
	start := time.Now()
	for step := 1; step <= *modelSteps; step++ {
		if err := r.step(ctx, step); err != nil {
			r.fail(step, fmt.Sprintf("operation failed: %v", err), nil, r.prev)
			return
		}
		if !r.checkStep(ctx, step) && !*modelGoOn {
			return
		}
	}
	t.Logf("seed %d: %d steps in %v, %d failing steps; Service conditions seen at the checks: %v",
		seed, *modelSteps, time.Since(start).Round(time.Millisecond), r.fails, r.seen)
}

// step draws and performs one operation: a cluster operation most of the
// time, sometimes a restart, a leader kill, or a window in which cluster
// operations run while the controller is down.
func (r *modelRun) step(ctx context.Context, step int) error {
	m, fl := r.m, r.fl
	var desc string
	var err error
	switch x := m.pick(100); {
	case x < 4:
		sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[m.pick(2)]
		fl.stop(sig)
		if m.chance(0.3) {
			fl.ha = !fl.ha
		}
		fl.start()
		desc = fmt.Sprintf("restart the controller (%v; two replicas now %v)", sig, fl.ha)
		m.touched.restarted = true
	case x < 8:
		sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[m.pick(2)]
		fl.stop(sig)
		var done []string
		for range 1 + m.pick(3) {
			if d, err := m.drawOp(clusterOps).run(ctx, m); err != nil {
				return err
			} else if d != "" {
				done = append(done, d)
			}
		}
		fl.start()
		desc = fmt.Sprintf("stop the controller (%v); while it is down: %s; start it", sig, strings.Join(done, "; "))
		m.touched.restarted = true
	case x < 11 && fl.ha:
		l := fl.leader()
		if l == nil {
			return fmt.Errorf("no leader")
		}
		l.stop(syscall.SIGKILL)
		fl.start()
		desc = "kill the leader (SIGKILL) and start a new standby"
		m.touched.restarted = true
	case x < 13 && fl.ccm:
		fl.cloud.stop(syscall.SIGTERM)
		fl.cloud = r.m.e.startCCM(r.t)
		desc = "restart berth-ccm"
		m.touched.restarted = true
	default:
		for desc == "" {
			if desc, err = m.drawOp(clusterOps).run(ctx, m); err != nil {
				return err
			}
		}
	}
	r.log = append(r.log, fmt.Sprintf("%3d. %s", step, desc))
	return fl.waitUp(ctx)
}

// settle waits until two snapshots 300 ms apart are identical.
func (r *modelRun) settle(ctx context.Context) (*snapshot, error) {
	var last *snapshot
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := takeSnapshot(ctx, r.m.e)
		if err != nil {
			return nil, err
		}
		if last != nil && last.key == s.key {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("not quiescent after 20 s")
		}
		last = s
		time.Sleep(300 * time.Millisecond)
	}
}

// checkStep settles, checks the invariants, and gives the controller up to
// 2.5 s after the operation to clear any violation before reporting it.
func (r *modelRun) checkStep(ctx context.Context, step int) bool {
	deadline := time.Now().Add(2500 * time.Millisecond)
	for {
		cur, err := r.settle(ctx)
		if err != nil {
			r.fail(step, err.Error(), nil, cur)
			return false
		}
		vs := r.chk.check(r.prev, cur, r.m.touched)
		if len(vs) == 0 || time.Now().After(deadline) {
			for _, svc := range cur.svcs {
				if c := condition(svc); c != nil && r.chk.servedBy(svc) == servedByController {
					r.seen[c.Reason]++
				}
			}
			r.m.forgetGone(cur)
			r.prev, r.m.touched = cur, newTouches()
			if len(vs) == 0 {
				return true
			}
			r.fail(step, "", vs, cur)
			return false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (r *modelRun) fail(step int, msg string, vs []violation, snap *snapshot) {
	r.t.Helper()
	r.fails++
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, step %d: %s\n", r.seed, step, msg)
	for _, v := range vs {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	// With -model.keep-going, the full story is told once per invariant.
	full := r.fails == 1 || !*modelGoOn
	for _, v := range vs {
		full = full || !r.told[v.inv]
		r.told[v.inv] = true
	}
	if full {
		fmt.Fprintf(&b, "operations so far:\n  %s\n", strings.Join(r.log, "\n  "))
	} else {
		fmt.Fprintf(&b, "last operations:\n  %s\n", strings.Join(r.log[max(0, len(r.log)-6):], "\n  "))
	}
	if full {
		if snap != nil {
			fmt.Fprintf(&b, "state:\n%s", snap.describe())
		}
	}
	fmt.Fprintf(&b, "rerun: go test ./e2e -run 'TestControllerModel' -model.seed=%d -model.steps=%d -v", r.seed, step)
	r.t.Error(b.String())
}

// describe prints every Service and pool of the snapshot.
func (s *snapshot) describe() string {
	var b strings.Builder
	for _, id := range sortedKeys(s.svcs) {
		svc := s.svcs[id]
		class := "-"
		if svc.Spec.LoadBalancerClass != nil {
			class = *svc.Spec.LoadBalancerClass
		}
		var ports []string
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d", proto(p), p.Port))
		}
		fmt.Fprintf(&b, "  %s %s class=%s %v/%v ann=%v lbIP=%q ports=%v etp=%s sel=%v created=%s: %s\n", id, svc.Spec.Type, class,
			ptrString(svc.Spec.IPFamilyPolicy), svc.Spec.IPFamilies, svc.Annotations, svc.Spec.LoadBalancerIP, ports,
			svc.Spec.ExternalTrafficPolicy, svc.Spec.Selector, svc.CreationTimestamp.Format("15:04:05"), statusString(svc))
	}
	for _, name := range sortedKeys(s.pools) {
		p := s.pools[name]
		spec, _ := json.Marshal(p.Spec)
		fmt.Fprintf(&b, "  pool %s deleting=%v spec=%s usage=%q\n", name, p.deleting, spec, p.Status.Usage)
	}
	fmt.Fprintf(&b, "  namespaces %v\n", s.nss)
	return b.String()
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return string(*p)
}
