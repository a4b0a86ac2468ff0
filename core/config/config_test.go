package config

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/rewards"
)

func TestDefaultIsValid(t *testing.T) {
	for _, r := range []Run{Default(), Demo()} {
		if err := r.Validate(); err != nil {
			t.Fatal(err)
		}
	}
	// The demo's sizing stays out of the defaults other runs start from.
	if d := Default(); d.Data.Epochs != 1 || d.Learner.LR != 1e-5 || d.Data.BuiltinSize != 36 {
		t.Fatalf("Default carries the demo's settings: %+v", d.Learner)
	}
}

func TestParseOverridesDefaults(t *testing.T) {
	r, err := Parse([]byte(`
model = "m.gguf"
steps = 7

[sampling]
group_size = 4
temperature = 0.7

[[rewards]]
name = "self_certainty"
weight = 1.0

[[rewards]]
name = "format"
weight = 0.5
[rewards.args]
layout = "think_answer"
`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Model != "m.gguf" || r.Steps != 7 || r.Sampling.GroupSize != 4 || r.Sampling.Temperature != 0.7 {
		t.Fatalf("parsed %+v", r)
	}
	if r.Sampling.MaxTokens != Default().Sampling.MaxTokens || r.Learner.Beta != Default().Learner.Beta {
		t.Fatal("keys absent from the file lost their defaults")
	}
	if len(r.Rewards) != 2 || r.Rewards[1].Args["layout"] != "think_answer" || r.Rewards[1].EffectiveWeight() != 0.5 {
		t.Fatalf("rewards %+v", r.Rewards)
	}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"unknown top-level key", "model = \"m\"\nstepz = 3\n", []string{"line 2", `"stepz"`}},
		{"unknown key in table", "[sampling]\ngroup_size = 4\n\ntemprature = 1\n", []string{"line 4", "sampling.temprature"}},
		{"unknown table", "[sampler]\nx = 1\n", []string{"line 1", `"sampler"`}},
		{"wrong type", "[sampling]\ngroup_size = \"eight\"\n", []string{"line 2", "group_size"}},
		{"weight not a number", "[[rewards]]\nname = \"format\"\nweight = \"heavy\"\n", []string{"line 3", "weight"}},
		{"syntax", "[sampling\ngroup_size = 4\n", []string{"line 2", "table name"}},
		{"unknown key in a reward", "[[rewards]]\nname = \"format\"\nwieght = 2\n", []string{"line 3", "wieght"}},
		// The TOML decoder wraps a negative integer into an unsigned field around.
		{"negative seed", "model = \"m\"\n\nseed = -1\n", []string{"line 3", "seed = -1", "want an integer >= 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Run)
		want   string
	}{
		{"group of one", func(r *Run) { r.Sampling.GroupSize = 1 }, "sampling.group_size"},
		{"absurd prompts per step", func(r *Run) { r.Sampling.PromptsPerStep = 1_000_000_000 }, "sampling.prompts_per_step × group_size = 1000000000 × 6 completions a step: want at most 1048576"},
		{"product past int", func(r *Run) {
			r.Sampling.PromptsPerStep, r.Sampling.GroupSize, r.Sampling.ParallelSequences = 1<<62, 1<<62, 1<<62
		}, "sampling.prompts_per_step × group_size"},
		{"zero lr", func(r *Run) { r.Learner.LR = 0 }, "learner.lr"},
		{"greedy", func(r *Run) { r.Sampling.Temperature = 0 }, "sampling.temperature"},
		{"bad loss", func(r *Run) { r.Learner.Loss = "ppo" }, "learner.loss"},
		{"cispo with a small eps_high", func(r *Run) { r.Learner.Loss = "cispo" }, "learner.eps_high = 0.2 with loss = \"cispo\""},
		{"bad importance sampling level", func(r *Run) { r.Learner.ImportanceSamplingLevel = "group" }, "learner.importance_sampling_level"},
		{"delta inside the clip", func(r *Run) { r.Learner.Delta = 1.1 }, "learner.delta = 1.1"},
		{"negative SAPO temperature", func(r *Run) { r.Learner.SAPOTemperatureNeg = -1 }, "learner.sapo_temperature_pos/neg"},
		{"top entropy quantile above 1", func(r *Run) { r.Learner.TopEntropyQuantile = 1.5 }, "learner.top_entropy_quantile = 1.5"},
		{"negative entropy coefficient", func(r *Run) { r.Learner.EntropyCoef = -0.01 }, "learner.entropy_coef = -0.01"},
		{"negative off-policy threshold", func(r *Run) { r.Learner.OffPolicyMaskThreshold = -0.5 }, "learner.off_policy_mask_threshold"},
		{"bad IS mode", func(r *Run) { r.Learner.ISMode = "icepop" }, "learner.is_mode"},
		{"IS mask without a cap", func(r *Run) { r.Learner.ISMode, r.Learner.ISCap = "sequence_mask", 0 }, "learner.is_cap"},
		{"IS lower bound above the cap", func(r *Run) { r.Learner.ISMin = 3 }, "learner.is_min = 3"},
		{"negative steps per generation", func(r *Run) { r.Learner.StepsPerGeneration = -2 }, "learner.steps_per_generation = -2"},
		{"more steps per generation than completions", func(r *Run) { r.Learner.StepsPerGeneration = 1 << 20 }, "learner.steps_per_generation"},
		{"bad source", func(r *Run) { r.SelfCertainty.Source = "oracle" }, "self_certainty.source"},
		{"no rewards", func(r *Run) { r.Rewards = nil }, "rewards"},
		{"unknown reward", func(r *Run) { r.Rewards[0].Name = "vibes" }, "vibes"},
		{"bad precision", func(r *Run) { r.Sync.Precision = "q3" }, "sync.precision"},
		{"temperature NaN", func(r *Run) { r.Sampling.Temperature = math.NaN() }, "sampling.temperature = NaN"},
		{"min_p NaN", func(r *Run) { r.Sampling.MinP = math.NaN() }, "sampling.min_p = NaN"},
		{"empty stop string", func(r *Run) { r.Sampling.Stop = []string{"\n\n", ""} }, "sampling.stop"},
		{"negative sampler threads", func(r *Run) { r.Sampling.Threads = -4 }, "sampling.threads = -4"},
		{"negative learner threads", func(r *Run) { r.Learner.Threads = -1 }, "learner.threads = -1"},
		{"bad lora target", func(r *Run) { r.LoRA.Enabled = true; r.LoRA.Targets = []string{"q", "attn"} }, "lora.targets"},
		{"bad learner precision", func(r *Run) { r.Learner.Precision = "fp16" }, "learner.precision"},
		{"bad recompute", func(r *Run) { r.Learner.RecomputeActivations = "yes" }, "learner.recompute_activations"},
		{"eval without data", func(r *Run) { r.Eval.Every = 5 }, "eval.data"},
		{"negative eval every", func(r *Run) { r.Eval.Every = -1 }, "eval.every = -1"},
		{"negative eval limit", func(r *Run) { r.Eval.Limit = -2 }, "eval.limit = -2"},
		{"eval max_tokens beyond sampling's", func(r *Run) { r.Eval.MaxTokens = r.Sampling.MaxTokens + 1 }, "eval.max_tokens"},
		{"eval n beyond the group", func(r *Run) { r.Eval.N = r.Sampling.GroupSize + 1 }, "eval.n"},
		{"eval n greedy", func(r *Run) { r.Eval.N = 2 }, "eval.temperature"},
		{"eval temperature NaN", func(r *Run) { r.Eval.Temperature = math.NaN() }, "eval.temperature = NaN"},
		{"keep_best not eval", func(r *Run) { r.Eval.Every, r.Eval.Data = 1, "d.jsonl"; r.Output.KeepBest = "loss" }, "output.keep_best"},
		{"keep_best without eval", func(r *Run) { r.Output.KeepBest = "eval/accuracy" }, "eval.every"},
		{"keep_best_mode", func(r *Run) { r.Output.KeepBestMode = "highest" }, "output.keep_best_mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Default()
			tc.change(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

// The resolved configuration written at the start of a run reads back as the same run.
func TestEncodeRoundTrip(t *testing.T) {
	r := Default()
	r.Rewards = append(r.Rewards, r.Rewards[0])
	r.Rewards[1].Name = "format"
	r.Rewards[1].Args = map[string]any{"pattern": `\\boxed\{`}
	w := 0.25
	r.Rewards[1].Weight = &w
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, r) {
		t.Fatalf("round trip changed the run:\n%+v\n%+v", back, r)
	}
	h1, _ := r.Hash()
	r.Steps, r.Out, r.Sampling.Threads = 99, "elsewhere", 3
	h2, _ := r.Hash()
	r.Eval.Every, r.Eval.Data = 3, "held-out.jsonl" // evaluation does not change the weights
	h2e, _ := r.Hash()
	if h2e != h2 {
		t.Fatal("hash: [eval] counted; a resumed run may add or change its evaluation")
	}
	r.Learner.LR *= 2
	h3, _ := r.Hash()
	if h1 != h2 || h1 == h3 {
		t.Fatalf("hash: %s %s %s; want steps/out/threads ignored, lr counted", h1, h2, h3)
	}
}

// Every path of a config file is taken from the file's directory, out included, and made
// absolute, whatever the working directory and however the file is named (a relative
// name too): the resolved run names the same files from anywhere (a resume, an export).
// A plugin path with a directory part is resolved once; a bare plugin name is the file
// beside the config when there is one, else a command on $PATH.
func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "cfg")
	os.MkdirAll(filepath.Join(cfgDir, "bin"), 0o755)
	os.WriteFile(filepath.Join(cfgDir, "beside.py"), []byte("#!/bin/sh\n"), 0o755)
	p := filepath.Join(cfgDir, "run.toml")
	os.WriteFile(p, []byte(`model = "m.gguf"
out = "../runs/a"
[data]
path = "d.jsonl"
[eval]
data = "e.jsonl"
every = 2
[[rewards]]
name = "sub"
plugin = "bin/r.py"
[[rewards]]
name = "beside"
plugin = "beside.py"
[[rewards]]
name = "onpath"
plugin = "some-reward-command"
[[rewards]]
name = "builtin"
`), 0o644)
	want := map[string]string{
		"model": filepath.Join(cfgDir, "m.gguf"), "out": filepath.Join(dir, "runs", "a"),
		"data.path": filepath.Join(cfgDir, "d.jsonl"), "eval.data": filepath.Join(cfgDir, "e.jsonl"),
		"sub": filepath.Join(cfgDir, "bin", "r.py"), "beside": filepath.Join(cfgDir, "beside.py"),
		"onpath": "some-reward-command", "builtin": "",
	}
	for _, wd := range []string{dir, cfgDir, filepath.Join(cfgDir, "bin")} {
		t.Run(filepath.Base(wd), func(t *testing.T) {
			t.Chdir(wd)
			rel, err := filepath.Rel(wd, p)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Load(rel)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{"model": r.Model, "out": r.Out, "data.path": r.Data.Path, "eval.data": r.Eval.Data}
			for _, rw := range r.Rewards {
				got[rw.Name] = rw.Plugin
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Load(%q) from %s:\n got %v\nwant %v", rel, wd, got, want)
			}
			// Written out and read back from elsewhere, the run names the same files.
			b, err := r.Encode()
			if err != nil {
				t.Fatal(err)
			}
			again := filepath.Join(t.TempDir(), "config.toml")
			os.WriteFile(again, b, 0o644)
			r2, err := Load(again)
			if err != nil {
				t.Fatal(err)
			}
			if r2.Model != r.Model || r2.Out != r.Out || r2.Data.Path != r.Data.Path || !reflect.DeepEqual(r2.Rewards, r.Rewards) {
				t.Fatalf("read back from %s: %+v", again, r2)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "none.toml")); err == nil || !strings.Contains(err.Error(), "none.toml") {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("model = \"m\"\n[sampling]\ngroup_size = 4\n"))
	f.Add([]byte("[[rewards]]\nname = \"format\"\n[rewards.args]\npattern = \"x\"\n"))
	f.Add([]byte("[learner]\nlr = 1e-6\nloss = \"dapo\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		r, err := Parse(src)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		_ = r.Validate()
		if _, err := r.Encode(); err != nil {
			t.Fatalf("parsed run does not encode: %v", err)
		}
	})
}

// Every example run in examples/ parses, validates, and names data that comes with the
// repository (data/), so a fresh clone with nothing beside it runs each one as it is.
func TestExamples(t *testing.T) {
	root := testutil.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "examples", "*.toml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if filepath.Base(r.Model) != "SmolLM2-135M-Instruct.Q4_1.gguf" {
				t.Fatalf("model %s", r.Model)
			}
			if out, err := filepath.Rel(filepath.Join(root, "runs"), r.Out); err != nil || strings.HasPrefix(out, "..") {
				t.Fatalf("out = %s: outside %s", r.Out, filepath.Join(root, "runs"))
			}
			p, err := data.Resolve(r.Data.Path)
			if err != nil {
				t.Fatal(err)
			}
			rel, err := filepath.Rel(root, p)
			if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
				t.Fatalf("data.path = %q resolves to %s, outside the repository %s", r.Data.Path, p, root)
			}
			if _, err := os.Stat(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The old key gradient_checkpointing still reads, as recompute_activations on/off, with a
// notice; set next to the new key it is an error naming its line; it is never written.
func TestGradientCheckpointingAlias(t *testing.T) {
	for _, tc := range []struct {
		src, want string
	}{
		{"[learner]\ngradient_checkpointing = true\n", "on"},
		{"[learner]\ngradient_checkpointing = false\n", "off"},
		{"[learner]\nrecompute_activations = \"off\"\n", "off"},
		{"", "auto"},
	} {
		r, err := Parse([]byte(tc.src))
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		deprecated := strings.Contains(tc.src, "gradient_checkpointing")
		if r.Learner.RecomputeActivations != tc.want || (len(r.Notices) == 1) != deprecated {
			t.Errorf("%q: recompute %q, notices %q; want %q", tc.src, r.Learner.RecomputeActivations, r.Notices, tc.want)
		}
		if deprecated && !strings.Contains(r.Notices[0], "recompute_activations") {
			t.Errorf("notice %q does not name the new key", r.Notices[0])
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(enc), "gradient_checkpointing") {
			t.Errorf("%q: encoded config still has the old key", tc.src)
		}
	}
	_, err := Parse([]byte("[learner]\nrecompute_activations = \"on\"\ngradient_checkpointing = true\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("both keys: error %v, want one naming line 3", err)
	}
}

// A reward with weight 0 beside a trained one is a reward to watch: it reads, with a notice
// naming it; every weight 0 is refused by Validate, naming [[rewards]] and what to do.
func TestZeroWeights(t *testing.T) {
	for _, tc := range []struct {
		name, src      string
		notice, reject string // "" when none
	}{
		{"the only reward", "[[rewards]]\nname = \"self_certainty\"\nweight = 0\n", "", "rewards: every [[rewards]] entry has weight 0 (self_certainty)"},
		{"every reward", "[[rewards]]\nname = \"self_certainty\"\nweight = 0\n[[rewards]]\nname = \"format\"\nweight = 0.0\n", "", "weight 0 (self_certainty, format)"},
		{"one watched", "[[rewards]]\nname = \"self_certainty\"\n[[rewards]]\nname = \"format\"\nweight = 0\n", "reward format has weight 0", ""},
		{"none zero", "[[rewards]]\nname = \"self_certainty\"\nweight = 2\n", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse([]byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.notice == "" && len(r.Notices) > 0:
				t.Errorf("notices %q, want none", r.Notices)
			case tc.notice != "" && (len(r.Notices) != 1 || !strings.Contains(r.Notices[0], tc.notice)):
				t.Errorf("notices %q, want one containing %q", r.Notices, tc.notice)
			}
			err = r.Validate()
			switch {
			case tc.reject == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.reject != "" && (err == nil || !strings.Contains(err.Error(), tc.reject)):
				t.Fatalf("error %v, want one containing %q", err, tc.reject)
			}
		})
	}
}

// Every experiment's config (examples/experiments/*/*.toml) loads and validates, with its
// out inside the repository's runs/ folder.
func TestExperimentConfigs(t *testing.T) {
	root := testutil.RepoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "examples", "experiments", "*", "*.toml"))
	if err != nil || len(files) < 10 {
		t.Fatalf("experiment configs: %v %v", files, err)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(rel, func(t *testing.T) {
			r, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			if out, err := filepath.Rel(filepath.Join(root, "runs"), r.Out); err != nil || strings.HasPrefix(out, "..") {
				t.Fatalf("out = %s: outside %s", r.Out, filepath.Join(root, "runs"))
			}
		})
	}
}

// A checkpoint's config hash from a build that recorded paths relative to the working
// directory is recomputed from today's absolute paths and that directory.
func TestHashBeforeAbsolutePaths(t *testing.T) {
	old := Default()
	old.Model, old.Data.Path, old.Eval.Data = "models/m.gguf", "data/d.jsonl", "math-test"
	old.Rewards = append(old.Rewards, Reward{Spec: rewards.Spec{Name: "mine"}})
	old.Rewards[len(old.Rewards)-1].Plugin = "cfg/p.py"
	want, err := old.Hash()
	if err != nil {
		t.Fatal(err)
	}
	now := old
	now.Rewards = append([]Reward(nil), old.Rewards...)
	if err := now.ResolvePaths("/work/proj"); err != nil {
		t.Fatal(err)
	}
	if now.Model != "/work/proj/models/m.gguf" {
		t.Fatalf("resolved model %s", now.Model)
	}
	if h, _ := now.Hash(); h == want {
		t.Fatal("absolute paths hash like relative ones: the test proves nothing")
	}
	if got, err := now.HashBeforeAbsolutePaths("/work/proj"); err != nil || got != want {
		t.Fatalf("HashBeforeAbsolutePaths = %.12s (%v), want the old hash %.12s", got, err, want)
	}
	if got, _ := now.HashBeforeAbsolutePaths("/elsewhere"); got == want {
		t.Fatal("the old hash from another directory matched")
	}
}

// TestPolicyOptionsKeepTheHash checks that the policy-optimization keys are written only
// when set: a run that sets none keeps the hash it had before they existed (its
// checkpoints still resume), and one that sets them reads them back.
func TestPolicyOptionsKeepTheHash(t *testing.T) {
	b, err := Default().Encode()
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"steps_per_generation", "importance_sampling_level", "delta", "sapo_temperature_pos", "sapo_temperature_neg",
		"top_entropy_quantile", "entropy_coef", "mask_truncated_completions", "off_policy_mask_threshold", "is_mode", "is_min"}
	for _, k := range keys {
		if strings.Contains(string(b), k+" =") {
			t.Errorf("the default config writes %s", k)
		}
	}
	r := Default()
	l := &r.Learner
	l.StepsPerGeneration, l.ImportanceSamplingLevel, l.Delta, l.SAPOTemperaturePos, l.SAPOTemperatureNeg = 2, "sequence", 1.5, 1, 1.05
	l.EntropyCoef = 0.001
	l.TopEntropyQuantile, l.MaskTruncatedCompletions, l.OffPolicyMaskThreshold, l.ISMode, l.ISMin = 0.2, true, 0.5, "sequence_mask", 0.5
	b, err = r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(string(b), k+" =") {
			t.Errorf("a config that sets %s does not write it", k)
		}
	}
}

// Settings flattens what checkpoints depend on and leaves out what a resume may change;
// Differences names each changed key once.
func TestSettings(t *testing.T) {
	r := Default()
	s, err := r.Settings()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"learner.lr", "rewards[0].name", "sampling.group_size", "seed"} {
		if _, ok := s[k]; !ok {
			t.Errorf("settings lack %s: %v", k, s)
		}
	}
	for _, k := range []string{"steps", "out", "eval.every", "output.checkpoint_every", "sampling.threads", "learner.threads"} {
		if v, ok := s[k]; ok && v != "0" && v != `""` {
			t.Errorf("settings keep %s = %s, which a resumed run may change", k, v)
		}
	}
	c := r
	c.Steps, c.Out, c.Eval.Every, c.Eval.Data, c.Sampling.Threads = 7, "elsewhere", 3, "gsm8k-test", 2
	c.Learner.LR *= 2
	c.Rewards = append(c.Rewards, Reward{Spec: rewards.Spec{Name: "format"}})
	now, err := c.Settings()
	if err != nil {
		t.Fatal(err)
	}
	diffs := now.Differences(s)
	if len(diffs) < 2 || !strings.HasPrefix(diffs[0], "learner.lr = ") || !strings.HasPrefix(diffs[1], "rewards[") {
		t.Fatalf("differences %q: want learner.lr, then the added reward's keys", diffs)
	}
	if d := s.Differences(s); len(d) != 0 {
		t.Fatalf("a run differs from itself: %q", d)
	}
	if got := Summary([]string{"a", "b", "c", "d"}, 2); got != "a; b; and 2 more" {
		t.Fatalf("Summary = %q", got)
	}
}
