package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// rlif eval --data NAME reads the set that comes with the repository, and records the
// file it read; a misspelt name is a one-line error listing the names.
func TestEvalNamedSet(t *testing.T) {
	model := testutil.DefaultModel(t)
	code, out, errs := runCLI(t, "eval", "--model", model, "--data", "gsm8k-test", "--limit", "1", "--max-tokens", "2", "--threads", "1", "--quiet", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var s struct {
		Data  string `json:"data"`
		Items int    `json:"items"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &s); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if want := filepath.Join(testutil.RepoRoot(t), "data", "gsm8k_test.jsonl"); s.Data != want || s.Items != 1 {
		t.Errorf("evaluated %d items of %s, want 1 of %s", s.Items, s.Data, want)
	}
	code, _, errs = runCLI(t, "eval", "--model", model, "--data", "gsm8k-tset", "--limit", "1")
	if line := strings.TrimSpace(errs); code == 0 || strings.Contains(line, "\n") || !strings.Contains(line, "gsm8k-test") {
		t.Errorf("misspelt name: exit %d, stderr %q", code, errs)
	}
}
