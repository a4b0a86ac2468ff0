package train

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/health"
)

// With a rule that calls any fall below the start a collapse (start and window of one
// step, all fractions 1), a run with stop_on_collapse stops at the first step whose
// metrics line says collapsed, with its checkpoint and no final model, and
// keep_best = "label_free" holds the step before it: every earlier step had both
// ratios at or above 1, so was healthy, and every step is a candidate.
func TestStopOnCollapseKeepsLastHealthy(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 8)
	cfg.Output.KeepBest = config.KeepBestLabelFree
	cfg.Output.StopOnCollapse = true
	cfg.Output.Health = health.Rule{Window: 1, Start: 1, HealthyLength: 1, HealthyEntropy: 1, CollapseLength: 1, CollapseEntropy: 1}
	var progress strings.Builder
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	first := 0
	for _, m := range ms {
		if _, ok := m["health/collapsed"]; !ok {
			t.Fatalf("step %v: no health metrics: %v", m["step"], m)
		}
		if m["health/collapsed"] == 1 && first == 0 {
			first = int(m["step"])
		}
	}
	if first == 0 {
		t.Fatalf("no step collapsed under a rule that calls any fall a collapse (8 steps); metrics: %v", ms)
	}
	if res.Collapsed != first || res.Steps != first || len(ms) != first || res.Final != "" {
		t.Fatalf("result %+v, %d metrics lines; want a stop at the first collapsed step %d without a final model", res, len(ms), first)
	}
	if _, err := os.Stat(filepath.Join(out, "final")); !os.IsNotExist(err) {
		t.Errorf("final/ written for a collapsed run (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints", fmt.Sprintf("step-%d", first), "state.json")); err != nil {
		t.Errorf("no checkpoint of the collapsed step: %v", err)
	}
	if !strings.Contains(progress.String(), "collapsed by the label-free health rule") {
		t.Errorf("progress does not say the run collapsed:\n%s", progress.String())
	}
	if st := readBest(t, out); st.Step != first-1 || st.Metric != config.KeepBestLabelFree || res.Best != first-1 {
		t.Errorf("best %+v (result best %d), want step %d by %s", st, res.Best, first-1, config.KeepBestLabelFree)
	}
}

// keep_best = "label_free" needs no evaluation; a threshold out of range is named.
func TestLabelFreeConfig(t *testing.T) {
	cfg := storiesRun(t, t.TempDir(), 2)
	cfg.Output.KeepBest = config.KeepBestLabelFree
	if err := cfg.Validate(); err != nil {
		t.Fatalf("label_free without [eval]: %v", err)
	}
	cfg.Output.Health = health.Default
	cfg.Output.Health.CollapseEntropy = 2
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "output.health.collapse_entropy") {
		t.Fatalf("collapse_entropy = 2: %v", err)
	}
}

// A run that evaluates hands the echo guard the base model's evaluation (evalBase) and
// each evaluated step's (judge); a resumed run reads both back from metrics.jsonl
// (HealthPoints) and reaches the same verdicts.
func TestJudgeReadsHeldOutEcho(t *testing.T) {
	rule := health.Default
	rule.Window, rule.Start = 1, 1 // each step against step 1
	base := map[string]float64{EvalEchoKey: 0.1, EvalExtractableKey: 0.9}
	steps := []*Metrics{
		{Step: 1, LengthMean: 100, EntropyMean: 1},
		{Step: 2, LengthMean: 90, EntropyMean: 0.9, Eval: map[string]float64{EvalEchoKey: 0.2, EvalExtractableKey: 1}},
		{Step: 3, LengthMean: 30, EntropyMean: 0.05},
		{Step: 4, LengthMean: 30, EntropyMean: 0.05, Eval: map[string]float64{EvalEchoKey: 0.35, EvalExtractableKey: 1}},
	}
	var progress strings.Builder
	cfg := config.Default()
	cfg.Output.Health = rule
	r := &run{cfg: cfg, health: health.NewTracker(rule), progress: &progress}
	r.health.Add(healthPoint(0, 0, 0, base))
	lines := []map[string]float64{{"step": 0, EvalEchoKey: 0.1, EvalExtractableKey: 0.9}}
	var first []int
	for _, m := range steps {
		if r.judge(m) {
			first = append(first, m.Step)
			r.sayCollapsed(m)
		}
		l := m.Map()
		lines = append(lines, l)
	}
	want := []struct {
		byEcho, healthy, collapsed bool
	}{{false, false, false}, {true, true, false}, {false, false, false}, {true, false, true}}
	for i, m := range steps {
		v := m.Health
		if v.ByEcho != want[i].byEcho || v.Healthy != want[i].healthy || v.Collapsed != want[i].collapsed {
			t.Errorf("step %d: %+v, want %+v", m.Step, *v, want[i])
		}
	}
	// Step 3's entropy fell to a twentieth of its start: the entropy rule alone would
	// have called it collapsed; the guard waits for the evaluation at step 4.
	if len(first) != 1 || first[0] != 4 || r.collapsedAt != 4 {
		t.Errorf("first collapse at %v (collapsedAt %d), want step 4", first, r.collapsedAt)
	}
	if !strings.Contains(progress.String(), "25% more of its held-out answers restate a number of the question") {
		t.Errorf("progress: %q", progress.String())
	}
	entropyOnly := rule
	entropyOnly.EchoRise = 0
	if v := health.Judge(entropyOnly, HealthPoints(lines)); !v[3].Collapsed {
		t.Errorf("step 3 by the entropy rule alone: %+v, want collapsed", v[3])
	}
	replayed := health.Judge(rule, HealthPoints(lines))
	for i, m := range steps {
		if got := replayed[i+1]; got != *m.Health {
			t.Errorf("step %d replayed as %+v, judged as %+v", m.Step, got, *m.Health)
		}
	}
}
