// Package aws is berth-ccm's AWS backend: it gives LoadBalancer Services
// either a Network Load Balancer ("nlb" mode) or an Elastic IP mapped to a
// secondary private address of an eligible node ("eip" mode), through the
// aws-sdk-go-v2 EC2 and ELBv2 clients.
//
// It honours the upstream AWS provider's aws-load-balancer annotations
// within the operator's policy (allowed schemes and subnets), and reports
// the ones it does not implement as a Warning Event and a Service
// condition. Each NLB gets a security group of its own (AWS allows one
// only at creation) enforcing loadBalancerSourceRanges.
//
// Ownership is never in doubt: every resource Berth creates carries the
// tags berth.dev/cluster and berth.dev/service-uid (and the upstream
// provider's), and nothing without them is modified or deleted; the one
// exception is an NLB the upstream provider made for the same Service,
// which is adopted. A resource that has Berth's name but not its tags is
// reported as a conflict and left alone. Only running instances tagged
// for the cluster become targets or hold Elastic IPs. An Elastic IP taken
// from the operator's list is only tagged while in use and is returned to
// the list, never released, when the Service goes.
//
// Each call is level-triggered: it reads what exists (by name and tags),
// creates what is missing, fixes what differs and removes what is stale,
// so a call that failed half-way is resumed by the next one. Throttling
// (RequestLimitExceeded, Throttling) is retried by the SDK's standard
// retryer with a larger attempt budget; any other error is returned and
// the service controller retries with its own backoff.
//
// The package implements the cloud package's Backend interface without
// importing it. It must not mutate the Services and Nodes it is handed; in
// eip mode it patches Node annotations (forward.berth.dev/<address>) so the
// speaker on the chosen node forwards the private address to the NodePort.
package aws
