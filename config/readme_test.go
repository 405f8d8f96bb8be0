package config

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the configuration table in ../README.md")

const (
	tableBegin = "<!-- config-reference:begin (generated: go test ./config -run TestREADMEConfigTable -update) -->\n"
	tableEnd   = "<!-- config-reference:end -->\n"
)

// referenceTable renders Reference() as the README's markdown table.
func referenceTable() string {
	var b strings.Builder
	b.WriteString("| YAML key | environment | flag | default | meaning |\n|---|---|---|---|---|\n")
	for _, x := range Reference() {
		fl := "—"
		if x.Flag() != "" {
			fl = "`--" + x.Flag() + "`"
		}
		def := "—"
		if d := x.Default(); d != "" {
			def = "`" + d + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n", x.Key, x.Env(), fl, def, strings.ReplaceAll(x.Usage, "|", "\\|"))
	}
	return b.String()
}

// TestREADMEConfigTable keeps the README configuration reference exactly
// in step with the code: every YAML key, environment variable, flag and
// default. After changing a binding, regenerate it with
//
//	go test ./config -run TestREADMEConfigTable -update
func TestREADMEConfigTable(t *testing.T) {
	const path = "../README.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	readme := string(b)
	i := strings.Index(readme, tableBegin)
	j := strings.Index(readme, tableEnd)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %q ... %q markers", strings.TrimSpace(tableBegin), strings.TrimSpace(tableEnd))
	}
	want := referenceTable()
	got := readme[i+len(tableBegin) : j]
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i+len(tableBegin)]+want+readme[j:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("README.md configuration table is out of date; run: go test ./config -run TestREADMEConfigTable -update")
}
