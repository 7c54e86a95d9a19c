package aws

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cloud-provider/api"

	"github.com/berthlb/berth/config"
)

// freshEIP is an Elastic IP allocated for a Service that describes may
// not show yet.
type freshEIP struct {
	id   string
	when time.Time
}

// freshFor bounds how long an allocation no describe shows is waited for
// before Berth concludes it is gone.
const freshFor = 2 * time.Minute

// visibilityRetry is how soon a call is retried when EC2 does not yet
// know an Elastic IP it just allocated.
const visibilityRetry = 2 * time.Second

// serviceEIP returns the Service's Elastic IP: one it has, chosen the same
// way every time, or a newly acquired one. Extra addresses (a retry that
// did not yet see the first allocation) are given back. An allocation
// that describes do not show yet is waited for with a retry, never
// duplicated. Call with b.mu held.
func (b *Backend) serviceEIP(ctx context.Context, svc *v1.Service) (ec2types.Address, error) {
	addrs, err := b.findEIPs(ctx, svc)
	if err != nil {
		return ec2types.Address{}, err
	}
	if len(addrs) > 0 {
		delete(b.fresh, svc.UID)
		keep := preferred(svc, addrs)
		for _, a := range addrs {
			if sdk.ToString(a.AllocationId) != sdk.ToString(keep.AllocationId) {
				b.log.Info("Giving back an extra Elastic IP of the Service", "service", config.Key(svc), "address", sdk.ToString(a.PublicIp))
				if err := b.giveBack(ctx, svc, a); err != nil {
					return ec2types.Address{}, err
				}
			}
		}
		return keep, nil
	}
	if f, ok := b.fresh[svc.UID]; ok && time.Since(f.when) < freshFor {
		return ec2types.Address{}, api.NewRetryError(fmt.Sprintf("Elastic IP %s is allocated but EC2 does not show it yet", f.id), visibilityRetry)
	}
	addr, err := b.acquireEIP(ctx, svc)
	if err != nil {
		return ec2types.Address{}, err
	}
	if b.fresh == nil {
		b.fresh = map[types.UID]freshEIP{}
	}
	b.fresh[svc.UID] = freshEIP{id: sdk.ToString(addr.AllocationId), when: time.Now()}
	return addr, nil
}

// preferred picks the Service's address among several: the one in its
// status, else an associated one, else the lowest allocation ID, so that
// the choice never depends on the order EC2 lists them in.
func preferred(svc *v1.Service, addrs []ec2types.Address) ec2types.Address {
	rank := func(a ec2types.Address) int {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" && in.IP == sdk.ToString(a.PublicIp) {
				return 0
			}
		}
		if a.AssociationId != nil {
			return 1
		}
		return 2
	}
	return slices.MinFunc(addrs, func(x, y ec2types.Address) int {
		return cmp.Or(cmp.Compare(rank(x), rank(y)), strings.Compare(sdk.ToString(x.AllocationId), sdk.ToString(y.AllocationId)))
	})
}

// notYetVisible turns EC2's not-found answer about an Elastic IP it just
// allocated into a retry.
func notYetVisible(err error) error {
	if apiCode(err) == "InvalidAllocationID.NotFound" {
		return api.NewRetryError("EC2 does not know the new Elastic IP yet: "+err.Error(), visibilityRetry)
	}
	return err
}
