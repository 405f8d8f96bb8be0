package api_test

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"mcpgw/api"
)

// TestReadmeAPIReference keeps README's endpoint table ("## Management
// API") and the routes the code serves equal, in both directions.
func TestReadmeAPIReference(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## Management API")
	end := strings.Index(s, "## CLI walkthrough")
	if start < 0 || end < start {
		t.Fatal("README lacks the Management API / CLI walkthrough sections")
	}
	row := regexp.MustCompile("(?m)^\\| `((?:GET|POST|PATCH|PUT|DELETE) /api/v1/[^`]*)` \\|")
	doc := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(s[start:end], -1) {
		doc[m[1]] = true
	}
	code := map[string]bool{}
	for _, r := range api.Routes() {
		code[r] = true
	}
	var missing, extra []string
	for r := range code {
		if !doc[r] {
			missing = append(missing, r)
		}
	}
	for r := range doc {
		if !code[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("README endpoint table out of sync:\n  undocumented: %v\n  documented but not served: %v", missing, extra)
	}
}
