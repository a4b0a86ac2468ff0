package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	b, err := os.ReadFile(filepath.Join(out, "checkpoints", "best", bestFile))
	if err != nil {
		t.Fatal(err)
	}
	var st bestState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
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

// TestKeepBestNamesAnEvalKey refuses a keep_best metric the evaluation does not write,
// before any model loads.
func TestKeepBestNamesAnEvalKey(t *testing.T) {
	held := filepath.Join(t.TempDir(), "held-out.jsonl")
	os.WriteFile(held, []byte(`{"prompt": "a", "answer": "1"}`+"\n"), 0o644)
	cfg := storiesRun(t, t.TempDir(), 1)
	cfg.Eval.Data, cfg.Eval.Every = held, 1
	cfg.Output.KeepBest = "eval/acuracy"
	_, err := Run(context.Background(), cfg, Options{Executable: rlifBin})
	if err == nil || !strings.Contains(err.Error(), `output.keep_best = "eval/acuracy"`) || !strings.Contains(err.Error(), "eval/accuracy") {
		t.Fatalf("error %v, want one naming the key and the choices", err)
	}
}
