package awsdouble

import (
	"strings"
	"testing"
)

func TestParsePolicyRefusesWhatItDoesNotUnderstand(t *testing.T) {
	for name, doc := range map[string]string{
		"version":     `{"Version": "2008-10-17", "Statement": []}`,
		"NotAction":   `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "NotAction": "ec2:*", "Resource": "*"}]}`,
		"operator":    `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*", "Condition": {"ArnLike": {"aws:SourceArn": "x"}}}]}`,
		"ForAnyValue": `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*", "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": "x"}}}]}`,
		"effect":      `{"Version": "2012-10-17", "Statement": [{"Effect": "allow", "Action": "ec2:*", "Resource": "*"}]}`,
		"no resource": `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ec2:*"}]}`,
		"no prefix":   `{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "CreateTags", "Resource": "*"}]}`,
		"top level":   `{"Version": "2012-10-17", "Id": "x", "Statement": []}`,
	} {
		if _, err := ParsePolicy([]byte(doc)); err == nil {
			t.Errorf("%s: parsed; want an error", name)
		}
	}
}

func TestPolicyDecision(t *testing.T) {
	const doc = `{"Version": "2012-10-17", "Statement": [
	  {"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"},
	  {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "arn:aws:ec2:*:*:elastic-ip/*",
	    "Condition": {"StringEquals": {"ec2:CreateAction": "AllocateAddress"}}},
	  {"Effect": "Allow", "Action": "ec2:DeleteTags", "Resource": "*",
	    "Condition": {"StringLike": {"aws:ResourceTag/team": ["a*", "b?"]}}},
	  {"Effect": "Allow", "Action": "ec2:ReleaseAddress", "Resource": "*",
	    "Condition": {"StringNotEquals": {"aws:ResourceTag/keep": "true"}}},
	  {"Effect": "Allow", "Action": "ec2:AssociateAddress", "Resource": "*",
	    "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/env": "prod"}}},
	  {"Effect": "Allow", "Action": "ec2:AllocateAddress", "Resource": "*",
	    "Condition": {"Null": {"aws:RequestTag/owner": "false"}}},
	  {"Effect": "Allow", "Action": "ec2:*", "Resource": "arn:aws:ec2:*:*:vpc/*"},
	  {"Effect": "Deny", "Action": "ec2:*", "Resource": "arn:aws:ec2:*:*:vpc/vpc-locked"}
	]}`
	p, err := ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	eip := "arn:aws:ec2:eu-west-1:1:elastic-ip/eipalloc-1"
	cases := []struct {
		name  string
		req   authzRequest
		allow bool
	}{
		{"wildcard action, any case", authzRequest{action: "EC2:describeSubnets", resource: "*"}, true},
		{"no statement", authzRequest{action: "ec2:RunInstances", resource: "*"}, false},
		{"condition met", authzRequest{action: "ec2:CreateTags", resource: eip, context: map[string]string{"ec2:createaction": "AllocateAddress"}}, true},
		{"condition value differs", authzRequest{action: "ec2:CreateTags", resource: eip, context: map[string]string{"ec2:CreateAction": "CreateSecurityGroup"}}, false},
		{"condition key missing", authzRequest{action: "ec2:CreateTags", resource: eip}, false},
		{"resource outside the pattern", authzRequest{action: "ec2:CreateTags", resource: "arn:aws:ec2:eu-west-1:1:security-group/sg-1", context: map[string]string{"ec2:CreateAction": "AllocateAddress"}}, false},
		{"StringLike *", authzRequest{action: "ec2:DeleteTags", resource: eip, context: map[string]string{"aws:ResourceTag/team": "alpha"}}, true},
		{"StringLike ?", authzRequest{action: "ec2:DeleteTags", resource: eip, context: map[string]string{"aws:ResourceTag/team": "bx"}}, true},
		{"StringLike no match", authzRequest{action: "ec2:DeleteTags", resource: eip, context: map[string]string{"aws:ResourceTag/team": "bxy"}}, false},
		{"StringNotEquals, key missing", authzRequest{action: "ec2:ReleaseAddress", resource: eip}, true},
		{"StringNotEquals, equal", authzRequest{action: "ec2:ReleaseAddress", resource: eip, context: map[string]string{"aws:ResourceTag/keep": "true"}}, false},
		{"IfExists, missing", authzRequest{action: "ec2:AssociateAddress", resource: eip}, true},
		{"IfExists, present and different", authzRequest{action: "ec2:AssociateAddress", resource: eip, context: map[string]string{"aws:ResourceTag/env": "dev"}}, false},
		{"Null false, present", authzRequest{action: "ec2:AllocateAddress", resource: eip, context: map[string]string{"aws:RequestTag/owner": "x"}}, true},
		{"Null false, missing", authzRequest{action: "ec2:AllocateAddress", resource: eip}, false},
		{"allowed", authzRequest{action: "ec2:CreateSecurityGroup", resource: "arn:aws:ec2:eu-west-1:1:vpc/vpc-1"}, true},
		{"explicit deny wins", authzRequest{action: "ec2:CreateSecurityGroup", resource: "arn:aws:ec2:eu-west-1:1:vpc/vpc-locked"}, false},
	}
	for _, tc := range cases {
		if got := p.decision([]authzRequest{tc.req}) == nil; got != tc.allow {
			t.Errorf("%s: allowed = %v, want %v", tc.name, got, tc.allow)
		}
	}
	// Every request of a call needs an allow: the first refused is named.
	reqs := []authzRequest{{action: "ec2:DescribeSubnets", resource: "*"}, {action: "ec2:RunInstances", resource: "*"}}
	if d := p.decision(reqs); d == nil || !strings.EqualFold(d.action, "ec2:RunInstances") {
		t.Errorf("decision of two = %v, want RunInstances refused", d)
	}
}
