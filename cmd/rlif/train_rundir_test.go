package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Run-directory mistakes on the command line: one-line errors, before anything is written.
func TestTrainRunDirErrors(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	os.MkdirAll(run, 0o755)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"resume and overwrite", []string{"--resume", run, "--overwrite"}, 2, []string{"--overwrite", "--resume"}},
		{"resume a directory without a run", []string{"--resume", run}, 1, []string{run, "not a run directory", "config.toml"}},
		{"resume a missing directory", []string{"--resume", filepath.Join(dir, "nope")}, 1, []string{"nope", "not a run directory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"train"}, tc.args...)...)
			line := strings.TrimSpace(errs)
			if code != tc.code || strings.Count(line, "\n") > 0 {
				t.Fatalf("exit %d (want %d), stderr:\n%s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
			if entries, _ := os.ReadDir(run); len(entries) != 0 {
				t.Errorf("the refused command wrote into %s: %v", run, entries)
			}
		})
	}
}
