package doctor

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// requiredCRDs are the CRDs Berth cannot work without.
var requiredCRDs = []string{"berthbgpadvertisements.berth.dev", "berthbgppeers.berth.dev", "berthippools.berth.dev", "berthl2advertisements.berth.dev"}

// Check runs every check on s, in the order an operator would look.
func Check(s *Snapshot) []Finding {
	var out []Finding
	for _, c := range []func(*Snapshot) []Finding{
		checkCRDs, checkController, checkSpeakers, checkMemberlist, checkPools, checkServices, checkKubeProxy, checkSourceRanges,
	} {
		out = append(out, c(s)...)
	}
	return out
}

func (s *Snapshot) hasCRDs() bool {
	for _, n := range requiredCRDs {
		if !slices.Contains(s.CRDs, n) {
			return false
		}
	}
	return true
}

func checkCRDs(s *Snapshot) []Finding {
	var missing []string
	for _, n := range requiredCRDs {
		if !slices.Contains(s.CRDs, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return []Finding{{Check: "CRDs", Severity: OK, Summary: fmt.Sprintf("all %d installed", len(requiredCRDs))}}
	}
	return []Finding{{Check: "CRDs", Severity: Fail,
		Summary: "missing " + strings.Join(missing, ", ") + "; the checks of pools and advertisements are skipped",
		Fix:     "install them first: kubectl apply --server-side -k manifests/crds (the chart installs them too; docs/install.md)"}}
}

func checkController(s *Snapshot) []Finding {
	const check = "controller"
	ns := s.Names.Namespace
	l := s.Lease
	switch {
	case l != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "":
		holder := *l.Spec.HolderIdentity
		if l.Spec.RenewTime != nil && l.Spec.LeaseDurationSeconds != nil {
			expiry := l.Spec.RenewTime.Add(secondsDuration(*l.Spec.LeaseDurationSeconds))
			if s.Now.After(expiry) {
				return []Finding{{Check: check, Severity: Fail,
					Summary: fmt.Sprintf("the leader Lease %s/%s expired: its holder %s stopped renewing it and no replica took over", ns, l.Name, holder),
					Fix:     fmt.Sprintf("kubectl -n %s get pods -l app.kubernetes.io/component=controller; kubectl -n %s logs deploy/%s", ns, ns, s.Names.Controller)}}
			}
		}
		return []Finding{{Check: check, Severity: OK, Summary: "leader " + holder}}
	case s.Controller != nil && s.Controller.Status.ReadyReplicas > 0:
		return []Finding{{Check: check, Severity: Warn,
			Summary: fmt.Sprintf("Deployment %s/%s is ready but holds no leader Lease %s: it runs without --leader-elect, so two replicas would both write", ns, s.Names.Controller, s.Names.Lease),
			Fix:     "run one replica, or pass --leader-elect=true (the chart does)"}}
	case s.Controller != nil:
		return []Finding{{Check: check, Severity: Fail,
			Summary: fmt.Sprintf("Deployment %s/%s has no ready replica and no replica leads: no Service gets an address", ns, s.Names.Controller),
			Fix:     fmt.Sprintf("kubectl -n %s describe deploy/%s; kubectl -n %s logs deploy/%s", ns, s.Names.Controller, ns, s.Names.Controller)}}
	}
	return []Finding{{Check: check, Severity: Fail,
		Summary: fmt.Sprintf("no Deployment %s/%s and no leader Lease: no Service gets an address from a BerthIPPool", ns, s.Names.Controller),
		Fix:     "install Berth (helm install berth charts/berth -n " + ns + "), or pass --namespace if it lives elsewhere"}}
}

func checkSpeakers(s *Snapshot) []Finding {
	const check = "speakers"
	ds := s.Speaker
	if ds == nil {
		return []Finding{{Check: check, Severity: Warn,
			Summary: fmt.Sprintf("no DaemonSet %s/%s: no node announces or forwards load-balancer addresses (expected only with berth-ccm's aws backend)", s.Names.Namespace, s.Names.Speaker),
			Fix:     "install the speakers (the chart's speaker.enabled, or kubectl apply -k manifests/speaker)"}}
	}
	ready := map[string]bool{}
	notReady := map[string]string{}
	for _, p := range s.SpeakerPods {
		if p.Spec.NodeName == "" {
			continue
		}
		if podReady(&p) {
			ready[p.Spec.NodeName] = true
		} else {
			notReady[p.Spec.NodeName] = p.Name + " " + podProblem(&p)
		}
	}
	var eligible, missing []string
	for _, n := range s.Nodes {
		if !eligibleNode(ds, &n) {
			continue
		}
		eligible = append(eligible, n.Name)
		if ready[n.Name] {
			continue
		}
		if why, ok := notReady[n.Name]; ok {
			missing = append(missing, fmt.Sprintf("%s (pod %s)", n.Name, why))
		} else {
			missing = append(missing, n.Name+" (no speaker pod)")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		ns := s.Names.Namespace
		return []Finding{{Check: check, Severity: Fail,
			Summary: fmt.Sprintf("%d of %d eligible nodes have no ready speaker: %s", len(missing), len(eligible), strings.Join(missing, ", ")),
			Fix: fmt.Sprintf("kubectl -n %s describe ds/%s and the pods above; a speaker's /readyz (port 9631) says what it waits for\n"+
				"until then those nodes announce nothing and layer-2 ownership moves to the others", ns, ds.Name)}}
	}
	if len(eligible) == 0 {
		return []Finding{{Check: check, Severity: Fail, Summary: "no node is eligible for the speaker DaemonSet (its nodeSelector and tolerations match none)",
			Fix: "label nodes to match the DaemonSet's nodeSelector, or change it"}}
	}
	return []Finding{{Check: check, Severity: OK, Summary: fmt.Sprintf("ready on all %d eligible nodes", len(eligible))}}
}

func checkMemberlist(s *Snapshot) []Finding {
	const check = "memberlist key"
	if s.Speaker == nil {
		return nil
	}
	name := speakerArg(s.Speaker, "memberlist-secret", "berth-memberlist")
	switch {
	case name == "":
		return []Finding{{Check: check, Severity: OK, Summary: "not needed: the speakers run with --l2=false"}}
	case len(s.BerthL2Advertisements) == 0:
		return []Finding{{Check: check, Severity: OK, Summary: "not needed yet: no BerthL2Advertisement"}}
	}
	ns := s.Names.Namespace
	create := fmt.Sprintf("kubectl -n %s create secret generic %s --from-literal=secretkey=\"$(head -c 24 /dev/urandom | base64)\"", ns, name)
	if s.MemberlistSecret == nil {
		return []Finding{{Check: check, Severity: Fail,
			Summary: fmt.Sprintf("Secret %s/%s is missing: the speakers cannot form the layer-2 membership, so no node answers ARP/NDP", ns, name),
			Fix:     create}}
	}
	key := s.MemberlistSecret.Data["secretkey"]
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return []Finding{{Check: check, Severity: Fail,
			Summary: fmt.Sprintf("Secret %s/%s has a key \"secretkey\" of %d bytes; it must have 16, 24 or 32", ns, name, n),
			Fix:     "kubectl -n " + ns + " delete secret " + name + "; " + create}}
	}
	return []Finding{{Check: check, Severity: OK, Summary: fmt.Sprintf("Secret %s/%s present", ns, name)}}
}

// speakerArg returns the value of --name on the speaker container, def
// if not given, and "" for memberlist-secret when layer 2 is off.
func speakerArg(ds *appsv1.DaemonSet, name, def string) string {
	val := def
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
				val = v
			}
			if a == "--l2=false" && name == "memberlist-secret" {
				return ""
			}
		}
	}
	return val
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podProblem says why a pod is not ready, as kubectl get pods would.
func podProblem(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return "is " + w.Reason
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Message != "" {
			return "not ready: " + c.Message
		}
	}
	return "is " + strings.ToLower(string(p.Status.Phase)) + ", not ready"
}

// eligibleNode reports whether ds's pods may run on n: its nodeSelector
// matches and it tolerates n's NoSchedule and NoExecute taints (the
// node.kubernetes.io/ ones the DaemonSet controller tolerates itself
// aside).
func eligibleNode(ds *appsv1.DaemonSet, n *corev1.Node) bool {
	spec := ds.Spec.Template.Spec
	for k, v := range spec.NodeSelector {
		if n.Labels[k] != v {
			return false
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectPreferNoSchedule || strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			continue
		}
		if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(logr.Discard(), &t, false) }) {
			return false
		}
	}
	return true
}

// handled reports whether Berth's controller handles svc, as far as the
// doctor can tell: its class, or no class and Berth's condition on it.
func (s *Snapshot) handled(svc *corev1.Service) bool {
	if c := svc.Spec.LoadBalancerClass; c != nil {
		return *c == s.Names.LoadBalancerClass
	}
	return allocatedCondition(svc) != nil
}

func secondsDuration(s int32) time.Duration { return time.Duration(s) * time.Second }
