package main

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
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
		// Accepted without a word on the base commit:
		{"every weight 0", []string{"--config", write("w0.toml", "model = \""+stories+"\"\n[[rewards]]\nname = \"self_certainty\"\nweight = 0\n")}, []string{"rewards: every [[rewards]] entry has weight 0", "non-zero weight"}},
		{"negative seed", []string{"--config", write("seed.toml", "model = \""+stories+"\"\nseed = -1\n")}, []string{"line 2", "seed = -1", ">= 0"}},
		{"number prompt", []string{"--model", stories, "--raw", "--data", write("num.jsonl", `{"prompt": 12345, "answer": "4"}`+"\n"), "--out", dir}, []string{"num.jsonl: line 1", `field "prompt" is a number`}},
		{"object answer", []string{"--model", stories, "--raw", "--data", write("objans.jsonl", `{"prompt": "2+2?", "answer": {"v": 4}}`+"\n"), "--rewards", "accuracy", "--out", dir}, []string{"reward accuracy", "objans.jsonl: line 1", `field "answer" (the gold answer) is an object`}},
		{"data is a directory", []string{"--model", stories, "--raw", "--data", dir, "--out", filepath.Join(dir, "run")}, []string{dir + " is a directory", "JSONL or parquet file, or a named set"}},
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

// --seed overrides the config's seed (the run's config.toml records it, so the run can be
// repeated); a negative one is refused before anything runs.
func TestTrainSeedFlag(t *testing.T) {
	// The largest seed is TOML's largest integer: a larger one would be written to
	// config.toml and not read back.
	for _, bad := range []string{"-1", "9223372036854775808"} {
		code, _, errs := runCLI(t, "train", "--seed", bad)
		if lines := strings.Split(strings.TrimSpace(errs), "\n"); code != 2 || !strings.Contains(lines[len(lines)-1], `for flag -seed: want an integer from 0 to 9223372036854775807`) {
			t.Fatalf("--seed %s: exit %d, stderr:\n%s", bad, code, errs)
		}
	}

	dir := t.TempDir()
	rlif, _ := buildRlif(t, dir)
	run := filepath.Join(dir, "run")
	cfg := filepath.Join(dir, "run.toml")
	os.WriteFile(cfg, []byte(`model = "`+testutil.StoriesModel(t)+`"
out = "`+run+`"
steps = 1
seed = 3
[data]
raw = true
builtin_size = 2
[sampling]
prompts_per_step = 1
group_size = 2
max_tokens = 4
threads = 1
[learner]
threads = 1
[sync]
precision = "f32"
`), 0o644)
	if b, err := exec.Command(rlif, "train", "--config", cfg, "--seed", "9223372036854775807").CombinedOutput(); err != nil {
		t.Fatalf("train: %v\n%s", err, b)
	}
	got, err := config.Load(filepath.Join(run, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Seed != math.MaxInt64 {
		t.Fatalf("the run's config.toml has seed %d, want the flag's", got.Seed)
	}
}
