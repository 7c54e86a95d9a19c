package aws

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/aws/smithy-go"
	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"

	"github.com/berthlb/berth/api/v1alpha1"
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
	// synced are the caches Start began (HasSynced).
	synced []func() bool
}

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

// Get reports what exists for the Service in either mode.
func (b *Backend) Get(ctx context.Context, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	lb, err := b.findLB(ctx, svc)
	if err != nil {
		return nil, false, err
	}
	if lb != nil {
		return hostnameStatus(lb), true, nil
	}
	addrs, err := b.findEIPs(ctx, svc)
	if err != nil || len(addrs) == 0 {
		return nil, false, err
	}
	return ipStatus(addrs[0]), true, nil
}

// Ensure creates or repairs the Service's load balancer in its mode, and
// removes what the other mode left (after a change of annotation).
func (b *Backend) Ensure(ctx context.Context, svc *v1.Service, nodes []*v1.Node) (*v1.LoadBalancerStatus, error) {
	mode, err := b.mode(svc)
	if err != nil {
		return nil, err
	}
	if err := b.dropOtherMode(ctx, svc, mode); err != nil {
		return nil, err
	}
	if mode == ModeNLB {
		return b.ensureNLB(ctx, svc, nodes)
	}
	return b.ensureEIP(ctx, svc, nodes)
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
	lb, err := b.findLB(ctx, svc)
	var conflict *ConflictError
	if errors.As(err, &conflict) {
		return nil // not Berth's: nothing of ours to remove
	}
	if err == nil && lb != nil {
		err = b.deleteNLB(ctx, svc)
	}
	if err != nil {
		return fmt.Errorf("remove the Service's NLB before switching to eip: %w", err)
	}
	return nil
}

// Update follows a change of the node set: NLB targets, or the node an
// Elastic IP is mapped to.
func (b *Backend) Update(ctx context.Context, svc *v1.Service, nodes []*v1.Node) error {
	mode, err := b.mode(svc)
	if err != nil {
		return err
	}
	if mode == ModeNLB {
		return b.updateTargets(ctx, svc, nodes)
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
