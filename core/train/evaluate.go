package train

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/policy/sampler"
)

// loadEval reads the held-out set of [eval], when evaluation is on, with the loader and
// the gold-answer rule of rlif eval (eval.LoadItems), and checks output.keep_best against
// the keys an evaluation writes.
func (r *run) loadEval() error {
	e := r.cfg.Eval
	if e.Every == 0 {
		return nil
	}
	path, err := data.Resolve(e.Data)
	if err != nil {
		return fmt.Errorf("eval.data: %w", err)
	}
	items, err := eval.LoadItems(path, eval.DataOptions{PromptField: r.cfg.Data.PromptField, AnswerField: r.cfg.Data.AnswerField, Limit: e.Limit, Unlabeled: e.Unlabeled})
	if err != nil {
		return fmt.Errorf("eval.data: %w", err)
	}
	r.evalPath, r.evalItems = path, items
	if k := r.cfg.Output.KeepBest; k != "" && k != config.KeepBestLabelFree {
		keys := evalKeys(r.evalN(), !e.Unlabeled)
		if _, ok := keys[k]; !ok {
			return fmt.Errorf("output.keep_best = %q: not a metric the evaluation writes (%s)", k, strings.Join(sortedKeys(keys), ", "))
		}
	}
	return nil
}

func (r *run) evalN() int { return max(1, r.cfg.Eval.N) }

// evalDue reports whether step ends with an evaluation: every eval.every steps and at
// the last step, so that the final weights are measured too.
func (r *run) evalDue(step int) bool {
	e := r.cfg.Eval.Every
	return e > 0 && (step%e == 0 || step == r.steps)
}

// evaluate samples the held-out set with the sampler's current weights and returns its
// metrics under their metrics.jsonl keys. Every evaluation uses the same seed, so that
// two steps' results differ by the weights only.
func (r *run) evaluate(ctx context.Context, step int) (map[string]float64, error) {
	e, s := r.cfg.Eval, r.cfg.Sampling
	t0 := time.Now()
	reqs := make([]sampler.Request, len(r.evalItems))
	for i, it := range r.evalItems {
		reqs[i] = r.requestFor(it.Prompt)
	}
	maxTokens := e.MaxTokens
	if maxTokens == 0 {
		maxTokens = s.MaxTokens
	}
	p := sampler.Params{MaxTokens: maxTokens, Temperature: e.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP, Stop: s.Stop, Seed: r.cfg.Seed}
	// The evaluation of a held-out set takes minutes (the base model's before step 1 too):
	// the live line shows its completions and tokens/s, as rlif eval's does.
	r.live.evaluating(step)
	p.Progress = r.live.sampling
	groups, err := r.smp.Sample(ctx, reqs, r.evalN(), p)
	if step == 0 {
		r.live.endStep()
	}
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", r.evalPath, err)
	}
	recs, err := eval.Score(r.evalItems, groups)
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", r.evalPath, err)
	}
	sum, err := eval.Summarize(recs, r.evalN())
	if err != nil {
		return nil, fmt.Errorf("eval %s: %w", r.evalPath, err)
	}
	wall := time.Since(t0)
	sum.Label, sum.Model, sum.Unlabeled = evalLabel(step), r.cfg.Model, e.Unlabeled
	sum.Data, sum.DataName = r.evalPath, eval.Label(r.evalPath)
	sum.Settings = eval.Settings{System: reqs[0].System, Raw: r.cfg.Data.Raw, MaxTokens: maxTokens, N: r.evalN(),
		Temperature: e.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP, Seed: r.cfg.Seed}
	sum.Threads, sum.WallSeconds = r.smp.Options().Threads, wall.Seconds()
	sum.TokensPerSecond, sum.Started = float64(sum.Tokens)/wall.Seconds(), t0.UTC().Format(time.RFC3339)
	// The records and summary as rlif eval writes them, so that `rlif eval --compare`
	// and the calibration plot work on every evaluated step.
	if err := eval.WriteDir(EvalDir(r.out, step), &eval.Result{Summary: sum, Records: recs}); err != nil {
		return nil, fmt.Errorf("eval step %d: %w", step, err)
	}
	out := evalMetrics(sum, r.evalN(), !e.Unlabeled)
	out["time/eval"] = wall.Seconds()
	accuracy := fmt.Sprintf("accuracy %.3f (%d/%d)", sum.Accuracy, sum.Correct, sum.Completions)
	if e.Unlabeled {
		accuracy = fmt.Sprintf("%d completions, no labels · echo %.3f", sum.Completions, sum.Echo)
	}
	fmt.Fprintf(r.progress, "eval after step %d: %s · extractable %.3f · len %.0f · self-certainty %.3f · %.1fs\n",
		step, accuracy, sum.Extractable, sum.MeanLength, sum.MeanSelfCertainty, out["time/eval"])
	return out, nil
}

// evalMetrics are an evaluation's summary under the eval/ keys of metrics.jsonl. The
// calibration keys (Mann–Whitney of correct against incorrect self-certainty) are
// present only when both classes have a completion; pass@k and maj@n only with n > 1;
// none of those, nor the accuracy, without labels.
func evalMetrics(s eval.Summary, n int, labeled bool) map[string]float64 {
	out := map[string]float64{
		EvalExtractableKey:    s.Extractable,
		"eval/boxed":          s.Boxed,
		EvalEchoKey:           s.Echo,
		"eval/truncated":      s.Truncated,
		"eval/length":         s.MeanLength,
		"eval/self_certainty": s.MeanSelfCertainty,
		"eval/items":          float64(s.Items),
	}
	if !labeled {
		return out
	}
	out["eval/accuracy"] = s.Accuracy
	out["eval/accuracy_ci_low"], out["eval/accuracy_ci_high"] = s.AccuracyLow, s.AccuracyHigh
	c := s.Calibration
	if c.MeanCorrect != nil {
		out["eval/calibration/self_certainty_correct"] = *c.MeanCorrect
	}
	if c.MeanIncorrect != nil {
		out["eval/calibration/self_certainty_incorrect"] = *c.MeanIncorrect
	}
	if t := c.Test; t != nil {
		out["eval/calibration/mann_whitney_r"] = t.R
		out["eval/calibration/mann_whitney_p"] = t.P
		out["eval/calibration/auc"] = t.AUC
	}
	for k, v := range s.PassAtK {
		out["eval/pass@"+k] = v
	}
	if s.MajAtK != nil {
		out["eval/maj@"+strconv.Itoa(n)] = *s.MajAtK
	}
	return out
}

// evalKeys are every key an evaluation with n samples per item writes when both its
// calibration classes have completions: those of the summary of n+1 records, the first
// correct and the others not, for checking output.keep_best.
func evalKeys(n int, labeled bool) map[string]bool {
	recs := make([]eval.Record, n+1)
	recs[0].Correct = true
	if n > 1 {
		recs = recs[:n] // one item: pass@k and maj@n
	}
	s, err := eval.Summarize(recs, n)
	if err != nil {
		return nil // not reached: len(recs) is a multiple of n
	}
	keys := map[string]bool{}
	for k := range evalMetrics(s, n, labeled) {
		keys[k] = true
	}
	return keys
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// evalBase evaluates the base model, before any update, as the metrics line of step 0
// (step and the eval keys only), when a new run evaluates; it can be the best
// checkpoint too. A resumed run keeps the line it wrote.
func (r *run) evalBase(ctx context.Context) error {
	if r.cfg.Eval.Every == 0 || r.start > 0 {
		return nil
	}
	ev, err := r.evaluate(ctx, 0)
	if err != nil {
		return fmt.Errorf("step 0: %w", err)
	}
	line := map[string]float64{"step": 0}
	for k, v := range ev {
		line[k] = orZero(v)
	}
	if err := r.writeMetricsLine(line); err != nil {
		return err
	}
	r.health.Add(healthPoint(0, 0, 0, ev)) // the echo guard's reference
	return r.keepBest(0, ev)
}

// evalStep evaluates the weights after step (synced into the sampler) when it is due,
// into m.Eval, and keeps the best checkpoint.
func (r *run) evalStep(ctx context.Context, step int, m *Metrics) error {
	if !r.evalDue(step) {
		return nil
	}
	ev, err := r.evaluate(ctx, step)
	if err != nil {
		return err
	}
	m.Eval = ev
	return r.keepBest(step, ev)
}

// EvalDir is where a run keeps its evaluation after step (step 0: the base model), as
// rlif eval writes one.
func EvalDir(runDir string, step int) string { return filepath.Join(runDir, "eval", evalLabel(step)) }

func evalLabel(step int) string { return fmt.Sprintf("step-%d", step) }
