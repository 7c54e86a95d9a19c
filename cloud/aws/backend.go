package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/berthlb/berth/api/v1alpha1"
	"github.com/berthlb/berth/config"
)

// Backend is the AWS backend. Create it with New; Start gives it the
// Kubernetes client it needs for eip mode.
type Backend struct {
	cfg   Config
	log   logr.Logger
	ec2   EC2
	elb   ELB
	nodes NodeSource

	// mu serialises eip placements: the service controller and the node
	// watcher may both move one Service's Elastic IP.
	mu sync.Mutex
	// annotate writes the speaker's forwarding annotations on Nodes.
	annotate Annotator
	// endpoints tells which nodes run a ready endpoint of a Service, for
	// externalTrafficPolicy Local in eip mode; nil means unknown.
	endpoints EndpointSource
	// stale holds target groups waiting for AWS to let go of them.
	stale ledger[struct{}]
	// madeLBs, madeGroups and madeListeners hold the NLBs, target groups
	// and listeners this process created, which ELB's describes may not
	// show yet.
	madeLBs       madeNLBs
	madeGroups    ledger[struct{}]
	madeListeners ledger[elbtypes.Listener]
	// detached holds groups the NLB's listeners let go of whose tags ELB
	// did not show yet: deleted once they show the Service's.
	detached ledger[struct{}]
	// rulesWritten holds, per NLB security group (as a UID), the rules
	// this process last wrote for it in each group, which EC2's describes
	// may not show yet.
	rulesWritten ledger[[]rule]
	// madeSGs holds the security groups this process created, which
	// EC2's describes may not show yet.
	madeSGs ledger[struct{}]
	// deletedLBs holds the NLBs a Delete removed: the next Delete lists
	// the Service's target groups once more, as ELB may not have shown
	// them (after a restart nothing else remembers them).
	deletedLBs ledger[struct{}]
	// untagged holds, under the empty UID, the Berth-named target groups
	// ELB showed with no tags, with when they were first seen so.
	untagged ledger[struct{}]
	// fresh remembers, under mu, the Elastic IP allocated for a Service
	// until describes see it, so that a retry does not allocate another.
	fresh map[types.UID]freshEIP
	// placed remembers, under mu, the secondary addresses this process
	// assigned for Elastic IPs, which describes may not show yet: they
	// are Berth's, not another agent's (checkEIPNode).
	placed map[privateAddress]bool
	// eips remembers, under mu, each Elastic IP as this process last
	// wrote it, which describes may not show yet (eipView).
	eips map[string]eipNote
	// reporter tells a Service's owner what Berth ignored; nil means
	// logs only.
	reporter Reporter
	// synced are the caches Start began (HasSynced).
	synced []func() bool
}

// Reporter tells a Service's owner which of its aws-load-balancer
// annotations Berth does not implement (none: the report is cleared), as
// a Warning Event and a Service condition.
type Reporter interface {
	Unsupported(ctx context.Context, svc *v1.Service, annotations []string) error
}

// SetReporter sets where unsupported annotations are reported.
func (b *Backend) SetReporter(r Reporter) { b.reporter = r }

// EndpointSource reports the nodes with a ready endpoint of a Service
// (EndpointSlices in production).
type EndpointSource interface {
	NodesWithEndpoints(namespace, name string) (map[string]bool, error)
}

// NodeSource lists the cluster's Nodes (a lister in production).
type NodeSource interface {
	Nodes() ([]*v1.Node, error)
}

// Annotator sets (value non-nil) or removes (nil) one annotation on a
// Node. Removing it from a Node that does not exist is not an error.
type Annotator interface {
	Annotate(ctx context.Context, node, key string, value *string) error
}

// New returns the backend for a validated configuration and its clients.
// nodes and annotate may be nil until Start; eip mode needs them.
func New(cfg Config, ec2c EC2, elbc ELB, log logr.Logger) (*Backend, error) {
	cfg, err := cfg.Defaults()
	if err != nil {
		return nil, err
	}
	return &Backend{cfg: cfg, log: log, ec2: ec2c, elb: elbc}, nil
}

// SetKubernetes gives the backend its view of Nodes and endpoints and the
// means to annotate Nodes (eip mode). endpoints may be nil.
func (b *Backend) SetKubernetes(nodes NodeSource, annotate Annotator, endpoints EndpointSource) {
	b.nodes, b.annotate, b.endpoints = nodes, annotate, endpoints
}

// mode returns the Service's mode, or an error a user can act on.
func (b *Backend) mode(svc *v1.Service) (string, error) {
	m, ok := svc.Annotations[v1alpha1.AnnotationAWSMode]
	if !ok {
		return b.cfg.DefaultMode, nil
	}
	switch m = strings.TrimSpace(m); m {
	case ModeNLB, ModeEIP:
		return m, nil
	}
	return "", fmt.Errorf("annotation %s=%q: want %q or %q", v1alpha1.AnnotationAWSMode, m, ModeNLB, ModeEIP)
}

// Get reports what exists for the Service in either mode. The service
// controller calls Delete only when Get reports something, so a Service
// whose NLB is gone but whose target groups or security group are not
// yet (AWS still holding a group, a Delete that failed half-way) exists,
// with an empty status, until Delete has removed them.
func (b *Backend) Get(ctx context.Context, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	lb, err := b.nlbOf(ctx, svc)
	if err != nil && !errors.As(err, new(*ConflictError)) {
		return nil, false, err
	}
	// An NLB of the Service's name that is not Berth's is no NLB of the
	// Service's: what Berth made for it is looked for below, so that a
	// deleted Service's finalizer does not wait for the other NLB.
	if err != nil {
		lb = nil
	}
	if lb != nil {
		return hostnameStatus(lb), true, nil
	}
	b.mu.Lock()
	addrs, err := b.findEIPs(ctx, svc)
	b.mu.Unlock()
	if err != nil {
		return nil, false, err
	}
	if len(addrs) > 0 {
		return ipStatus(preferred(svc, addrs)), true, nil
	}
	left, err := b.nlbLeftovers(ctx, svc)
	if err != nil || !left {
		return nil, false, err
	}
	return &v1.LoadBalancerStatus{}, true, nil
}

// Ensure creates or repairs the Service's load balancer in its mode, and
// removes what the other mode left (after a change of annotation).
func (b *Backend) Ensure(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	mode, r, err := b.request(ctx, svc)
	if err != nil {
		return nil, err
	}
	if err := b.dropOtherMode(ctx, svc, mode); err != nil {
		return nil, err
	}
	if mode == ModeNLB {
		return b.ensureNLB(ctx, svc, nodes, r)
	}
	return b.ensureEIP(ctx, svc, nodes)
}

// request reads the Service's mode and annotations, reports the
// annotations Berth does not implement, and refuses what the operator
// does not allow. A Service the AWS Load Balancer Controller serves gets
// cloudprovider.ImplementedElsewhere, unwrapped, as the service
// controller compares it by identity.
func (b *Backend) request(ctx context.Context, svc *v1.Service) (string, request, error) {
	r, err := parseRequest(svc, b.cfg.NLB)
	if errors.As(err, new(implementedElsewhere)) {
		return "", r, cloudprovider.ImplementedElsewhere
	}
	if err != nil {
		return "", r, err
	}
	if b.reporter != nil {
		if err := b.reporter.Unsupported(ctx, svc, r.Unsupported); err != nil {
			b.log.Error(err, "Report unsupported annotations", "service", config.Key(svc))
		}
	}
	mode, err := b.mode(svc)
	if err != nil {
		return "", r, err
	}
	if mode == ModeEIP && r.Scheme == schemeInternal {
		return "", r, fmt.Errorf("eip mode gives a public address and this Service is internal (by annotation or aws.nlb.scheme); use nlb mode")
	}
	return mode, r, nil
}

// dropOtherMode removes what the other mode made for the Service, after a
// change of its annotation. It costs one lookup when there is nothing to
// remove, as on almost every call; target groups orphaned without an NLB
// are left to Delete's full sweep.
func (b *Backend) dropOtherMode(ctx context.Context, svc *v1.Service, mode string) error {
	if mode == ModeNLB {
		addrs, err := b.findEIPs(ctx, svc)
		if err == nil && len(addrs) > 0 {
			err = b.deleteEIP(ctx, svc)
		}
		if err != nil {
			return fmt.Errorf("remove the Service's Elastic IP before switching to nlb: %w", err)
		}
		return nil
	}
	lb, err := b.nlbOf(ctx, svc)
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return nil // not Berth's: nothing of ours to remove
	}
	switch {
	case err == nil && lb != nil:
		err = b.deleteNLB(ctx, svc)
	case err == nil:
		err = b.removeStale(ctx, svc, nil) // groups AWS held on the last call
	}
	if err != nil {
		return fmt.Errorf("remove the Service's NLB before switching to eip: %w", err)
	}
	return nil
}

// Update follows a change of the node set: NLB targets, or the node an
// Elastic IP is mapped to.
func (b *Backend) Update(ctx context.Context, svc *v1.Service, nodes []*v1.Node) error {
	mode, r, err := b.request(ctx, svc)
	if err != nil {
		return err
	}
	if mode == ModeNLB {
		return b.updateTargets(ctx, svc, nodes, r)
	}
	_, err = b.ensureEIP(ctx, svc, nodes)
	return err
}

// Delete removes every resource Berth made or took for the Service, in
// both modes; nothing found is not an error.
func (b *Backend) Delete(ctx context.Context, svc *v1.Service) error {
	return errors.Join(b.deleteNLB(ctx, svc), b.deleteEIP(ctx, svc))
}

// apiCode returns the AWS error code of err, or "".
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Logger returns the backend's logger.
func (b *Backend) Logger() logr.Logger { return b.log }
