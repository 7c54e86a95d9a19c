package awsdouble

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// SetPolicy makes every later request signed with accessKeyID subject to the
// IAM policy doc: a call the policy does not allow fails as AWS fails it
// (EC2: UnauthorizedOperation; ELBv2: AccessDenied; both HTTP 403) and
// changes nothing. Requests signed with other access keys stay unrestricted,
// so tests can play the operator or another controller beside the policy's
// holder. Which authorizations each operation needs (its resources, its
// condition keys aws:RequestTag/*, aws:ResourceTag/*, ec2:ResourceTag/*,
// ec2:CreateAction, elasticloadbalancing:CreateAction, iam:AWSServiceName,
// and tag-on-create needing the tagging action too) is written from the
// Service Authorization Reference; see authorizations.
func (s *Server) SetPolicy(accessKeyID string, doc []byte) error {
	p, err := ParsePolicy(doc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.policies == nil {
		s.policies = map[string]*Policy{}
	}
	s.policies[accessKeyID] = p
	return nil
}

// SetServiceLinkedRole says whether the account has the
// AWSServiceRoleForElasticLoadBalancing role (default true). Without it the
// first CreateLoadBalancer also needs iam:CreateServiceLinkedRole, as on a
// fresh AWS account, and creates the role when it succeeds.
func (s *Server) SetServiceLinkedRole(exists bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noELBRole = !exists
}

var credentialRE = regexp.MustCompile(`Credential=([^/,\s]+)/`)

// authorize checks a request against its signer's policy; s.mu is held.
func (s *Server) authorize(isEC2 bool, action string, r *http.Request, p params) error {
	m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return nil
	}
	policy := s.policies[m[1]]
	if policy == nil {
		return nil
	}
	reqs := s.authorizations(isEC2, action, p)
	denied := policy.decision(reqs)
	if denied == nil {
		if isEC2 || action != "CreateLoadBalancer" {
			return nil
		}
		s.noELBRole = false // the role is made on the first allowed create
		return nil
	}
	msg := fmt.Sprintf("User: arn:aws:iam::%s:user/%s is not authorized to perform: %s on resource: %s "+
		"because no identity-based policy allows the %s action", AccountID, m[1], denied.action, denied.resource, denied.action)
	if isEC2 {
		return &apiError{status: http.StatusForbidden, code: "UnauthorizedOperation",
			message: "You are not authorized to perform this operation. " + msg}
	}
	return &apiError{status: http.StatusForbidden, code: "AccessDenied", message: msg}
}

// authorizations lists what one call needs; s.mu is held. Resources that
// do not exist are named by their ID with no tags: the handler then fails
// with NotFound, as AWS does once authorization passed.
func (s *Server) authorizations(isEC2 bool, action string, p params) []authzRequest {
	if isEC2 {
		return s.ec2Authorizations(action, p)
	}
	return s.elbAuthorizations(action, p)
}

func (s *Server) ec2ARN(kind, id string) string {
	return fmt.Sprintf("arn:aws:ec2:%s:%s:%s/%s", s.region, AccountID, kind, id)
}

// tagContext returns condition keys for tags: prefix is "aws:RequestTag/" or
// "aws:ResourceTag/" (EC2 also reads ec2:ResourceTag/).
func tagContext(ctx map[string]string, prefix string, tags map[string]string) map[string]string {
	if ctx == nil {
		ctx = map[string]string{}
	}
	for k, v := range tags {
		ctx[prefix+k] = v
		if prefix == "aws:ResourceTag/" {
			ctx["ec2:ResourceTag/"+k] = v
		}
	}
	return ctx
}

func (s *Server) ec2Authorizations(action string, p params) []authzRequest {
	act := "ec2:" + action
	one := func(kind, id string, tags map[string]string) authzRequest {
		return authzRequest{action: act, resource: s.ec2ARN(kind, id), context: tagContext(nil, "aws:ResourceTag/", tags)}
	}
	created := func(kind string, tags map[string]string) []authzRequest {
		out := []authzRequest{{action: act, resource: s.ec2ARN(kind, "*"), context: tagContext(nil, "aws:RequestTag/", tags)}}
		if len(tags) > 0 {
			ctx := tagContext(map[string]string{"ec2:CreateAction": action}, "aws:RequestTag/", tags)
			out = append(out, authzRequest{action: "ec2:CreateTags", resource: s.ec2ARN(kind, "*"), context: ctx})
		}
		return out
	}
	switch action {
	case "AssignPrivateIpAddresses", "UnassignPrivateIpAddresses":
		return []authzRequest{one("network-interface", p.str("NetworkInterfaceId"), nil)}
	case "AllocateAddress":
		tags, _ := s.specTags(p, "elastic-ip")
		out := created("elastic-ip", tags)
		if pool := p.str("PublicIpv4Pool"); pool != "" && pool != "amazon" {
			out = append(out, authzRequest{action: act, resource: s.ec2ARN("ipv4pool-ec2", pool)})
		}
		return out
	case "AssociateAddress":
		out := []authzRequest{s.addressAuthz(act, p.str("AllocationId"))}
		if id := p.str("NetworkInterfaceId"); id != "" {
			out = append(out, one("network-interface", id, nil))
		}
		if id := p.str("InstanceId"); id != "" {
			var tags map[string]string
			if inst := s.instances[id]; inst != nil {
				tags = inst.Tags
			}
			out = append(out, one("instance", id, tags))
		}
		return out
	case "DisassociateAddress":
		for _, a := range s.addresses {
			if a.AssociationID != "" && a.AssociationID == p.str("AssociationId") {
				return []authzRequest{s.addressAuthz(act, a.AllocationID)}
			}
		}
		return []authzRequest{one("elastic-ip", "*", nil)}
	case "ReleaseAddress":
		return []authzRequest{s.addressAuthz(act, p.str("AllocationId"))}
	case "CreateTags", "DeleteTags":
		var out []authzRequest
		newTags, _ := p.tags("Tag")
		for _, id := range p.list("ResourceId") {
			kind, tags := s.ec2Resource(id)
			r := one(kind, id, tags)
			if action == "CreateTags" {
				r.context = tagContext(r.context, "aws:RequestTag/", newTags)
			}
			out = append(out, r)
		}
		return out
	case "CreateSecurityGroup":
		tags, _ := s.specTags(p, "security-group")
		return append(created("security-group", tags), one("vpc", p.str("VpcId"), nil))
	case "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress", "DeleteSecurityGroup":
		var tags map[string]string
		if sg := s.sgs[p.str("GroupId")]; sg != nil {
			tags = sg.Tags
		}
		return []authzRequest{one("security-group", p.str("GroupId"), tags)}
	}
	// Describe actions have no resource-level permissions.
	return []authzRequest{{action: act, resource: "*"}}
}

func (s *Server) addressAuthz(act, allocationID string) authzRequest {
	var tags map[string]string
	if a := s.addresses[allocationID]; a != nil {
		tags = a.Tags
	}
	return authzRequest{action: act, resource: s.ec2ARN("elastic-ip", allocationID),
		context: tagContext(nil, "aws:ResourceTag/", tags)}
}

// ec2Resource returns the ARN resource type and the tags of an EC2 ID.
func (s *Server) ec2Resource(id string) (string, map[string]string) {
	prefix, _, _ := strings.Cut(id, "-")
	switch prefix {
	case "eipalloc":
		if a := s.addresses[id]; a != nil {
			return "elastic-ip", a.Tags
		}
		return "elastic-ip", nil
	case "sg":
		if sg := s.sgs[id]; sg != nil {
			return "security-group", sg.Tags
		}
		return "security-group", nil
	case "i":
		if inst := s.instances[id]; inst != nil {
			return "instance", inst.Tags
		}
		return "instance", nil
	case "subnet":
		if sn := s.subnets[id]; sn != nil {
			return "subnet", sn.Tags
		}
		return "subnet", nil
	case "eni":
		return "network-interface", nil
	}
	return prefix, nil
}

func (s *Server) elbAuthorizations(action string, p params) []authzRequest {
	act := "elasticloadbalancing:" + action
	arnOf := func(resource string) string {
		return fmt.Sprintf("arn:aws:elasticloadbalancing:%s:%s:%s", s.region, AccountID, resource)
	}
	existing := func(arn string) authzRequest {
		tags, _ := s.elbTags(arn)
		return authzRequest{action: act, resource: arn, context: tagContext(nil, "aws:ResourceTag/", tags)}
	}
	created := func(arn string) []authzRequest {
		tags, _ := p.tags("Tags.member")
		out := []authzRequest{{action: act, resource: arn, context: tagContext(nil, "aws:RequestTag/", tags)}}
		if len(tags) > 0 {
			ctx := tagContext(map[string]string{"elasticloadbalancing:CreateAction": action}, "aws:RequestTag/", tags)
			out = append(out, authzRequest{action: "elasticloadbalancing:AddTags", resource: arn, context: ctx})
		}
		return out
	}
	switch action {
	case "CreateLoadBalancer":
		out := created(arnOf("loadbalancer/net/" + p.str("Name") + "/*"))
		if s.noELBRole {
			out = append(out, authzRequest{action: "iam:CreateServiceLinkedRole",
				resource: fmt.Sprintf("arn:aws:iam::%s:role/aws-service-role/elasticloadbalancing.amazonaws.com/"+
					"AWSServiceRoleForElasticLoadBalancing", AccountID),
				context: map[string]string{"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}})
		}
		return out
	case "CreateTargetGroup":
		return created(arnOf("targetgroup/" + p.str("Name") + "/*"))
	case "CreateListener":
		lbARN := p.str("LoadBalancerArn")
		name, id := "*", "*"
		if lb := s.lbs[lbARN]; lb != nil {
			name, id = lb.Name, lbARN[strings.LastIndex(lbARN, "/")+1:]
		}
		return created(arnOf("listener/net/" + name + "/" + id + "/*"))
	case "DeleteLoadBalancer", "SetSecurityGroups", "ModifyLoadBalancerAttributes":
		return []authzRequest{existing(p.str("LoadBalancerArn"))}
	case "ModifyTargetGroup", "DeleteTargetGroup", "RegisterTargets", "DeregisterTargets", "ModifyTargetGroupAttributes":
		return []authzRequest{existing(p.str("TargetGroupArn"))}
	case "ModifyListener", "DeleteListener":
		return []authzRequest{existing(p.str("ListenerArn"))}
	case "AddTags", "RemoveTags":
		var out []authzRequest
		newTags, _ := p.tags("Tags.member")
		for _, arn := range p.list("ResourceArns.member") {
			r := existing(arn)
			if action == "AddTags" {
				r.context = tagContext(r.context, "aws:RequestTag/", newTags)
			}
			out = append(out, r)
		}
		return out
	}
	return []authzRequest{{action: act, resource: "*"}}
}
