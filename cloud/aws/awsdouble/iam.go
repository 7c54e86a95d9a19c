package awsdouble

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy is a parsed IAM identity-based policy. It understands the parts of
// the policy language Berth's documented policies use: Allow and Deny
// statements with Action and Resource (a string or a list, with * and ?
// wildcards), and conditions with the operators StringEquals,
// StringNotEquals, StringLike, StringNotLike (each also with IfExists) and
// Null. Anything else (NotAction, NotResource, Principal, other operators,
// ForAllValues/ForAnyValue) is refused by ParsePolicy rather than ignored,
// so a test can never pass on a policy the double did not understand.
type Policy struct {
	statements []statement
}

type statement struct {
	allow      bool
	actions    []string
	resources  []string
	conditions []condition
}

type condition struct {
	op       string // StringEquals, StringNotEquals, StringLike, StringNotLike, Null
	ifExists bool
	key      string
	values   []string
}

// stringOrList is an IAM policy element that may be one string or a list.
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings: %w", err)
	}
	*s = many
	return nil
}

// ParsePolicy parses an IAM policy document.
func ParsePolicy(doc []byte) (*Policy, error) {
	var raw struct {
		Version   string
		Statement []map[string]json.RawMessage
	}
	dec := json.NewDecoder(strings.NewReader(string(doc)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if raw.Version != "2012-10-17" {
		return nil, fmt.Errorf("policy: Version %q, want 2012-10-17", raw.Version)
	}
	p := &Policy{}
	for i, rs := range raw.Statement {
		st, err := parseStatement(rs)
		if err != nil {
			return nil, fmt.Errorf("policy: statement %d: %w", i, err)
		}
		p.statements = append(p.statements, st)
	}
	return p, nil
}

func parseStatement(rs map[string]json.RawMessage) (statement, error) {
	var st statement
	for k := range rs {
		if k != "Effect" && k != "Action" && k != "Resource" && k != "Condition" && k != "Sid" {
			return st, fmt.Errorf("element %q is not understood by awsdouble", k)
		}
	}
	var effect string
	if err := json.Unmarshal(rs["Effect"], &effect); err != nil || (effect != "Allow" && effect != "Deny") {
		return st, fmt.Errorf("Effect must be Allow or Deny")
	}
	st.allow = effect == "Allow"
	var actions, resources stringOrList
	if err := json.Unmarshal(rs["Action"], &actions); err != nil || len(actions) == 0 {
		return st, fmt.Errorf("Action: missing or invalid")
	}
	if err := json.Unmarshal(rs["Resource"], &resources); err != nil || len(resources) == 0 {
		return st, fmt.Errorf("Resource: missing or invalid")
	}
	for _, a := range actions {
		if a != "*" && !strings.Contains(a, ":") {
			return st, fmt.Errorf("Action %q has no service prefix", a)
		}
	}
	st.actions, st.resources = actions, resources
	if c, ok := rs["Condition"]; ok {
		var ops map[string]map[string]stringOrList
		if err := json.Unmarshal(c, &ops); err != nil {
			return st, fmt.Errorf("Condition: %w", err)
		}
		for op, keys := range ops {
			base, ifExists := strings.CutSuffix(op, "IfExists")
			switch base {
			case "StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "Null":
			default:
				return st, fmt.Errorf("condition operator %q is not understood by awsdouble", op)
			}
			if base == "Null" && ifExists {
				return st, fmt.Errorf("NullIfExists is not an operator")
			}
			for key, values := range keys {
				st.conditions = append(st.conditions, condition{op: base, ifExists: ifExists, key: key, values: values})
			}
		}
	}
	return st, nil
}

// authzRequest is one authorization an API call needs: an action on a
// resource, with the request's condition keys. A call may need several
// (tag-on-create needs the create action and the tagging action).
type authzRequest struct {
	action   string // "ec2:CreateTags"
	resource string // an ARN, or "*" for actions without resource-level permissions
	context  map[string]string
}

// decision evaluates the requests as IAM does for one identity policy: an
// explicit Deny wins, then each request needs an Allow. It returns the first
// request not allowed, or nil.
func (p *Policy) decision(reqs []authzRequest) *authzRequest {
	for i := range reqs {
		allowed := false
		for _, st := range p.statements {
			if !st.applies(reqs[i]) {
				continue
			}
			if !st.allow {
				return &reqs[i]
			}
			allowed = true
		}
		if !allowed {
			return &reqs[i]
		}
	}
	return nil
}

func (st statement) applies(r authzRequest) bool {
	if !anyGlob(st.actions, r.action, true) || !anyGlob(st.resources, r.resource, false) {
		return false
	}
	for _, c := range st.conditions {
		if !c.holds(r.context) {
			return false
		}
	}
	return true
}

// holds evaluates one condition key: the key's name is matched without
// regard to case, its value as the operator says.
func (c condition) holds(ctx map[string]string) bool {
	v, present := lookup(ctx, c.key)
	if c.op == "Null" {
		want := len(c.values) == 1 && c.values[0] == "true"
		return want == !present
	}
	if !present {
		// A missing key fails a positive test and passes a negated one
		// (as IAM evaluates them); IfExists passes either way.
		return c.ifExists || strings.HasPrefix(c.op, "StringNot")
	}
	match := false
	for _, want := range c.values {
		switch c.op {
		case "StringEquals", "StringNotEquals":
			match = match || want == v
		default:
			match = match || glob(want, v)
		}
	}
	if strings.HasPrefix(c.op, "StringNot") {
		return !match
	}
	return match
}

func lookup(ctx map[string]string, key string) (string, bool) {
	for k, v := range ctx {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return "", false
}

func anyGlob(patterns []string, s string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p, s = strings.ToLower(p), strings.ToLower(s)
		}
		if glob(p, s) {
			return true
		}
	}
	return false
}
