package train

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/policy/sampler"
	"github.com/rlif/rlif/rewards"
)

// rlifBin is the rlif executable built once for these tests: it serves the built-in
// rewards as real plugin processes, and runs the kill-and-resume test.
var rlifBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rlif-train-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	rlifBin = filepath.Join(dir, "rlif")
	build := exec.Command("go", "build", "-o", rlifBin, "github.com/rlif/rlif/cmd/rlif")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build rlif:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// storiesRun is a small run on the stories test model: raw prompts (it has no chat
// template), two rewards served by real plugin processes.
func storiesRun(t *testing.T, out string, steps int) config.Run {
	t.Helper()
	r := config.Default()
	r.Model = testutil.StoriesModel(t)
	r.Out = out
	r.Steps = steps
	r.Seed = 11
	r.Data.Raw = true
	r.Data.BuiltinSize = 16
	r.Sampling = config.Sampling{PromptsPerStep: 2, GroupSize: 3, MaxTokens: 24, Temperature: 1, TopP: 1, Threads: 1, ParallelSequences: 64}
	r.Learner.Threads = 1
	r.Learner.LR = 1e-3
	r.Sync.Precision = "f32"
	w := 0.5
	r.Rewards = []config.Reward{{Spec: rewards.Spec{Name: "self_certainty"}}, {Spec: rewards.Spec{Name: "format", Weight: &w}}}
	r.Output = config.Output{CheckpointEvery: 1, CompletionsEvery: 1}
	return r
}

// inProcessRun sets up cfg's run as Run does before its first step (data, run directory,
// config.toml, real plugin processes, learner and sampler, logs), so that a test can call
// its steps in this process; the run is closed when the test ends.
func inProcessRun(t *testing.T, cfg config.Run) (*run, context.Context) {
	t.Helper()
	r := &run{cfg: cfg, opt: Options{Executable: rlifBin}, out: cfg.Out, progress: io.Discard}
	t.Cleanup(r.close)
	ctx := context.Background()
	hash := func() (err error) {
		if r.hash, err = r.cfg.Hash(); err != nil {
			return err
		}
		r.settings, err = r.cfg.Settings()
		return err
	}
	for _, f := range []func() error{r.loadData, r.openRunDir, hash, r.writeConfig, func() error { return r.startRewards(ctx) },
		func() error { return r.loadModels(nil) }, func() error { return r.openLogs(0) }} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	return r, ctx
}

func readMetrics(t *testing.T, path string) []map[string]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]float64
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestThreeSteps(t *testing.T) {
	out := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), storiesRun(t, out, 3), Options{Executable: rlifBin, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Steps != 3 || res.Stopped {
		t.Fatalf("result %+v", res)
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 3 {
		t.Fatalf("%d metric lines, want 3", len(ms))
	}
	for i, m := range ms {
		if int(m["step"]) != i+1 {
			t.Fatalf("line %d is step %v", i+1, m["step"])
		}
		for _, k := range []string{"reward/self_certainty/mean", "reward/self_certainty/std", "reward/format/mean", "advantage/std",
			"self_certainty/mean", "entropy/mean", "completion_length/mean", "completion_length/max", "clip_ratio/low", "clip_ratio/high", "clip_ratio/region", "kl", "kl/clamped", "loss",
			"grad_norm", "lr", "is_weight/mean", "time/sample", "time/score", "time/learn", "time/sync", "tokens_per_second"} {
			if _, ok := m[k]; !ok {
				t.Errorf("step %d: no %s", i+1, k)
			}
		}
		// The self_certainty reward is the mean self-certainty of the completions.
		if d := m["reward/self_certainty/mean"] - m["self_certainty/mean"]; d > 1e-9 || d < -1e-9 {
			t.Errorf("step %d: reward %v vs self-certainty %v", i+1, m["reward/self_certainty/mean"], m["self_certainty/mean"])
		}
		if m["time/learn"] <= 0 || m["grad_norm"] <= 0 {
			t.Errorf("step %d: learner did not run: %v", i+1, m)
		}
	}
	if lines := strings.Count(progress.String(), "step "); lines < 3 || !strings.Contains(progress.String(), "ETA") {
		t.Fatalf("progress:\n%s", progress.String())
	}
	// config.toml repeats the run.
	back, err := config.Load(filepath.Join(out, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Steps != 3 || back.Sampling.GroupSize != 3 || len(back.Rewards) != 2 {
		t.Fatalf("config.toml: %+v", back)
	}
	// Completions were logged with each reward's score.
	b, err := os.ReadFile(filepath.Join(out, "completions.jsonl"))
	if err != nil || strings.Count(string(b), "\n") != 3*2*3 || !strings.Contains(string(b), `"format":0`) {
		t.Fatalf("completions.jsonl (%v): %.300s", err, b)
	}
	// A checkpoint, and a final GGUF that the sampler loads.
	if _, err := os.Stat(filepath.Join(out, "checkpoints", "step-3", "state.json")); err != nil {
		t.Fatal(err)
	}
	// final/hf holds the same model as a Hugging Face directory that converts back.
	if _, _, _, err := hf.Read(filepath.Join(out, "final", "hf"), hf.ConvertOptions{AllowNoTemplate: true}); err != nil {
		t.Fatalf("final/hf: %v", err)
	}
	m, err := sampler.Load(res.Final, sampler.Options{Threads: 1, ContextSize: 512, MaxSequences: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := m.Sample(context.Background(), []sampler.Request{{Prompt: "Once upon a time", Raw: true}}, 1, sampler.Params{MaxTokens: 8})
	if err != nil || len(got[0][0].Tokens) == 0 {
		t.Fatalf("final model does not sample: %v", err)
	}
}

// A run killed with SIGKILL in the middle of a step, then resumed, reaches the same step
// count from an intact checkpoint, and its later steps repeat the uninterrupted run's.
func TestKillAndResume(t *testing.T) {
	const steps = 6
	ref := t.TempDir()
	if _, err := Run(context.Background(), storiesRun(t, ref, steps), Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	want := readMetrics(t, filepath.Join(ref, "metrics.jsonl"))

	out := t.TempDir()
	cfg := storiesRun(t, out, steps)
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "run.toml")
	os.WriteFile(cfgPath, b, 0o644)
	cmd := exec.Command(rlifBin, "train", "--config", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once step 2 is logged, while step 3 is under way.
	waitForMetricsLines(t, cmd, out, 2)
	time.Sleep(150 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killedAt := len(readMetrics(t, filepath.Join(out, "metrics.jsonl")))
	if _, err := os.Stat(filepath.Join(out, "final", "model.gguf")); err == nil || killedAt >= steps {
		t.Fatalf("the kill came after the run had finished (%d steps logged): the test proves nothing", killedAt)
	}
	t.Logf("killed after %d logged steps", killedAt)

	resume := exec.Command(rlifBin, "train", "--resume", out)
	if b, err := resume.CombinedOutput(); err != nil || !strings.Contains(string(b), "resuming from") {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	got := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(got) != steps {
		t.Fatalf("%d metric lines after resume, want %d", len(got), steps)
	}
	for i := range got {
		// The health rule's ratios after the resume come from the steps before it, read
		// back from metrics.jsonl: a tracker started afresh would give 1 at the first.
		for _, k := range []string{"step", "reward/self_certainty/mean", "reward/format/mean", "loss", "kl", "grad_norm", "completion_length/mean", "lr", "health/entropy_ratio", "health/length_ratio"} {
			if got[i][k] != want[i][k] {
				t.Errorf("step %d %s: resumed %v, uninterrupted %v", i+1, k, got[i][k], want[i][k])
			}
		}
	}
	entries, _ := os.ReadDir(filepath.Join(out, "checkpoints"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			continue // a temporary directory left by the kill is not a checkpoint
		}
		if _, err := os.Stat(filepath.Join(out, "checkpoints", e.Name(), "state.json")); err != nil {
			t.Errorf("checkpoint %s is incomplete", e.Name())
		}
	}
}

func TestResumeRefusesAnotherConfig(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 1)
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	cfg.Steps = 2
	cfg.Learner.LR *= 10
	_, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true})
	if err == nil || !strings.Contains(err.Error(), "other settings") || !strings.Contains(err.Error(), "learner.lr") {
		t.Fatalf("resume with another lr: %v", err)
	}
}

// A checkpoint resumes under a later rlif whose configuration has more keys: it records its
// settings, and a key it lacks counts only when set away from its default. Checkpoints of
// the builds that recorded only a hash resume when the settings are those of the run's
// config.toml, and are refused, naming the key, when they are not.
func TestResumeAcrossVersions(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(st map[string]any)
		change func(c *config.Run)
		want   string // "" resumes; else a part of the error
	}{
		{"same settings", func(map[string]any) {}, nil, ""},
		{"a key added since, at its default", func(st map[string]any) { delete(st["settings"].(map[string]any), "learner.precision") }, nil, ""},
		{"a key added since, set", func(st map[string]any) { delete(st["settings"].(map[string]any), "learner.beta") },
			func(c *config.Run) { c.Learner.Beta = 0.5 }, "learner.beta = 0.5 now, unset in the checkpoint"},
		{"a key removed since, set", func(st map[string]any) { st["settings"].(map[string]any)["learner.retired"] = "3" }, nil,
			"learner.retired = 3 in the checkpoint, unset now"},
		{"another lr", func(map[string]any) {}, func(c *config.Run) { c.Learner.LR *= 10 }, "learner.lr = 0.001 in the checkpoint, 0.01 now"},
		{"hash only, same settings as config.toml", func(st map[string]any) { delete(st, "settings"); st["config_hash"] = "0123" }, nil, ""},
		{"hash only, another lr", func(st map[string]any) { delete(st, "settings"); st["config_hash"] = "0123" },
			func(c *config.Run) { c.Learner.LR *= 10 }, "learner.lr = 0.001 in the checkpoint, 0.01 now"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			cfg := storiesRun(t, out, 1)
			cfg.Learner.Schedule = "constant" // so that the resume may add a step
			if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
				t.Fatal(err)
			}
			ck := filepath.Join(out, "checkpoints", "step-1")
			var st map[string]any
			b, err := os.ReadFile(filepath.Join(ck, "state.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatal(err)
			}
			if _, ok := st["settings"].(map[string]any)["learner.lr"]; !ok {
				t.Fatalf("state.json records no learner.lr: %s", b)
			}
			tc.edit(st)
			b, _ = json.Marshal(st)
			os.WriteFile(filepath.Join(ck, "state.json"), b, 0o644)
			os.Remove(filepath.Join(ck, manifestFile))
			man, err := hashTree(ck) // the manifest covers state.json
			if err != nil {
				t.Fatal(err)
			}
			b, _ = json.Marshal(man)
			os.WriteFile(filepath.Join(ck, manifestFile), b, 0o644)

			cfg.Steps = 2
			if tc.change != nil {
				tc.change(&cfg)
			}
			var progress strings.Builder
			_, err = Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true, Progress: &progress})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("resume: %v", err)
			case tc.want == "" && !strings.Contains(progress.String(), "resuming from"):
				t.Fatalf("did not resume:\n%s", progress.String())
			case tc.want == "" && strings.HasPrefix(tc.name, "hash only") && !strings.Contains(progress.String(), "older rlif"):
				t.Fatalf("resumed a hash-only checkpoint without saying so:\n%s", progress.String())
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("resume: %v; want an error with %q", err, tc.want)
			}
		})
	}
}

// stopAfter closes stop when the progress line of step k appears.
type stopAfter struct {
	k    int
	stop chan struct{}
	done bool
	strings.Builder
}

func (w *stopAfter) Write(p []byte) (int, error) {
	if !w.done && strings.Contains(string(p), fmt.Sprintf("step %d/", w.k)) {
		close(w.stop)
		w.done = true
	}
	return w.Builder.Write(p)
}

// A stop request (the first Ctrl-C) during step 2 ends the run within its sampling (the
// sampler stops between tokens, not after the phase) with a checkpoint of the last
// complete step, from which the run resumes.
func TestStopWritesCheckpoint(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 3)
	cfg.Output.CheckpointEvery = 0 // only the stop itself can write the checkpoint
	w := &stopAfter{k: 1, stop: make(chan struct{})}
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Stop: w.stop, Progress: w})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped || res.Steps != 1 || !strings.Contains(w.String(), "step 2: sampling interrupted by the stop request") {
		t.Fatalf("result %+v\n%s", res, w.String())
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints", "step-1", "state.json")); err != nil {
		t.Fatal(err)
	}
	res, err = Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true})
	if err != nil || res.Steps != 3 || res.Final == "" {
		t.Fatalf("resume: %+v %v", res, err)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != 3 {
		t.Fatalf("%d metric lines", n)
	}
}

// Step 1 samples from the learner's weights exported at sync.precision, the same kind of
// file every later step samples from after its sync, not from the source model (whose
// precision differs: f32 here); auto is the sampler's fastest precision on this machine.
func TestStepOneSamplesSyncedWeights(t *testing.T) {
	for _, tc := range []struct{ precision, fileType string }{
		{"q8_0", "Q8_0"},
		{"auto", strings.ToUpper(sampler.FastestPrecision(0))},
	} {
		t.Run(tc.precision, func(t *testing.T) {
			out := t.TempDir()
			cfg := storiesRun(t, out, 2)
			cfg.Sync.Precision = tc.precision
			r, ctx := inProcessRun(t, cfg)
			src, err := sampler.Load(cfg.Model, sampler.Options{Threads: 1, ContextSize: 64, MaxSequences: 1})
			if err != nil {
				t.Fatal(err)
			}
			srcDesc := src.Info().Description
			src.Close()

			first := r.smp.Info()
			if _, err := r.step(ctx, 1); err != nil {
				t.Fatal(err)
			}
			later := r.smp.Info()
			synced := filepath.Join(out, "sync", "policy.gguf")
			if first.Path != synced || later.Path != synced {
				t.Fatalf("step 1 samples from %s, step 2 from %s; want both %s", first.Path, later.Path, synced)
			}
			if first.Description != later.Description || !strings.Contains(first.Description, tc.fileType) || first.Description == srcDesc {
				t.Fatalf("step 1 samples from a %q model, step 2 from %q (source %q); want both %s", first.Description, later.Description, srcDesc, tc.fileType)
			}
		})
	}
}

// waitForMetricsLines waits, up to 3 minutes, until the run in out has logged n lines of
// metrics.jsonl; past that it kills cmd and fails the test.
func waitForMetricsLines(t *testing.T, cmd *exec.Cmd, out string, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if ms, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl")); strings.Count(string(ms), "\n") >= n {
			return
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the run did not log %d metrics lines in 3 minutes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// An update that blows the weights up (lr = 1e30) is reported as a diverged training
// where it shows (the next step's sampling gives NaN), not as a reward's non-finite
// statistics, and its state is not checkpointed as if it could be resumed.
func TestDivergedUpdateIsNamed(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 3)
	cfg.Learner.LR = 1e30
	cfg.Learner.WarmupRatio = 0
	cfg.Learner.MaxGradNorm = 0
	cfg.Output.CheckpointEvery = 0
	_, err := Run(context.Background(), cfg, Options{Executable: rlifBin})
	if err == nil || !strings.Contains(err.Error(), "the training diverged") || !strings.Contains(err.Error(), "lower learner.lr") || strings.Contains(err.Error(), "--resume") {
		t.Fatalf("run with lr = 1e30: %v", err)
	}
	if steps, _ := checkpointSteps(out); len(steps) > 0 {
		t.Fatalf("checkpoints %v of a diverged run", steps)
	}
}

// An error after a step's update and sync (here: completions.jsonl cannot be written)
// keeps that complete step: its metrics are written and its checkpoint taken, and the
// error says so, instead of "the learner failed within its update".
func TestErrorAfterCompleteStepKeepsCheckpoint(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	r, ctx := inProcessRun(t, cfg)
	r.complets.Close() // the write after the step fails
	pos := r.order.Pos
	st, err := r.step(ctx, 1)
	if err == nil {
		t.Fatal("the step wrote its completions to a closed file")
	}
	dir, err := r.afterError(1, pos, st, err)
	if dir == "" || !strings.Contains(err.Error(), "the state after step 1 is checkpointed") {
		t.Fatalf("afterError: dir %q, %v", dir, err)
	}
	if _, err := readCheckpoint(dir); err != nil {
		t.Fatalf("checkpoint %s: %v", dir, err)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != 1 {
		t.Fatalf("%d metrics lines, want the complete step's", n)
	}
}
