package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEDocumentsEveryValue keeps the README configuration reference
// complete: every YAML key, environment variable and flag appears in it.
func TestREADMEDocumentsEveryValue(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	readme := string(b)
	for _, x := range Reference() {
		want := []string{"`" + x.Key + "`", "`" + x.Env() + "`"}
		if f := x.Flag(); f != "" {
			want = append(want, "`--"+f+"`")
		}
		for _, w := range want {
			if !strings.Contains(readme, w) {
				t.Errorf("README.md does not document %s (%s)", w, x.Key)
			}
		}
	}
}
