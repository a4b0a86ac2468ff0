package train

import (
	"context"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/core/eval/stats"
)

// The probe samples one group per prompt of the run's data, in the run's order, with the
// run's settings: on the stories model and the built-in drills, 4 prompts × G 3.
func TestProbeSamplesTheRunsPrompts(t *testing.T) {
	cfg := storiesRun(t, t.TempDir(), 1)
	s, err := Probe(context.Background(), cfg, ProbeOptions{Prompts: 4})
	if err != nil {
		t.Fatal(err)
	}
	if s.Items != 4 || s.Completions != 12 || s.N != 3 || s.Temperature != cfg.Sampling.Temperature || s.Seed != cfg.Seed {
		t.Fatalf("summary %+v: want 4 items × 3 samples at the run's temperature and seed", s)
	}
	// With several samples per prompt the label-free comparison is always made (its
	// test only when both classes have members).
	if s.Consistency == nil || s.Consistency.Correct+s.Consistency.Incorrect != 12 {
		t.Errorf("consistency %+v: want the 12 completions split into agreeing and not", s.Consistency)
	}
	cfg.Sampling.GroupSize = 1
	if _, err := Probe(context.Background(), cfg, ProbeOptions{}); err == nil || !strings.Contains(err.Error(), "sampling.group_size = 1") {
		t.Errorf("group size 1: %v", err)
	}
}

func TestProbeReading(t *testing.T) {
	with := func(auc, p float64) eval.Summary {
		return eval.Summary{Consistency: &eval.Calibration{Test: &stats.MannWhitney{AUC: auc, P: p}}}
	}
	tests := []struct {
		s    eval.Summary
		want string
	}{
		{with(0.59, 0.02), "confidence tracks the model's own consensus (AUC 0.59"},
		{with(0.44, 0.01), "confidence runs against"},
		{with(0.44, 0.18), "no sign that confidence tracks"},
		{with(0.70, 0.06), "no sign that confidence tracks"},
		{eval.Summary{}, "no reading"},
		{eval.Summary{Consistency: &eval.Calibration{}}, "no reading"},
	}
	for _, tt := range tests {
		if got := ProbeReading(tt.s); !strings.HasPrefix(got, tt.want) {
			t.Errorf("reading %q, want it to start %q", got, tt.want)
		}
	}
}
