package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// Bad configurations give a one-line error and a non-zero exit before any model loads.
func TestTrainBadConfig(t *testing.T) {
	dir := t.TempDir()
	stories := testutil.StoriesModel(t)
	noPrompt := filepath.Join(dir, "rows.jsonl")
	os.WriteFile(noPrompt, []byte(`{"question": "2+2?", "answer": "4"}`+"\n"+`{"answer": "5"}`+"\n"), 0o644)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown key", []string{"--config", write("a.toml", "model = \""+stories+"\"\n[sampling]\ngroup_sise = 4\n")}, []string{"line 3", "sampling.group_sise"}},
		{"wrong type", []string{"--config", write("b.toml", "[learner]\nlr = \"fast\"\n")}, []string{"line 2", "lr"}},
		{"missing model", []string{"--model", filepath.Join(dir, "nope.gguf"), "--out", dir}, []string{"nope.gguf", "no such file"}},
		{"missing data field", []string{"--model", stories, "--data", noPrompt, "--out", dir}, []string{"rows.jsonl: line 2", `"question"`}},
		{"weight not a number", []string{"--config", write("c.toml", "[[rewards]]\nname = \"format\"\nweight = \"high\"\n")}, []string{"line 3", "weight"}},
		{"unknown reward", []string{"--model", stories, "--rewards", "self_certainty,vibes", "--out", dir}, []string{"vibes"}},
		{"group of one", []string{"--config", write("d.toml", "[sampling]\ngroup_size = 1\n")}, []string{"sampling.group_size"}},
		{"missing config", []string{"--config", filepath.Join(dir, "none.toml")}, []string{"none.toml"}},
		{"accuracy without answers", []string{"--model", stories, "--data", write("noans.jsonl", `{"prompt": "hi"}`+"\n"), "--rewards", "accuracy", "--out", dir}, []string{"answer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"train"}, tc.args...)...)
			line := strings.TrimSpace(errs)
			if code == 0 || strings.Count(line, "\n") > 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
		})
	}
}
