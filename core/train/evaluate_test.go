package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
)

func TestBetter(t *testing.T) {
	best := &bestState{Value: 1}
	for _, tc := range []struct {
		v    float64
		best *bestState
		mode string
		want bool
	}{
		{0, nil, "max", true}, {0, nil, "min", true},
		{2, best, "max", true}, {1, best, "max", false}, {0.5, best, "max", false},
		{0.5, best, "min", true}, {1, best, "min", false}, {2, best, "min", false},
	} {
		if got := better(tc.v, tc.best, tc.mode); got != tc.want {
			t.Errorf("better(%v, %+v, %s) = %v, want %v", tc.v, tc.best, tc.mode, got, tc.want)
		}
	}
}

// TestEvalDuringTraining runs the stories model with an evaluation every 2 of 3 steps and
// checks the bookkeeping: step 0 (the base model) has its own line, the eval keys are at
// steps 0, 2 and 3 (the last) and only there, the diagnostics are in every step's line,
// and checkpoints/best holds the step whose eval/self_certainty was best: lowest, and
// highest (on the stories model it moves with every update, the one eval metric there
// that does: it answers nothing right and always runs to max_tokens).
func TestEvalDuringTraining(t *testing.T) {
	for _, mode := range []string{"min", "max"} {
		t.Run(mode, func(t *testing.T) { testEvalDuringTraining(t, mode) })
	}
}

func testEvalDuringTraining(t *testing.T, mode string) {
	out := t.TempDir()
	held := filepath.Join(t.TempDir(), "held-out.jsonl")
	var rows []string
	for i, p := range []string{"Once upon a time", "The little dog", "Tom had 3 apples and"} {
		rows = append(rows, fmt.Sprintf(`{"prompt": %q, "answer": "%d"}`, p, i+2))
	}
	if err := os.WriteFile(held, []byte(strings.Join(rows, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := storiesRun(t, out, 3)
	cfg.Eval.Data, cfg.Eval.Every, cfg.Eval.MaxTokens = held, 2, 16
	cfg.Output.KeepBest, cfg.Output.KeepBestMode = "eval/self_certainty", mode
	var progress strings.Builder
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: &progress}); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 4 {
		t.Fatalf("%d metric lines, want 4 (step 0 and 3 steps)\n%s", len(ms), progress.String())
	}
	evalKeys := []string{"eval/accuracy", "eval/extractable", "eval/length", "eval/self_certainty", "eval/truncated", "eval/items", "time/eval"}
	bestStep, bestValue := -1, math.NaN()
	for i, m := range ms {
		step := int(m["step"])
		if step != i {
			t.Fatalf("line %d is step %d", i+1, step)
		}
		evaluated := step == 0 || step == 2 || step == 3
		for _, k := range evalKeys {
			if _, ok := m[k]; ok != evaluated {
				t.Errorf("step %d: %s present %v, want %v", step, k, ok, evaluated)
			}
		}
		if evaluated {
			if m["eval/items"] != 3 || m["eval/length"] <= 0 || m["eval/length"] > 16 {
				t.Errorf("step %d: eval over %v items, mean length %v (max_tokens 16)", step, m["eval/items"], m["eval/length"])
			}
			// rlif eval's files of the evaluation, which `rlif eval --model OUT/eval` compares.
			sum, err := eval.ReadSummary(filepath.Join(out, "eval", fmt.Sprintf("step-%d", step)))
			if err != nil || sum.Items != 3 || sum.MeanSelfCertainty != m["eval/self_certainty"] || sum.Settings.MaxTokens != 16 {
				t.Errorf("step %d: eval/step-%d/summary.json %+v (%v)", step, step, sum, err)
			}
			if v := m["eval/self_certainty"]; bestStep < 0 || mode == "min" && v < bestValue || mode == "max" && v > bestValue {
				bestStep, bestValue = step, v
			}
		}
		if step == 0 {
			for k := range m {
				if k != "step" && k != "time/eval" && !strings.HasPrefix(k, "eval/") {
					t.Errorf("step 0 holds %s, more than the evaluation", k)
				}
			}
			continue
		}
		// The built-in problems have gold answers: the accuracies are there.
		for _, k := range []string{"reward/self_certainty/zero_spread", "reward/format/zero_spread", "advantage/zero_spread",
			"answer/majority_ratio", "completion/repetition_4gram", "train/accuracy", "train/plurality_accuracy"} {
			v, ok := m[k]
			if !ok || v < 0 || v > 1 {
				t.Errorf("step %d: %s = %v (present %v), want a fraction", step, k, v, ok)
			}
		}
	}
	t.Logf("best eval/self_certainty %v at step %d\n%s", bestValue, bestStep, progress.String())
	link, err := os.Readlink(filepath.Join(out, "checkpoints", "best"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("best-step-%d", bestStep); link != want {
		t.Errorf("checkpoints/best -> %s, want %s (eval/self_certainty %v)", link, want, bestValue)
	}
	st := readBest(t, out)
	if st.Step != bestStep || st.Value != bestValue || st.Metric != "eval/self_certainty" || st.Mode != mode {
		t.Errorf("best.json %+v, want step %d value %v", st, bestStep, bestValue)
	}
	if err := verifyCheckpoint(filepath.Join(out, "checkpoints", "best")); err != nil {
		t.Errorf("best checkpoint: %v", err)
	}
	// Only the best one is kept beside the step checkpoints.
	entries, _ := os.ReadDir(filepath.Join(out, "checkpoints"))
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "best-step-") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d best-step-N directories, want 1", n)
	}
}

// TestEvalRefusesBadInput: a held-out set that cannot be evaluated, or a keep_best
// metric the evaluation does not write, is refused with a one-line error naming it,
// before any model loads and before the run directory is touched.
func TestEvalRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	noAnswer := filepath.Join(dir, "no-answer.jsonl")
	os.WriteFile(noAnswer, []byte(`{"prompt": "a", "answer": "1"}`+"\n"+`{"prompt": "b"}`+"\n"), 0o644)
	for _, tc := range []struct {
		name     string
		data     string
		keepBest string
		want     []string
	}{
		{"no such file", filepath.Join(dir, "none.jsonl"), "", []string{"eval.data", "none.jsonl"}},
		{"no such set", "gsm8k-tset", "", []string{"eval.data", "gsm8k-tset", "gsm8k-test"}},
		{"row without gold", noAnswer, "", []string{"eval.data", "line 2", `"answer"`, "data.answer_field"}},
		{"keep_best typo", writeHeldOut(t, 1), "eval/acuracy", []string{`output.keep_best = "eval/acuracy"`, "eval/accuracy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cfg := storiesRun(t, out, 1)
			cfg.Eval.Data, cfg.Eval.Every = tc.data, 1
			cfg.Output.KeepBest = tc.keepBest
			_, err := Run(context.Background(), cfg, Options{Executable: rlifBin})
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want one line", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("the refused run made %s", out)
			}
		})
	}
}

// writeHeldOut writes a held-out set of n rows with gold answers and returns its path.
func writeHeldOut(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "held-out.jsonl")
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "{\"prompt\": \"Lily had %d cats\", \"answer\": \"%d\"}\n", i+1, i+2)
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A resumed run keeps its step 0 line and the best checkpoint found before its
// checkpoint, and weighs the steps it runs against it.
func TestEvalResume(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 3)
	cfg.Eval.Data, cfg.Eval.Every, cfg.Eval.MaxTokens = writeHeldOut(t, 2), 1, 8
	cfg.Output.KeepBest = "eval/self_certainty"
	w := &stopAfter{k: 2, stop: make(chan struct{})}
	if res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Stop: w.stop, Progress: w}); err != nil || !res.Stopped {
		t.Fatalf("%+v %v\n%s", res, err, w.String())
	}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true}); err != nil {
		t.Fatal(err)
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 4 {
		t.Fatalf("%d metric lines, want 4 (step 0 and 3 steps)", len(ms))
	}
	best := 0
	for i, m := range ms {
		if int(m["step"]) != i {
			t.Fatalf("line %d is step %v", i+1, m["step"])
		}
		if _, ok := m["eval/self_certainty"]; !ok {
			t.Fatalf("step %d has no evaluation", i)
		}
		if m["eval/self_certainty"] > ms[best]["eval/self_certainty"] {
			best = i
		}
	}
	if link, err := os.Readlink(filepath.Join(out, "checkpoints", "best")); err != nil || link != fmt.Sprintf("best-step-%d", best) {
		t.Fatalf("checkpoints/best -> %q (%v), want best-step-%d", link, err, best)
	}
}

// loadBest drops a best checkpoint from after the step a run resumes from (a crash
// before that step's checkpoint: the step is done again) and keeps an earlier one.
func TestLoadBest(t *testing.T) {
	for _, tc := range []struct {
		start  int
		metric string
		kept   bool
	}{
		{3, "eval/accuracy", true},
		{4, "eval/accuracy", true},
		{2, "eval/accuracy", false},
		{4, "eval/length", false}, // another metric: the best is found anew
	} {
		out := t.TempDir()
		root := filepath.Join(out, "checkpoints")
		os.MkdirAll(filepath.Join(root, "best-step-3"), 0o755)
		b, _ := json.Marshal(bestState{Step: 3, Metric: "eval/accuracy", Mode: "max", Value: 0.5})
		os.WriteFile(filepath.Join(root, "best-step-3", bestFile), b, 0o644)
		if err := os.Symlink("best-step-3", filepath.Join(root, "best")); err != nil {
			t.Fatal(err)
		}
		r := &run{out: out, start: tc.start}
		r.cfg.Output.KeepBest = tc.metric
		if err := r.loadBest(); err != nil {
			t.Fatal(err)
		}
		_, err := os.Stat(filepath.Join(root, "best-step-3"))
		_, lerr := os.Lstat(filepath.Join(root, "best"))
		if kept := r.best != nil && r.best.Step == 3 && r.best.Value == 0.5; kept != tc.kept || (err == nil) != tc.kept || (lerr == nil) != tc.kept {
			t.Errorf("start %d, %s: best %+v, directory %v, link %v; want kept %v", tc.start, tc.metric, r.best, err, lerr, tc.kept)
		}
	}
}

// eval.data takes a named set, resolved as [data] does (data.Resolve), with its gold
// answers read by rlif eval's rule (GSM8K's "#### N").
func TestEvalNamedSet(t *testing.T) {
	r := &run{}
	r.cfg.Eval = config.Eval{Data: "gsm8k-test", Every: 1, Limit: 2}
	r.cfg.Data.AnswerField = "answer"
	if err := r.loadEval(); err != nil {
		t.Fatal(err)
	}
	if filepath.Base(r.evalPath) != "gsm8k_test.jsonl" || len(r.evalItems) != 2 {
		t.Fatalf("eval set %s, %d items", r.evalPath, len(r.evalItems))
	}
	for _, it := range r.evalItems {
		if it.Gold == "" || strings.Contains(it.Gold, "#") || it.Prompt == "" {
			t.Errorf("item %+v", it)
		}
	}
}

// With several samples per item the evaluation adds pass@k and maj@n.
func TestEvalSeveralSamples(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 1)
	cfg.Eval = config.Eval{Data: writeHeldOut(t, 2), Every: 1, MaxTokens: 8, N: 3, Temperature: 1}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 2 {
		t.Fatalf("%d metric lines, want 2", len(ms))
	}
	for _, m := range ms {
		for _, k := range []string{"eval/pass@1", "eval/pass@2", "eval/pass@3", "eval/maj@3"} {
			if v, ok := m[k]; !ok || v < 0 || v > 1 {
				t.Errorf("step %v: %s = %v (present %v)", m["step"], k, v, ok)
			}
		}
		if m["eval/items"] != 2 {
			t.Errorf("step %v: %v items", m["step"], m["eval/items"])
		}
	}
}

// readBest reads checkpoints/best/best.json of the run in out.
func readBest(t *testing.T, out string) bestState {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, "checkpoints", "best", bestFile))
	if err != nil {
		t.Fatal(err)
	}
	var st bestState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// eval.unlabeled evaluates prompts that have no answers: the metrics hold what needs no
// labels (the echo share among them) and no accuracy; keep_best cannot name the accuracy.
// The stories model gives no answer to extract, so the echo guard does not judge (it
// needs the base model to answer at least half the prompts) and the entropy rule does.
func TestEvalUnlabeled(t *testing.T) {
	held := filepath.Join(t.TempDir(), "prompts.jsonl")
	if err := os.WriteFile(held, []byte("{\"prompt\": \"Lily had 3 cats\"}\n{\"prompt\": \"Tom saw 12 birds\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	cfg.Eval = config.Eval{Data: held, Every: 1, MaxTokens: 8}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: io.Discard}); err == nil || !strings.Contains(err.Error(), "eval.unlabeled = true") {
		t.Fatalf("prompts without answers, labelled evaluation: %v; want an error naming eval.unlabeled", err)
	}
	cfg.Eval.Unlabeled = true
	cfg.Output.KeepBest = "eval/accuracy"
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: io.Discard}); err == nil || !strings.Contains(err.Error(), `output.keep_best = "eval/accuracy": not a metric the evaluation writes`) {
		t.Fatalf("keep_best eval/accuracy without labels: %v", err)
	}
	cfg.Output.KeepBest = config.KeepBestLabelFree
	var progress strings.Builder
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: &progress}); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 3 {
		t.Fatalf("%d metrics lines, want 3 (step 0 and 2 steps)", len(ms))
	}
	for _, m := range ms {
		if _, ok := m[EvalEchoKey]; !ok {
			t.Errorf("step %v: no %s", m["step"], EvalEchoKey)
		}
		for k := range m {
			if strings.HasPrefix(k, "eval/accuracy") || strings.HasPrefix(k, "eval/calibration") {
				t.Errorf("step %v: %s without labels", m["step"], k)
			}
		}
		if _, ok := m["health/echo_rise"]; ok {
			t.Errorf("step %v: the echo guard judged a base model that gave no answers", m["step"])
		}
	}
	sum, err := eval.ReadSummary(EvalDir(out, 2))
	if err != nil || !sum.Unlabeled {
		t.Errorf("eval/step-2/summary.json: unlabeled %v (%v)", sum.Unlabeled, err)
	}
	var report strings.Builder
	if err := eval.Report(&report, sum); err != nil || !strings.Contains(report.String(), "not measured: the prompts have no gold answers") || strings.Contains(report.String(), "calibration") {
		t.Errorf("report of an unlabeled evaluation (%v):\n%s", err, report.String())
	}
	if !strings.Contains(progress.String(), "no labels · echo") {
		t.Errorf("progress does not say the evaluation has no labels:\n%s", progress.String())
	}
}
