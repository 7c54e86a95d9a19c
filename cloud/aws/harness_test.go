package aws_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elb "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cloud-provider/api"
	"k8s.io/klog/v2/ktesting"

	"github.com/berthlb/berth/cloud/aws"
	"github.com/berthlb/berth/cloud/aws/awsdouble"
)

// lab is the backend under test, talking through the real SDK clients to
// the wire-level test double, with a fake Kubernetes for Node annotations.
type lab struct {
	t   *testing.T
	srv *awsdouble.Server
	b   *aws.Backend
	// ec2 and elb are unrestricted clients for the test's own calls;
	// berthEC2 and berthELB are the backend's, under the IAM policy.
	ec2      *ec2.Client
	elb      *elb.Client
	berthEC2 *ec2.Client
	berthELB *elb.Client
	kube     *fakeNodes
	ctx      context.Context
	cfg      aws.Config
}

func newLab(t *testing.T, mut ...func(*aws.Config)) *lab {
	t.Helper()
	srv := awsdouble.Start(t)
	// As AWS: deregistered targets drain for a while, and a target group
	// is still in use for a while after its listener let go of it.
	srv.SetDrainingDescribes(2)
	srv.SetInUseAfterDetach(1)
	// As ELB and EC2 can, new NLBs, target groups, listeners, ELB tags,
	// Elastic IPs and security groups, and changes to security group
	// rules, Elastic IP associations and EC2 tags, are shown late: for
	// the next 1 to 3 describes, chosen per test and per API from a seed
	// that is logged.
	srv.SetSeededVisibilityDelays(t)
	cfg := aws.Config{ClusterName: "prod", MaxAttempts: 4}
	for _, m := range mut {
		m(&cfg)
	}
	// The backend signs as "AKIDBERTH", bound to the IAM policies of
	// docs/cloud.md; the test itself, playing the operator or another
	// controller, signs as "AKIDTEST", which is unrestricted.
	ec2c, elbc := clients(srv, "AKIDBERTH", cfg.MaxAttempts)
	adminEC2, adminELB := clients(srv, "AKIDTEST", cfg.MaxAttempts)
	setDocPolicy(t, srv, cfg)
	_, ctx := ktesting.NewTestContext(t)
	b, err := aws.New(cfg, ec2c, elbc, ktesting.NewLogger(t, ktesting.NewConfig()))
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{t: t, srv: srv, b: b, ec2: adminEC2, elb: adminELB, berthEC2: ec2c, berthELB: elbc, kube: &fakeNodes{nodes: map[string]*v1.Node{}}, ctx: ctx, cfg: cfg}
	b.SetKubernetes(l.kube, l.kube, l.kube)
	// Two public subnets in two zones (dual-stack), one internal (IPv4
	// only), one of another cluster.
	srv.AddSubnet("subnet-a", "vpc-1", "eu-west-1a", "198.18.0.0/24", map[string]string{"kubernetes.io/cluster/prod": "owned", "kubernetes.io/role/elb": "1"})
	srv.AddSubnet("subnet-b", "vpc-1", "eu-west-1b", "198.18.1.0/24", map[string]string{"kubernetes.io/cluster/prod": "shared", "kubernetes.io/role/elb": "1"})
	srv.AddSubnet("subnet-i", "vpc-1", "eu-west-1a", "198.18.2.0/24", map[string]string{"kubernetes.io/cluster/prod": "owned", "kubernetes.io/role/internal-elb": "1"})
	srv.SetSubnetIPv6("subnet-a", "2001:db8:0:1::/64")
	srv.SetSubnetIPv6("subnet-b", "2001:db8:0:2::/64")
	srv.AddSubnet("subnet-x", "vpc-1", "eu-west-1c", "198.18.3.0/24", map[string]string{"kubernetes.io/cluster/other": "owned", "kubernetes.io/role/elb": "1"})
	// The public subnets route to an internet gateway; the internal one
	// uses the VPC's main table (local only).
	srv.AddRouteTable("vpc-1", "igw-1", "subnet-a", "subnet-b", "subnet-x")
	return l
}

// restart replaces the backend with a new one, as a restarted berth-ccm:
// same clients and cluster, nothing remembered.
func (l *lab) restart() {
	l.t.Helper()
	b, err := aws.New(l.cfg, l.berthEC2, l.berthELB, ktesting.NewLogger(l.t, ktesting.NewConfig()))
	if err != nil {
		l.t.Fatal(err)
	}
	b.SetKubernetes(l.kube, l.kube, l.kube)
	l.b = b
}

// clients returns SDK clients of the double signing with accessKey.
func clients(srv *awsdouble.Server, accessKey string, attempts int) (*ec2.Client, *elb.Client) {
	awsCfg := sdk.Config{
		Region:      srv.Region(),
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, "SECRET", ""),
	}
	ec2c := ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		o.BaseEndpoint = sdk.String(srv.EC2Endpoint())
		o.RetryMaxAttempts = attempts
	})
	elbc := elb.NewFromConfig(awsCfg, func(o *elb.Options) {
		o.BaseEndpoint = sdk.String(srv.ELBv2Endpoint())
		o.RetryMaxAttempts = attempts
	})
	return ec2c, elbc
}

// addNode makes an instance and a Ready Node for it.
func (l *lab) addNode(name, instance, privateIP string) *v1.Node {
	l.srv.AddInstance(instance, "subnet-a", privateIP)
	l.srv.TagInstance(instance, map[string]string{"kubernetes.io/cluster/prod": "owned"})
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + instance},
		Status:     v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}}},
	}
	l.kube.put(n)
	return n
}

func service(name, uid string, mut ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uid)},
		Spec: v1.ServiceSpec{
			Type:       v1.ServiceTypeLoadBalancer,
			IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports: []v1.ServicePort{
				{Name: "http", Protocol: v1.ProtocolTCP, Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53, NodePort: 30053},
			},
		},
	}
	for _, m := range mut {
		m(s)
	}
	return s
}

func annotate(k, v string) func(*v1.Service) {
	return func(s *v1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}

// fakeNodes is the backend's view of Nodes and its Node annotator: a map
// of Nodes whose annotations the backend's patches change.
type fakeNodes struct {
	mu      sync.Mutex
	nodes   map[string]*v1.Node
	patches int
	// ready maps namespace/name to the nodes with a ready endpoint.
	ready map[string]map[string]bool
}

func (f *fakeNodes) setEndpoints(svc string, nodes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ready == nil {
		f.ready = map[string]map[string]bool{}
	}
	f.ready[svc] = map[string]bool{}
	for _, n := range nodes {
		f.ready[svc][n] = true
	}
}

func (f *fakeNodes) NodesWithEndpoints(namespace, name string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.ready[namespace+"/"+name]), nil
}

func (f *fakeNodes) put(n *v1.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = n.DeepCopy()
}

func (f *fakeNodes) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, name)
}

func (f *fakeNodes) update(name string, mut func(*v1.Node)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mut(f.nodes[name])
}

func (f *fakeNodes) Nodes() ([]*v1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*v1.Node
	for _, n := range f.nodes {
		out = append(out, n.DeepCopy())
	}
	return out, nil
}

func (f *fakeNodes) list() []*v1.Node { out, _ := f.Nodes(); return out }

func (f *fakeNodes) Annotate(_ context.Context, node, key string, value *string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.patches++
	n, ok := f.nodes[node]
	if !ok {
		return nil
	}
	if value == nil {
		delete(n.Annotations, key)
		return nil
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[key] = *value
	return nil
}

// annotations returns every node's forwarding annotations.
func (f *fakeNodes) annotations() map[string]map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]map[string]string{}
	for name, n := range f.nodes {
		if len(n.Annotations) > 0 {
			out[name] = maps.Clone(n.Annotations)
		}
	}
	return out
}

// retry calls f again while it asks for a retry (AWS still holding a
// deleted target group, an NLB provisioning, a resource or its tags not
// shown yet), at most 20 times: adopting an upstream NLB, group and
// listener all made a moment before, each shown 3 describes late, takes
// 14.
func (l *lab) retry(f func() error) error {
	l.t.Helper()
	var err error
	for range 20 {
		if err = f(); !errors.As(err, new(*api.RetryError)) {
			return err
		}
	}
	return err
}

// delete deletes the Service's resources, as the service controller does:
// Delete only while Get reports something, again while AWS holds on to
// something.
func (l *lab) delete(svc *v1.Service) error {
	return l.retry(func() error {
		if _, exists, err := l.b.Get(l.ctx, svc); err != nil || !exists {
			return err
		}
		return l.b.Delete(l.ctx, svc)
	})
}

// ensure calls Ensure as the service controller does: again while it asks
// for a retry (EC2 not showing a new Elastic IP yet, an NLB provisioning).
func (l *lab) ensure(svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	var st *v1.LoadBalancerStatus
	err := l.retry(func() error {
		var err error
		st, err = l.b.Ensure(l.ctx, svc, nodes)
		return err
	})
	return st, err
}

// update calls Update again while it asks for a retry.
func (l *lab) update(svc *v1.Service, nodes []*v1.Node) error {
	return l.retry(func() error { return l.b.Update(l.ctx, svc, nodes) })
}
