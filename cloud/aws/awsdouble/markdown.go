package awsdouble

import (
	"fmt"
	"regexp"
	"strings"
)

var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// MarkdownJSONBlocks returns the ```json code blocks of the markdown
// section that starts at the line heading (for example "### IAM policy")
// and ends at the next heading of level two. Tests use it to bind the
// documented IAM policies, exactly as written, with SetPolicy.
func MarkdownJSONBlocks(md []byte, heading string) ([]string, error) {
	doc := string(md)
	start := strings.Index(doc, "\n"+heading+"\n")
	if start < 0 {
		return nil, fmt.Errorf("no section %q", heading)
	}
	section := doc[start+1:]
	if end := strings.Index(section, "\n## "); end > 0 {
		section = section[:end]
	}
	var out []string
	for _, m := range jsonBlock.FindAllStringSubmatch(section, -1) {
		out = append(out, m[1])
	}
	return out, nil
}
