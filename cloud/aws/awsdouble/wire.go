package awsdouble

import (
	"encoding/xml"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// params is a form-encoded Query API request.
type params url.Values

func (p params) str(key string) string { return url.Values(p).Get(key) }

func (p params) has(key string) bool {
	_, ok := p[key]
	return ok
}

// list returns prefix.1, prefix.2, ... until one is missing: the encoding of
// a list of strings (EC2 "InstanceId", ELBv2 "Names.member").
func (p params) list(prefix string) []string {
	var out []string
	for i := 1; p.has(prefix + "." + strconv.Itoa(i)); i++ {
		out = append(out, p.str(prefix+"."+strconv.Itoa(i)))
	}
	return out
}

// structs returns the key prefixes ("Tags.member.1.", ...) of a list of
// structures whose members all carry the field key.
func (p params) structs(prefix, key string) []string {
	var out []string
	for i := 1; ; i++ {
		item := prefix + "." + strconv.Itoa(i) + "."
		if !p.has(item + key) {
			return out
		}
		out = append(out, item)
	}
}

// int32 returns the integer at key, or def when it is absent.
func (p params) int32(key string, def int32) (int32, error) {
	if !p.has(key) {
		return def, nil
	}
	v, err := strconv.ParseInt(p.str(key), 10, 32)
	if err != nil {
		return 0, fail("ValidationError", "%s: %q is not an integer", key, p.str(key))
	}
	return int32(v), nil
}

// tags reads a list of Key/Value structures such as "Tags.member" ("Tag"
// and "TagSpecification.N.Tag" in EC2) and validates them as AWS does:
// keys of 1 to 128 characters not starting with "aws:", values of at most
// 256, at most 50 in one request.
func (p params) tags(prefix string) (map[string]string, error) {
	code := "ValidationError"
	if !strings.HasPrefix(prefix, "Tags.member") {
		code = "InvalidParameterValue"
	}
	out := map[string]string{}
	for _, item := range p.structs(prefix, "Key") {
		k, v := p.str(item+"Key"), p.str(item+"Value")
		if _, dup := out[k]; dup {
			return nil, fail("DuplicateTagKeys", "tag key %q is given more than once", k)
		}
		switch {
		case k == "" || utf8.RuneCountInString(k) > 128:
			return nil, fail(code, "Tag key '%s' must be between 1 and 128 characters long", k)
		case utf8.RuneCountInString(v) > 256:
			return nil, fail(code, "Tag value for key '%s' must be at most 256 characters long", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return nil, fail(code, "Tag keys starting with 'aws:' are reserved for internal use")
		}
		out[k] = v
	}
	if len(out) > 50 {
		return nil, fail(map[bool]string{true: "TooManyTags", false: "TagLimitExceeded"}[code == "ValidationError"],
			"A request can carry at most 50 tags, not %d", len(out))
	}
	return out, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func oneOf(v string, allowed ...string) bool { return slices.Contains(allowed, v) }

// filter is one EC2 Filter.N.
type filter struct {
	name   string
	values []string
}

// filters reads Filter.N.Name and Filter.N.Value.M and rejects names other
// than the allowed ones, "tag:<key>" and "tag-key".
func (p params) filters(allowed ...string) ([]filter, error) {
	var out []filter
	for _, item := range p.structs("Filter", "Name") {
		f := filter{name: p.str(item + "Name"), values: p.list(item + "Value")}
		if !strings.HasPrefix(f.name, "tag:") && f.name != "tag-key" && !slices.Contains(allowed, f.name) {
			return nil, fail("InvalidParameterValue", "The filter '%s' is invalid", f.name)
		}
		out = append(out, f)
	}
	return out, nil
}

// matches reports whether a resource with these tags and filterable fields
// passes every filter: each filter needs one field value to match one of its
// values, where "*" and "?" are wildcards as in EC2.
func matches(fs []filter, tags map[string]string, fields map[string][]string) bool {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := tags[strings.TrimPrefix(f.name, "tag:")]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			have = slices.Collect(maps.Keys(tags))
		default:
			have = fields[f.name]
		}
		if !slices.ContainsFunc(have, func(h string) bool {
			return slices.ContainsFunc(f.values, func(pat string) bool { return glob(pat, h) })
		}) {
			return false
		}
	}
	return true
}

func glob(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	re := strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern))
	ok, _ := regexp.MatchString("^"+re+"$", s)
	return ok
}

// node is an XML element: text when it has no children.
type node struct {
	name string
	text string
	kids []*node
}

// el is an element with children; nil children are dropped so that optional
// fields can be written inline.
func el(name string, kids ...*node) *node {
	n := &node{name: name}
	for _, k := range kids {
		if k != nil {
			n.kids = append(n.kids, k)
		}
	}
	return n
}

// tx is a text element.
func tx(name, text string) *node { return &node{name: name, text: text} }

// opt is a text element, or nothing when text is empty.
func opt(name, text string) *node {
	if text == "" {
		return nil
	}
	return tx(name, text)
}

func itoa[T ~int | ~int32](v T) string { return strconv.Itoa(int(v)) }

// members is an ELBv2 list of strings.
func members(name string, values []string) *node {
	n := el(name)
	for _, v := range values {
		n.kids = append(n.kids, tx("member", v))
	}
	return n
}

// tagList is a tag list, sorted by key: EC2 tagSet/item{key,value} or ELBv2
// Tags/member{Key,Value}.
func tagList(tags map[string]string, ec2 bool) *node {
	list, item, key, value := "Tags", "member", "Key", "Value"
	if ec2 {
		list, item, key, value = "tagSet", "item", "key", "value"
	}
	n := el(list)
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		n.kids = append(n.kids, el(item, tx(key, k), tx(value, tags[k])))
	}
	return n
}

func render(root *node, namespace string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<" + root.name)
	if namespace != "" {
		b.WriteString(` xmlns="` + namespace + `"`)
	}
	b.WriteString(">")
	writeKids(&b, root)
	b.WriteString("</" + root.name + ">")
	return b.String()
}

func writeKids(b *strings.Builder, n *node) {
	if len(n.kids) == 0 {
		_ = xml.EscapeText(b, []byte(n.text))
		return
	}
	for _, k := range n.kids {
		b.WriteString("<" + k.name + ">")
		writeKids(b, k)
		b.WriteString("</" + k.name + ">")
	}
}

// pick returns the resources with the given IDs, in that order, or all of
// them sorted by ID when ids is empty; an unknown ID fails with notFound.
func pick[T any](m map[string]*T, ids []string, notFound, what string) ([]*T, error) {
	if len(ids) == 0 {
		ids = slices.Sorted(maps.Keys(m))
	}
	out := make([]*T, 0, len(ids))
	for _, id := range ids {
		v, ok := m[id]
		if !ok {
			return nil, fail(notFound, "The %s '%s' does not exist", what, id)
		}
		out = append(out, v)
	}
	return out, nil
}

// paginate applies EC2's MaxResults and NextToken to a result of n items:
// it returns the slice bounds of this page and the token of the next
// ("" on the last). MaxResults must lie in [lo, hi] and cannot be combined
// with explicit IDs (idsGiven), as in EC2; without it every item is
// returned.
func (p params) paginate(n int, idsGiven bool, lo, hi int32) (start, end int, next string, err error) {
	if !p.has("MaxResults") {
		if p.has("NextToken") {
			start, err = strconv.Atoi(p.str("NextToken"))
			if err != nil || start < 0 || start > n {
				return 0, 0, "", fail("InvalidParameterValue", "The token '%s' is invalid", p.str("NextToken"))
			}
		}
		return start, n, "", nil
	}
	if idsGiven {
		return 0, 0, "", fail("InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
	}
	max, err := p.int32("MaxResults", 0)
	if err != nil {
		return 0, 0, "", err
	}
	if max < lo || max > hi {
		return 0, 0, "", fail("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Expecting a value between %d and %d", max, lo, hi)
	}
	if t := p.str("NextToken"); t != "" {
		if start, err = strconv.Atoi(t); err != nil || start < 0 || start > n {
			return 0, 0, "", fail("InvalidParameterValue", "The token '%s' is invalid", t)
		}
	}
	end = min(start+int(max), n)
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}
