package train

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/core/report"
)

// The label-free health rule (core/health) read at every step: its verdict goes into
// the metrics line (health/*), keep_best = "label_free" keeps the latest healthy step,
// and stop_on_collapse ends the run at the first collapsed one.

// HealthPoints are the health rule's inputs in a run's metrics lines (report.ReadMetrics),
// in step order: the base model's evaluation (step 0) where the run made one, then the
// training steps' sampled length and entropy, with their held-out echo and answered
// shares where they evaluated.
func HealthPoints(lines []map[string]float64) []health.Point {
	var out []health.Point
	for _, l := range lines {
		step := int(l["step"])
		if _, trained := l["loss"]; !trained && step != 0 {
			continue
		}
		out = append(out, healthPoint(step, l[keyLengthMean], l[keyEntropyMean], l))
	}
	return out
}

// BackfillEcho adds the held-out echo share to the evaluated lines of a run written
// before rlif logged it, from the evaluation's items (EvalDir), so that the echo guard
// can be replayed on them; a line whose items are gone stays as it is.
func BackfillEcho(runDir string, lines []map[string]float64) error {
	for _, l := range lines {
		_, evaluated := l[EvalExtractableKey]
		if _, ok := l[EvalEchoKey]; ok || !evaluated {
			continue
		}
		recs, err := eval.ReadRecords(EvalDir(runDir, int(l["step"])))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		eval.FillEcho(recs)
		// The share as an evaluation computes it (per completion: n = 1 groups any count).
		s, err := eval.Summarize(recs, 1)
		if err != nil {
			continue // no records: nothing to replay
		}
		l[EvalEchoKey] = s.Echo
	}
	return nil
}

// healthPoint is one step's input to the rule; eval holds the step's eval/ metrics, if
// it evaluated.
func healthPoint(step int, length, entropy float64, eval map[string]float64) health.Point {
	p := health.Point{Step: step, Length: length, Entropy: entropy}
	p.Echo, p.Evaluated = eval[EvalEchoKey]
	p.Answered = eval[EvalExtractableKey]
	return p
}

// startHealth makes the rule's tracker; a resumed run reads its steps so far again
// from metrics.jsonl (already cut back to the checkpoint's step by openLogs).
func (r *run) startHealth() error {
	r.health = health.NewTracker(r.cfg.Output.HealthRule())
	if r.start == 0 {
		return nil
	}
	lines, err := report.ReadMetrics(filepath.Join(r.out, report.MetricsFile))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	for _, p := range HealthPoints(lines) {
		if v := r.health.Add(p); v.Collapsed && r.collapsedAt == 0 {
			r.collapsedAt = v.Step
		}
	}
	return nil
}

// judge reads a finished step with the health rule into m (rank 0, which keeps the
// run's metrics), and says whether the run collapsed at this step for the first time.
func (r *run) judge(m *Metrics) bool {
	v := r.health.Add(healthPoint(m.Step, m.LengthMean, m.EntropyMean, m.Eval))
	m.Health = &v
	if !v.Collapsed || r.collapsedAt != 0 {
		return false
	}
	r.collapsedAt = m.Step
	return true
}

// sayCollapsed tells the user that the run collapsed at step m, and what rlif does.
func (r *run) sayCollapsed(m *Metrics) {
	v, rule := m.Health, r.cfg.Output.HealthRule()
	if v.ByEcho {
		fmt.Fprintf(r.progress, "step %d: the run has collapsed by the label-free health rule: %.0f%% more of its held-out answers restate a number of the question than the base model's (collapse at %.0f%%); %s\n",
			m.Step, 100*v.EchoRise, 100*rule.EchoRise, r.collapseAdvice())
		return
	}
	fmt.Fprintf(r.progress, "step %d: the run has collapsed by the label-free health rule: sampled length %.2f and entropy %.2f of their start (collapse below %.2g or %.2g); %s\n",
		m.Step, v.LengthRatio, v.EntropyRatio, rule.CollapseLength, rule.CollapseEntropy, r.collapseAdvice())
}

func (r *run) collapseAdvice() string {
	o := r.cfg.Output
	switch {
	case o.StopOnCollapse:
		return "stopping (output.stop_on_collapse)"
	case o.KeepBest == config.KeepBestLabelFree:
		return "training goes on, but checkpoints/best keeps the last healthy step; output.stop_on_collapse = true stops here"
	default:
		return `output.keep_best = "label_free" keeps the last healthy step, output.stop_on_collapse = true stops here`
	}
}

// collapseStop says whether the run stops after step m for collapse; in a job every rank
// asks at the same point and rank 0's verdict decides.
func (r *run) collapseStop(m *Metrics) (bool, error) {
	if !r.cfg.Output.StopOnCollapse {
		return false, nil
	}
	return r.job.any(r.lead() && m.Health != nil && m.Health.Collapsed)
}

// labelFreeCandidate says whether keep_best = "label_free" considers the state after
// step: the steps that evaluate or write a checkpoint by count, and the last.
func (r *run) labelFreeCandidate(step int) bool {
	o := r.cfg.Output
	return o.KeepBest == config.KeepBestLabelFree &&
		(r.evalDue(step) || (o.CheckpointEvery > 0 && step%o.CheckpointEvery == 0) || step == r.steps)
}

// keepLabelFree keeps the state after step as the best checkpoint when the rule calls
// it healthy and the run has not collapsed; the base model (step 0, no verdict) is the
// first candidate of a new run.
func (r *run) keepLabelFree(step int, v *health.Verdict) error {
	if r.cfg.Output.KeepBest != config.KeepBestLabelFree || r.collapsedAt != 0 {
		return nil
	}
	st := bestState{Step: step, Metric: config.KeepBestLabelFree, Mode: r.bestMode(), Value: 1}
	why := "label-free pick: the base model"
	if v != nil {
		if !v.Healthy {
			return nil
		}
		st.Value = min(v.LengthRatio, v.EntropyRatio)
		st.LengthRatio, st.EntropyRatio = v.LengthRatio, v.EntropyRatio
		why = fmt.Sprintf("label-free pick: a healthy step (sampled length %.2f, entropy %.2f of their start)", st.LengthRatio, st.EntropyRatio)
		if v.ByEcho {
			st.Value, st.EchoRise = -v.EchoRise, v.EchoRise
			why = fmt.Sprintf("label-free pick: a healthy step (held-out echo share %+.2f from the base's)", v.EchoRise)
		}
	}
	return r.saveBest(st, why)
}
