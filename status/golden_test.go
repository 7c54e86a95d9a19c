package status_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/berthlb/berth/api/v1alpha1"
	berthac "github.com/berthlb/berth/client/applyconfiguration/api/v1alpha1"
	"github.com/berthlb/berth/client/clientset/versioned"
	"github.com/berthlb/berth/e2e/controlplane"
	"github.com/berthlb/berth/status"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// t0 is when the test's Events happened; the reports are made two
// minutes later.
var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// TestGolden writes a cluster's state into a real API server as Berth's
// components write it (Services' status and conditions, the speakers'
// BerthNodeStatuses, Events) and checks `berth status`'s reports, the
// table and one Service in detail, against testdata/*.golden.
func TestGolden(t *testing.T) {
	cp := controlplane.StartForTest(t, controlplane.Options{})
	kube := kubernetes.NewForConfigOrDie(cp.RESTConfig())
	berth := versioned.NewForConfigOrDie(cp.RESTConfig())
	seedCluster(t, kube, berth)
	dropServerEvents(t, kube, "demo")
	c := status.Clients{Kube: kube, Berth: berth}
	for _, tc := range []struct {
		golden string
		opts   status.Options
	}{
		{"table.golden", status.Options{Namespace: "demo"}},
		{"web.golden", status.Options{Namespace: "demo", Target: "svc/web", Events: 10}},
		{"withheld.golden", status.Options{Namespace: "demo", Target: "service/api", Events: 10}},
		{"lonely.golden", status.Options{Namespace: "demo", Target: "lonely", Events: 10}},
		{"pending.golden", status.Options{Namespace: "demo", Target: "svc/pending", Events: 1}},
		{"pools.golden", status.Options{View: status.ViewPools}},
		{"peers.golden", status.Options{View: status.ViewPeers}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			tc.opts.Now = t0.Add(2 * time.Minute)
			var out bytes.Buffer
			if err := status.Report(t.Context(), c, tc.opts, &out); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("report differs from %s (-want +got):\n%s", path, diff)
			}
		})
	}
	if err := status.Report(t.Context(), c, status.Options{Namespace: "demo", Target: "deploy/web"}, &bytes.Buffer{}); err == nil {
		t.Errorf("deploy/web: no error, want one asking for svc/NAME")
	}
}

// seedCluster writes: pool main (advertised over BGP to r1 and r1-v6 and
// on layer 2) and pool lonely (advertised nowhere); node1 announcing over
// BGP with its IPv4 session up and its IPv6 session down, node2 owning an
// address on layer 2 and withholding another whose forwarding failed; and
// the Services web, api, l2, lonely and pending.
func seedCluster(t *testing.T, kube kubernetes.Interface, berth versioned.Interface) {
	t.Helper()
	ctx := t.Context()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	b := berth.BerthV1alpha1()
	must(kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}, metav1.CreateOptions{}))
	// The pools' status as the controller writes it: exact counts per
	// family (big's 2^80 IPv6 addresses too), holders, Ready.
	counts := func(total, used, free string) *v1alpha1.AddressCounts {
		return &v1alpha1.AddressCounts{Total: total, Used: used, Free: free}
	}
	ready := metav1.Condition{Type: v1alpha1.PoolConditionReady, Status: metav1.ConditionTrue, Reason: "Valid", LastTransitionTime: metav1.NewTime(t0)}
	for _, p := range []struct {
		name   string
		ranges []v1alpha1.AddressRange
		status v1alpha1.BerthIPPoolStatus
	}{
		{"main", []v1alpha1.AddressRange{"198.51.100.0/24", "2001:db8:1::/120"}, v1alpha1.BerthIPPoolStatus{
			IPv4: counts("256", "4", "252"), IPv6: counts("256", "1", "255"), HolderCount: 4, Conditions: []metav1.Condition{ready}}},
		{"lonely", []v1alpha1.AddressRange{"203.0.113.0/28"}, v1alpha1.BerthIPPoolStatus{
			IPv4: counts("16", "16", "0"), HolderCount: 1, Conditions: []metav1.Condition{ready}}},
		{"big", []v1alpha1.AddressRange{"2001:db8:ff::/48"}, v1alpha1.BerthIPPoolStatus{
			IPv6: counts("1208925819614629174706176", "3", "1208925819614629174706173"), HolderCount: 3, Conditions: []metav1.Condition{ready}}},
		{"new", []v1alpha1.AddressRange{"192.0.2.128/25"}, v1alpha1.BerthIPPoolStatus{}},
	} {
		created, err := b.BerthIPPools().Create(ctx, &v1alpha1.BerthIPPool{ObjectMeta: metav1.ObjectMeta{Name: p.name}, Spec: v1alpha1.BerthIPPoolSpec{Addresses: p.ranges}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status = p.status
		must(b.BerthIPPools().UpdateStatus(ctx, created, metav1.UpdateOptions{}))
	}
	for name, addr := range map[string]string{"r1": "192.0.2.1", "r1-v6": "2001:db8::1"} {
		must(b.BerthBGPPeers().Create(ctx, &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BerthBGPPeerSpec{Address: addr, ASN: 64512, LocalASN: 64513}}, metav1.CreateOptions{}))
	}
	// leaf: an interface peer that no node has a session with.
	must(b.BerthBGPPeers().Create(ctx, &v1alpha1.BerthBGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "leaf"},
		Spec: v1alpha1.BerthBGPPeerSpec{Interface: "eth1", ASN: 64520, LocalASN: 64513}}, metav1.CreateOptions{}))
	sel := v1alpha1.AdvertisementSelector{IPPools: []string{"main"}}
	must(b.BerthBGPAdvertisements().Create(ctx, &v1alpha1.BerthBGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "main"},
		Spec: v1alpha1.BerthBGPAdvertisementSpec{AdvertisementSelector: sel}}, metav1.CreateOptions{}))
	must(b.BerthL2Advertisements().Create(ctx, &v1alpha1.BerthL2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "main"},
		Spec: v1alpha1.BerthL2AdvertisementSpec{AdvertisementSelector: sel}}, metav1.CreateOptions{}))

	since := metav1.NewTime(t0.Add(-time.Hour))
	node1 := berthac.BerthNodeStatusStatus().WithEligible(true).WithForwarding(true).
		WithSessionsEstablished(1).WithSessionsTotal(2).WithBGPAddresses(3).
		WithBGP("198.51.100.10-198.51.100.11", "2001:db8:1::10").
		WithSessions(
			berthac.BerthBGPSession().WithPeer("r1").WithState("Established").WithEstablishedSince(since).WithPrefixesSent(2),
			berthac.BerthBGPSession().WithPeer("r1-v6").WithState("Active").WithLastError("dial tcp [2001:db8::1]:179: connection refused"))
	node2 := berthac.BerthNodeStatusStatus().WithEligible(true).WithForwarding(true).
		WithSessionsEstablished(1).WithSessionsTotal(1).WithBGPAddresses(1).WithL2Addresses(1).WithWithheldAddresses(1).
		WithBGP("198.51.100.10").WithL2("198.51.100.20").
		WithSessions(berthac.BerthBGPSession().WithPeer("r1").WithState("Established").WithEstablishedSince(since).WithPrefixesSent(1).
			WithConditions(metav1ac.Condition().WithType(v1alpha1.PeerConditionConfigured).WithStatus(metav1.ConditionFalse).
				WithReason("PasswordUnreadable").WithMessage("Secret bgp/r1: not found").WithLastTransitionTime(metav1.NewTime(t0)))).
		WithWithheld(berthac.BerthWithheldAddress().WithAddress("198.51.100.11").WithServices("demo/api").
			WithReason("sync forwarding: writing nftables table: operation not permitted"))
	for name, st := range map[string]*berthac.BerthNodeStatusStatusApplyConfiguration{"node1": node1, "node2": node2} {
		n, err := controlplane.CreateNode(ctx, kube, name)
		if err != nil {
			t.Fatal(err)
		}
		must(b.BerthNodeStatuses().Apply(ctx, berthac.BerthNodeStatus(name).WithStatus(st).WithOwnerReferences(
			metav1ac.OwnerReference().WithAPIVersion("v1").WithKind("Node").WithName(name).WithUID(n.UID)),
			metav1.ApplyOptions{FieldManager: "berth-speaker", Force: true}))
	}

	allocated := metav1.Condition{Type: v1alpha1.ServiceConditionAddressAllocated, Status: metav1.ConditionTrue, Reason: "Allocated",
		Message: "addresses allocated from the pools", LastTransitionTime: metav1.NewTime(t0)}
	services := []struct {
		name  string
		addrs []string
		cond  metav1.Condition
		local bool
	}{
		{"web", []string{"198.51.100.10", "2001:db8:1::10"}, allocated, false},
		{"api", []string{"198.51.100.11"}, allocated, false},
		{"l2", []string{"198.51.100.20"}, allocated, false},
		{"local", []string{"198.51.100.30"}, allocated, true},
		{"lonely", []string{"203.0.113.5"}, allocated, false},
		{"pending", nil, metav1.Condition{Type: v1alpha1.ServiceConditionAddressAllocated, Status: metav1.ConditionFalse, Reason: "NoPool",
			Message: "no BerthIPPool admits the Service", LastTransitionTime: metav1.NewTime(t0)}, false},
	}
	for _, s := range services {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: s.name}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		if s.local {
			svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}
		created, err := kube.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range s.addrs {
			created.Status.LoadBalancer.Ingress = append(created.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: a})
		}
		created.Status.Conditions = []metav1.Condition{s.cond}
		must(kube.CoreV1().Services("demo").UpdateStatus(ctx, created, metav1.UpdateOptions{}))
		seedEvents(t, kube, created)
	}
}

// seededLabel marks the Events seedEvents writes.
const seededLabel = "golden-seed"

// dropServerEvents deletes the Events in namespace that the test did not
// write, until none has come for half a second: the API server's own
// (a Warning ClusterIPNotAllocated when its IP repair runs while the test
// creates Services) would otherwise show in the reports now and then.
func dropServerEvents(t *testing.T, kube kubernetes.Interface, namespace string) {
	t.Helper()
	quiet := time.Now()
	for time.Since(quiet) < 500*time.Millisecond {
		list, err := kube.CoreV1().Events(namespace).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list.Items {
			if e.Labels[seededLabel] == "" {
				t.Logf("deleting the API server's Event %s: %s %s", e.Name, e.Reason, e.Message)
				if err := kube.CoreV1().Events(namespace).Delete(t.Context(), e.Name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				quiet = time.Now()
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the Event list
	}
}

// seedEvents writes the Events Berth's components would have written on
// svc, and one on another object of the same name that must not show.
func seedEvents(t *testing.T, kube kubernetes.Interface, svc *corev1.Service) {
	t.Helper()
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Service", Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID}
	events := []corev1.Event{
		{Reason: "AddressAllocated", Type: corev1.EventTypeNormal, Message: "allocated " + svc.Name + "'s addresses",
			Source: corev1.EventSource{Component: "berth-controller"}, LastTimestamp: metav1.NewTime(t0)},
	}
	if svc.Name == "pending" {
		events[0].Reason, events[0].Type, events[0].Message = "AllocationFailed", corev1.EventTypeWarning, "no BerthIPPool admits the Service"
	}
	if svc.Name == "api" {
		events = append(events, corev1.Event{Reason: "ForwardingFailed", Type: corev1.EventTypeWarning,
			Message: "node node2 withdrew 198.51.100.11: its forwarding is not in place: operation not permitted",
			Source:  corev1.EventSource{Component: "berth-speaker", Host: "node2"}, LastTimestamp: metav1.NewTime(t0.Add(time.Minute))})
	}
	if svc.Name == "web" {
		stale := ref
		stale.UID = "an-earlier-web"
		events = append(events, corev1.Event{InvolvedObject: stale, Reason: "AddressReleased", Type: corev1.EventTypeNormal,
			Message: "an earlier Service of this name", LastTimestamp: metav1.NewTime(t0)})
	}
	for i, e := range events {
		e.ObjectMeta = metav1.ObjectMeta{Namespace: svc.Namespace, GenerateName: svc.Name + "-", Labels: map[string]string{seededLabel: "true"}}
		if e.InvolvedObject.UID == "" {
			e.InvolvedObject = ref
		}
		e.FirstTimestamp, e.Count = e.LastTimestamp, int32(i+1)
		if _, err := kube.CoreV1().Events(svc.Namespace).Create(t.Context(), &e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
