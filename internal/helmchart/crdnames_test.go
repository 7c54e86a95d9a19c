package helmchart

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// foreignNames are the kinds, plurals, singulars and short names that other
// projects found next to a load balancer serve, lower-cased: kubectl
// resolves a bare name or short name to whichever group it meets first, so
// a Berth CRD sharing one of them makes `kubectl get NAME` show someone
// else's objects (issue 16).
var foreignNames = map[string][]string{
	// Calico (crd.projectcalico.org, projectcalico.org/v3).
	"Calico": {
		"ippool", "ippools", "bgppeer", "bgppeers", "bgpconfiguration", "bgpconfigurations",
		"bgpfilter", "bgpfilters", "ipreservation", "ipreservations", "ipamblock", "ipamblocks",
		"ipamconfig", "ipamconfigs", "ipamconfiguration", "ipamconfigurations", "ipamhandle", "ipamhandles",
		"blockaffinity", "blockaffinities", "caliconodestatus", "caliconodestatuses",
		"clusterinformation", "clusterinformations", "felixconfiguration", "felixconfigurations",
		"kubecontrollersconfiguration", "kubecontrollersconfigurations",
		"globalnetworkpolicy", "globalnetworkpolicies", "globalnetworkset", "globalnetworksets",
		"networkset", "networksets", "hostendpoint", "hostendpoints", "tier", "tiers",
		"stagednetworkpolicy", "stagednetworkpolicies", "stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies",
		"stagedkubernetesnetworkpolicy", "stagedkubernetesnetworkpolicies",
	},
	// Cilium (cilium.io): LB-IPAM, BGP control plane v1 and v2, L2
	// announcements, and the kinds every Cilium cluster has.
	"Cilium": {
		"ciliumloadbalancerippool", "ciliumloadbalancerippools", "ippool", "ippools", "lbippool", "lbippools",
		"ciliumbgppeeringpolicy", "ciliumbgppeeringpolicies", "bgpp",
		"ciliumbgpclusterconfig", "ciliumbgpclusterconfigs", "cbgpcluster",
		"ciliumbgppeerconfig", "ciliumbgppeerconfigs", "cbgppeer",
		"ciliumbgpadvertisement", "ciliumbgpadvertisements", "cbgpadvert",
		"ciliumbgpnodeconfig", "ciliumbgpnodeconfigs", "cbgpnode",
		"ciliumbgpnodeconfigoverride", "ciliumbgpnodeconfigoverrides", "cbgpnodeoverride",
		"ciliuml2announcementpolicy", "ciliuml2announcementpolicies", "l2announcement",
		"ciliumpodippool", "ciliumpodippools", "cpip",
		"ciliumnetworkpolicy", "ciliumnetworkpolicies", "cnp", "ciliumnp",
		"ciliumclusterwidenetworkpolicy", "ciliumclusterwidenetworkpolicies", "ccnp",
		"ciliumendpoint", "ciliumendpoints", "cep", "ciliumep",
		"ciliumnode", "ciliumnodes", "cn", "ciliumn",
		"ciliumidentity", "ciliumidentities", "ciliumid",
		"ciliumegressgatewaypolicy", "ciliumegressgatewaypolicies", "cegp",
		"ciliumlocalredirectpolicy", "ciliumlocalredirectpolicies", "clrp",
		"ciliumenvoyconfig", "ciliumenvoyconfigs", "cec",
		"ciliumclusterwideenvoyconfig", "ciliumclusterwideenvoyconfigs", "ccec",
		"ciliumcidrgroup", "ciliumcidrgroups", "ccg",
		"ciliumendpointslice", "ciliumendpointslices", "ces",
		"ciliumnodeconfig", "ciliumnodeconfigs",
	},
	// MetalLB (metallb.io).
	"MetalLB": {
		"ipaddresspool", "ipaddresspools", "bgppeer", "bgppeers",
		"bgpadvertisement", "bgpadvertisements", "l2advertisement", "l2advertisements",
		"community", "communities", "bfdprofile", "bfdprofiles",
		"servicel2status", "servicel2statuses", "servicebgpstatus", "servicebgpstatuses",
		"configurationstate", "configurationstates",
	},
	// kube-vip serves no CRD of its own: its cloud provider reads the
	// ConfigMap kubevip and Service annotations. Its name is kept out all
	// the same.
	"kube-vip": {"kubevip", "kubevips"},
	// Kubernetes itself, with the Gateway API, and the names kubectl
	// reserves.
	"Kubernetes": {
		"all", "service", "services", "svc", "node", "nodes", "no", "namespace", "namespaces", "ns",
		"pod", "pods", "po", "endpoints", "ep", "endpointslice", "endpointslices",
		"configmap", "configmaps", "cm", "secret", "secrets", "serviceaccount", "serviceaccounts", "sa",
		"event", "events", "ev", "lease", "leases",
		"ingress", "ingresses", "ing", "ingressclass", "ingressclasses",
		"networkpolicy", "networkpolicies", "netpol", "servicecidr", "servicecidrs",
		"ipaddress", "ipaddresses",
		"gateway", "gateways", "gtw", "gatewayclass", "gatewayclasses", "gc",
		"httproute", "httproutes", "grpcroute", "grpcroutes", "tcproute", "tcproutes", "udproute", "udproutes",
		"deployment", "deployments", "deploy", "daemonset", "daemonsets", "ds",
		"replicaset", "replicasets", "rs", "statefulset", "statefulsets", "sts",
		"job", "jobs", "cronjob", "cronjobs", "cj",
		"customresourcedefinition", "customresourcedefinitions", "crd", "crds",
		"persistentvolume", "persistentvolumes", "pv", "persistentvolumeclaim", "persistentvolumeclaims", "pvc",
		"storageclass", "storageclasses", "sc", "priorityclass", "priorityclasses", "pc",
		"poddisruptionbudget", "poddisruptionbudgets", "pdb",
		"horizontalpodautoscaler", "horizontalpodautoscalers", "hpa",
		"limitrange", "limitranges", "limits", "resourcequota", "resourcequotas", "quota",
		"replicationcontroller", "replicationcontrollers", "rc",
		"componentstatus", "componentstatuses", "cs",
		"certificatesigningrequest", "certificatesigningrequests", "csr",
		"role", "roles", "clusterrole", "clusterroles", "rolebinding", "rolebindings",
		"clusterrolebinding", "clusterrolebindings",
	},
}

// TestCRDNamesAreOwn checks that no name of a Berth CRD (kind, plural,
// singular, short name) is one that Calico, Cilium, MetalLB, kube-vip or
// Kubernetes serves, that no two Berth CRDs share a name, and that each is
// in the category berth (`kubectl get berth` lists them all).
func TestCRDNamesAreOwn(t *testing.T) {
	ch, _ := loadChart(t)
	crds := CRDs(ch)
	if len(crds) == 0 {
		t.Fatal("the chart has no CRDs")
	}
	owner := map[string][]string{} // name -> who serves it
	for project, names := range foreignNames {
		for _, n := range names {
			owner[n] = append(owner[n], project)
		}
	}
	for _, m := range crds {
		t.Run(m.Template, func(t *testing.T) {
			n := crdNames(t, m)
			names := append([]string{strings.ToLower(n.Kind), n.Plural, n.Singular}, n.ShortNames...)
			slices.Sort(names)
			names = slices.Compact(names)
			for _, name := range names {
				if name == "" {
					continue
				}
				if who, ok := owner[name]; ok {
					slices.Sort(who)
					t.Errorf("%s: %q is also served by %s", n.Kind, name, strings.Join(who, ", "))
					continue
				}
				owner[name] = []string{"Berth's " + n.Kind}
			}
			if !slices.Contains(n.Categories, "berth") {
				t.Errorf("%s: categories %v, want berth among them", n.Kind, n.Categories)
			}
		})
	}
}

func crdNames(t *testing.T, m Manifest) apiextensionsv1.CustomResourceDefinitionNames {
	t.Helper()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict([]byte(m.Content), &crd); err != nil {
		t.Fatalf("%s: %v", m.Template, err)
	}
	return crd.Spec.Names
}

// kindRow is a row of the table of kinds in docs/install.md:
// | Kind | `plural` | `short name` |.
var kindRow = regexp.MustCompile("(?m)^\\| (Berth\\w+) \\| `([a-z0-9]+)` \\| `([a-z0-9]+)` \\|$")

// TestCRDNamesDocumented checks that the table of kinds, plurals and short
// names in docs/install.md is the chart's CRDs'.
func TestCRDNamesDocumented(t *testing.T) {
	ch, _ := loadChart(t)
	var want []string
	for _, m := range CRDs(ch) {
		n := crdNames(t, m)
		want = append(want, n.Kind+" "+n.Plural+" "+strings.Join(n.ShortNames, ","))
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range kindRow.FindAllStringSubmatch(string(doc), -1) {
		got = append(got, row[1]+" "+row[2]+" "+row[3])
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("docs/install.md lists the kinds\n%s\nthe CRDs are\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
