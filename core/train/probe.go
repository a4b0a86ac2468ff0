package train

import (
	"context"
	"fmt"
	"io"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/rewards/answer"
)

// ProbeOptions size the trainability probe.
type ProbeOptions struct {
	// Prompts is how many of the run's first prompts (in its data order) are sampled;
	// 0 means 64.
	Prompts int
	// Progress receives the sampler's progress line; nil shows none.
	Progress io.Writer
}

// Probe is the trainability check before a label-free run: the base model samples one
// group (sampling.group_size completions, the run's settings and seed) for each of the
// run's first prompts, and the summary says whether its self-certainty is higher on
// the completions that agree with their group's plurality answer (Summary.Consistency,
// no labels). Intrinsic rewards sharpen the model's own distribution (arXiv 2603.08660):
// that helps when its confidence tracks correctness, and consensus is the label-free
// stand-in for correctness. Where the rows have gold answers (data.answer_field),
// Summary.Calibration is the same comparison with labels, to check the stand-in.
func Probe(ctx context.Context, cfg config.Run, opt ProbeOptions) (eval.Summary, error) {
	if err := cfg.ResolvePaths("."); err != nil {
		return eval.Summary{}, err
	}
	if err := cfg.Validate(); err != nil {
		return eval.Summary{}, err
	}
	if hf.IsModelDir(cfg.Model) {
		return eval.Summary{}, fmt.Errorf("model %s is a Hugging Face directory: the probe samples a GGUF; convert it first (rlif convert %s --out MODEL.gguf)", cfg.Model, cfg.Model)
	}
	n := opt.Prompts
	if n == 0 {
		n = 64
	}
	if n < 1 {
		return eval.Summary{}, fmt.Errorf("probe: %d prompts: want at least 1", n)
	}
	if cfg.Sampling.GroupSize < 2 {
		return eval.Summary{}, fmt.Errorf("sampling.group_size = %d: the probe compares the completions of a group, so it needs at least 2", cfg.Sampling.GroupSize)
	}
	r := &run{cfg: cfg}
	if err := r.loadData(); err != nil {
		return eval.Summary{}, err
	}
	idx := r.order.Next(min(n, len(r.rows)))
	items := make([]eval.Item, len(idx))
	for i, k := range idx {
		row := r.rows[k]
		items[i] = eval.Item{Index: i, Line: row.Line, Prompt: row.Prompt, Gold: answer.Gold(row.Fields[cfg.Data.AnswerField])}
	}
	s := cfg.Sampling
	ec := eval.Config{
		Settings: eval.Settings{
			System: cfg.Data.SystemPrompt, Raw: cfg.Data.Raw, MaxTokens: s.MaxTokens, N: s.GroupSize,
			Temperature: s.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP, Seed: cfg.Seed,
			Batch: max(eval.DefaultBatch, s.GroupSize),
		},
		Data: cfg.Data.Path, Threads: s.Threads, GPULayers: s.GPULayers, Progress: opt.Progress,
	}
	if ec.Raw {
		ec.System = ""
	}
	res, err := eval.Evaluate(ctx, cfg.Model, items, ec)
	if err != nil {
		return eval.Summary{}, fmt.Errorf("probe: %w", err)
	}
	return res.Summary, nil
}

// ProbeReading is what a probe's summary says about training without labels, in words:
// from the label-free comparison's two-sided Mann–Whitney test at the 5% level, and
// which way its AUC points.
func ProbeReading(s eval.Summary) string {
	c := s.Consistency
	if c == nil || c.Test == nil {
		return "no reading: every completion agreed with its group's plurality answer, or none did (too few prompts, or no answers to compare: try more --prompts)"
	}
	t := c.Test
	switch {
	case t.P < 0.05 && t.AUC > 0.5:
		return fmt.Sprintf("confidence tracks the model's own consensus (AUC %.2f, p %.2g): a self-certainty reward has something right to sharpen; still keep output.keep_best = \"label_free\"", t.AUC, t.P)
	case t.P < 0.05:
		return fmt.Sprintf("confidence runs against the model's own consensus (AUC %.2f, p %.2g): label-free training is likely to sharpen the wrong answers; prefer a reward with labels", t.AUC, t.P)
	default:
		return fmt.Sprintf("no sign that confidence tracks the model's own consensus (AUC %.2f, p %.2g): a label-free run here helps or hurts by chance; set output.keep_best = \"label_free\" and output.stop_on_collapse = true, and check with labels where you can", t.AUC, t.P)
	}
}
