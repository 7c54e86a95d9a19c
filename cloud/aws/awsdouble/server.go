package awsdouble

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
)

const (
	ec2Version   = "2016-11-15"
	ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"
	elbVersion   = "2015-12-01"
	elbNamespace = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

	// AccountID is the AWS account that owns everything the double holds; it
	// appears in ARNs and owner fields.
	AccountID = "123456789012"
)

// Server is a running test double of the EC2 and ELBv2 APIs. Create it with
// New or Start. All methods are safe for concurrent use.
type Server struct {
	httpServer *httptest.Server
	region     string

	mu                 sync.Mutex
	seq                uint64
	addressLimit       int
	privateIPLimit     int
	provisionDescribes int
	drainDescribes     int
	inUseDeletes       int
	addressDelay       int
	sgDelay            int
	elbDelay           int
	tagDelay           int
	ec2ChangeDelay     int
	calls              map[string]int
	requests           []url.Values // every request's parameters (Mentions)
	faults             map[string]fault

	subnets   map[string]*Subnet
	instances map[string]*Instance
	enis      map[string]*NetworkInterface
	addresses map[string]*Address // by allocation ID
	pools     map[string]netip.Prefix
	lbs       map[string]*LoadBalancer // by ARN
	pending   map[string]int           // LB ARN -> describes left until active
	tgs       map[string]*TargetGroup
	listeners map[string]*Listener
	sgs       map[string]*SecurityGroup
	// routeTables are the VPCs' route tables; zoneTypes the zones that
	// are not plain availability zones.
	routeTables map[string]*RouteTable
	zoneTypes   map[string]string
	// inUse counts, per target group a listener has forwarded to, the
	// DeleteTargetGroup calls still refused after it is detached.
	inUse map[string]int
	// unseen counts, per new Elastic IP, security group, load balancer,
	// target group or listener, the calls that do not see it yet.
	unseen map[string]int
	// staleTags holds, per ELB resource whose tags changed, the tags
	// DescribeTags still shows and for how many more calls.
	staleTags map[string]staleTags
	// staleSGs and staleAddresses hold, per security group whose rules
	// changed and per Elastic IP whose association or tags changed, what
	// describes still show (SetEC2ChangeVisibilityDelay).
	staleSGs       map[string]staleView[*SecurityGroup]
	staleAddresses map[string]staleView[*Address]
	// policies are the IAM policies of access keys (SetPolicy).
	policies map[string]*Policy
	// noELBRole: the account lacks ELB's service-linked role.
	noELBRole bool
}

type fault struct {
	code string
	n    int
}

// Option configures a Server in New or Start.
type Option func(*Server)

// WithRegion sets the region that appears in ARNs and DNS names (default
// "eu-west-1"). The double does not check the region clients sign for.
func WithRegion(region string) Option {
	return func(s *Server) { s.region = region }
}

// New starts a Server on a loopback port. The caller must Close it.
func New(opts ...Option) *Server {
	s := &Server{
		region:             "eu-west-1",
		addressLimit:       5,
		privateIPLimit:     10,
		provisionDescribes: 1,
		calls:              map[string]int{},
		faults:             map[string]fault{},
		subnets:            map[string]*Subnet{},
		instances:          map[string]*Instance{},
		enis:               map[string]*NetworkInterface{},
		addresses:          map[string]*Address{},
		pools:              map[string]netip.Prefix{},
		lbs:                map[string]*LoadBalancer{},
		pending:            map[string]int{},
		tgs:                map[string]*TargetGroup{},
		listeners:          map[string]*Listener{},
		sgs:                map[string]*SecurityGroup{},
		routeTables:        map[string]*RouteTable{},
		zoneTypes:          map[string]string{},
		inUse:              map[string]int{},
		unseen:             map[string]int{},
		staleTags:          map[string]staleTags{},
		staleSGs:           map[string]staleView[*SecurityGroup]{},
		staleAddresses:     map[string]staleView[*Address]{},
	}
	for _, o := range opts {
		o(s)
	}
	s.httpServer = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Start is New for tests: the Server is closed when t's test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

// Close stops the HTTP server. The state stays readable with Snapshot.
func (s *Server) Close() { s.httpServer.Close() }

// EC2Endpoint is the base endpoint to give an EC2 client.
func (s *Server) EC2Endpoint() string { return s.httpServer.URL + "/ec2/" }

// ELBv2Endpoint is the base endpoint to give an ELBv2 client.
func (s *Server) ELBv2Endpoint() string { return s.httpServer.URL + "/elbv2/" }

// Region is the region that appears in ARNs and DNS names.
func (s *Server) Region() string { return s.region }

// SetAddressLimit sets how many Elastic IP allocations may exist at once
// (default 5); AllocateAddress beyond it fails with AddressLimitExceeded.
func (s *Server) SetAddressLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addressLimit = n
}

// SetPrivateIPLimit sets how many private IPv4 addresses, the primary
// included, one network interface may have (default 10);
// AssignPrivateIpAddresses beyond it fails with PrivateIpAddressLimitExceeded.
func (s *Server) SetPrivateIPLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.privateIPLimit = n
}

// SetProvisioningDescribes sets for load balancers created afterwards how
// many DescribeLoadBalancers responses that include one it takes until it is
// "active": with the default 1 the CreateLoadBalancer response says
// "provisioning" and the first describe says "active"; 0 makes new load
// balancers active at once.
func (s *Server) SetProvisioningDescribes(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.provisionDescribes = n
}

// SetDrainingDescribes sets how many DescribeTargetHealth responses list a
// deregistered target as "draining" (Target.DeregistrationInProgress)
// before it is gone, as AWS does for the deregistration delay. Default 0:
// gone at once. A draining target registered again is registered.
func (s *Server) SetDrainingDescribes(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drainDescribes = n
}

// SetInUseAfterDetach sets how many DeleteTargetGroup calls fail with
// ResourceInUse after the last listener forwarding to a group stopped
// (AWS needs a while to let go of it). Default 0.
func (s *Server) SetInUseAfterDetach(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inUseDeletes = n
}

// SetELBVisibilityDelay makes each load balancer, target group and
// listener created afterwards invisible to the next n
// DescribeLoadBalancers, DescribeTargetGroups or DescribeListeners calls
// that would show it (by name or ARN: LoadBalancerNotFound,
// TargetGroupNotFound or ListenerNotFound; in a listing: left out), as
// ELB's eventual consistency can right after a create. Default 0.
func (s *Server) SetELBVisibilityDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.elbDelay = n
}

// SetELBTagVisibilityDelay makes the tags given to a load balancer, target
// group or listener afterwards (at its creation or by AddTags) missing
// from the next n DescribeTags calls that name it: they show the tags it
// had before (none, for a new resource). Default 0.
func (s *Server) SetELBTagVisibilityDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tagDelay = n
}

// HideELBTags makes DescribeTags show no tags for the resource arn for
// the next n calls that name it, as ELB does for a resource created a
// moment ago (SetELBTagVisibilityDelay for every new resource).
func (s *Server) HideELBTags(arn string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staleTags[arn] = staleTags{n: n}
}

// SetAddressVisibilityDelay makes each Elastic IP allocated afterwards
// invisible to the next n DescribeAddresses calls, and unknown
// (InvalidAllocationID.NotFound) to the calls that name it until then, as
// EC2's eventual consistency can. Default 0.
func (s *Server) SetAddressVisibilityDelay(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addressDelay = n
}

// FailNext makes the next n calls of action (for example "AllocateAddress")
// fail with the error code code instead of running. RequestLimitExceeded and
// ServiceUnavailable get HTTP 503 and InternalError 500, as AWS sends them,
// every other code 400 (ELBv2 sends Throttling with 400). A later call for
// the same action replaces the earlier one.
func (s *Server) FailNext(action, code string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[action] = fault{code: code, n: n}
}

// Calls is how many requests for action the Server received, failed ones
// included. EC2 and ELBv2 action names share one count.
func (s *Server) Calls(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[action]
}

// Mentions is how many requests the Server received with a parameter
// value containing sub (a resource name, a tag value such as a Service's
// namespace/name), failed ones included.
func (s *Server) Mentions(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, form := range s.requests {
		if mentions(form, sub) {
			n++
		}
	}
	return n
}

func mentions(form url.Values, sub string) bool {
	for _, vs := range form {
		for _, v := range vs {
			if strings.Contains(v, sub) {
				return true
			}
		}
	}
	return false
}

// handler runs one operation with s.mu held and returns the elements of its
// response (EC2: after requestId; ELBv2: inside the XResult element).
type handler func(p params) ([]*node, error)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	api, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if api != "ec2" && api != "elbv2" {
		http.NotFound(w, r)
		return
	}
	isEC2 := api == "ec2"
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	action := r.Form.Get("Action")

	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[action]++
	s.requests = append(s.requests, r.Form)
	requestID := fmt.Sprintf("d0ub1e00-0000-4000-8000-%012x", s.nextID())
	body, err := s.handle(isEC2, action, r)
	if err != nil {
		writeError(w, isEC2, requestID, err)
		return
	}
	root := el(action+"Response", el(action+"Result", body...),
		el("ResponseMetadata", tx("RequestId", requestID)))
	ns := elbNamespace
	if isEC2 {
		root = el(action+"Response", append([]*node{tx("requestId", requestID)}, body...)...)
		ns = ec2Namespace
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write([]byte(render(root, ns)))
}

func (s *Server) handle(isEC2 bool, action string, r *http.Request) ([]*node, error) {
	if r.Header.Get("Authorization") == "" {
		return nil, &apiError{status: http.StatusForbidden, code: "MissingAuthenticationToken",
			message: "Request is missing Authentication Token"}
	}
	if f := s.faults[action]; f.n > 0 {
		f.n--
		s.faults[action] = f
		return nil, &apiError{status: faultStatus(f.code), code: f.code, message: "injected by awsdouble.FailNext"}
	}
	version, badParameter, h := elbVersion, "ValidationError", s.elbv2Handler(action)
	if isEC2 {
		version, badParameter, h = ec2Version, "InvalidParameterValue", s.ec2Handler(action)
	}
	if h == nil {
		return nil, fail("InvalidAction", "The action %q is not valid for this web service "+
			"(awsdouble implements only the operations Berth uses)", action)
	}
	if v := r.Form.Get("Version"); v != version {
		return nil, fail(badParameter, "unsupported API version %q, want %s", v, version)
	}
	if err := s.authorize(isEC2, action, r, params(r.Form)); err != nil {
		return nil, err
	}
	return h(params(r.Form))
}

func faultStatus(code string) int {
	switch code {
	case "RequestLimitExceeded", "ServiceUnavailable", "Unavailable":
		return http.StatusServiceUnavailable
	case "InternalError", "InternalFailure":
		return http.StatusInternalServerError
	}
	return http.StatusBadRequest
}

// apiError is an AWS error response.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// fail returns a client error (HTTP 400) with an AWS error code.
func fail(code, format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, code: code, message: fmt.Sprintf(format, args...)}
}

func writeError(w http.ResponseWriter, isEC2 bool, requestID string, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, code: "InternalError", message: err.Error()}
	}
	var doc string
	if isEC2 {
		doc = render(el("Response", el("Errors", el("Error", tx("Code", e.code), tx("Message", e.message))),
			tx("RequestID", requestID)), "")
	} else {
		kind := "Sender"
		if e.status >= 500 {
			kind = "Receiver"
		}
		doc = render(el("ErrorResponse", el("Error", tx("Type", kind), tx("Code", e.code), tx("Message", e.message)),
			tx("RequestId", requestID)), elbNamespace)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write([]byte(doc))
}

// nextID returns a new number for IDs; s.mu must be held.
func (s *Server) nextID() uint64 {
	s.seq++
	return s.seq
}

// ec2ID returns a new EC2-style ID such as "eipalloc-0000000000000000a".
func (s *Server) ec2ID(prefix string) string {
	return fmt.Sprintf("%s-%017x", prefix, s.nextID())
}

// elbARN returns a new ELBv2 ARN for resource, e.g. "targetgroup/name".
func (s *Server) elbARN(resource string) (arn, hexID string) {
	hexID = fmt.Sprintf("%016x", 0xbe47000000000000|s.nextID())
	return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:%s/%s", s.region, AccountID, resource, hexID), hexID
}
