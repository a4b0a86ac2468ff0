// Package train is the GRPO / Intuitor loop: sample groups with the sampler, score them
// with the reward plugins, turn scores into advantages, take learner steps, and sync the
// new weights back into the sampler; with metrics, completions, checkpoints and resume.
package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
	"github.com/rlif/rlif/rewards"
)

// Options are the parts of a run that are not its configuration.
type Options struct {
	// Executable is the rlif binary that serves the built-in rewards out of process
	// (`rlif plugin serve NAME`); empty means this process's own executable.
	Executable string
	// ConfigDir resolves relative plugin paths; empty means the working directory.
	ConfigDir string
	// Resume continues from the newest complete checkpoint in the run directory.
	Resume bool
	// Stop, when closed, ends the run after the current phase with a checkpoint.
	Stop <-chan struct{}
	// Progress receives one line per step (and start-up messages); nil discards them.
	Progress io.Writer
}

// Result summarizes a finished (or stopped) run.
type Result struct {
	Steps     int    // steps completed, in total
	Stopped   bool   // ended early by Options.Stop
	Final     string // path of the final GGUF, when the run completed
	LastCheck string // the newest checkpoint directory
}

// run holds everything a training run owns.
type run struct {
	cfg      config.Run
	opt      Options
	out      string
	rows     []data.Row
	order    *data.Order
	steps    int
	smp      *sampler.Model
	offline  *sampler.Model
	lrn      *learner.Model
	tr       *learner.Trainer
	plugins  *host.Set
	rewards  []rewards.Func
	metrics  *os.File
	complets *os.File
	hash     string
	progress io.Writer
}

// Run trains according to cfg. It validates everything cheap before loading models.
func Run(ctx context.Context, cfg config.Run, opt Options) (res Result, err error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, opt: opt, out: cfg.Out, progress: opt.Progress}
	if r.progress == nil {
		r.progress = io.Discard
	}
	defer r.close()
	if r.hash, err = cfg.Hash(); err != nil {
		return Result{}, err
	}
	if err := r.loadData(); err != nil {
		return Result{}, err
	}
	if err := sampler.CheckGGUF(cfg.Model); err != nil {
		return Result{}, err
	}
	if err := r.prepareOut(); err != nil {
		return Result{}, err
	}
	start := 0
	var ck *checkpointState
	if opt.Resume {
		if ck, err = latestCheckpoint(r.out); err != nil {
			return Result{}, err
		}
		if ck != nil {
			if ck.ConfigHash != r.hash {
				return Result{}, fmt.Errorf("resume %s: checkpoint %s was made with another configuration (hash %.12s, now %.12s); resume with the run's own config.toml or start a new --out", r.out, ck.dir, ck.ConfigHash, r.hash)
			}
			start = ck.Step
			r.order.Seek(ck.Data)
			fmt.Fprintf(r.progress, "resuming from %s (step %d)\n", ck.dir, ck.Step)
		}
	}
	if err := r.startRewards(ctx); err != nil {
		return Result{}, err
	}
	if err := r.loadModels(ck); err != nil {
		return Result{}, err
	}
	if err := r.openLogs(start); err != nil {
		return Result{}, err
	}

	res.Steps = start
	began := time.Now()
	for step := start + 1; step <= r.steps; step++ {
		m, stopped, err := r.step(ctx, step)
		if err != nil {
			return res, fmt.Errorf("step %d: %w", step, err)
		}
		if m != nil {
			res.Steps = step
			if err := r.writeMetrics(m); err != nil {
				return res, err
			}
			fmt.Fprintln(r.progress, progressLine(m, r.steps, start, began))
		}
		last := step == r.steps
		every := r.cfg.Output.CheckpointEvery
		if m != nil && (stopped || last || (every > 0 && step%every == 0)) {
			if res.LastCheck, err = r.checkpoint(step); err != nil {
				return res, err
			}
		}
		if stopped {
			if m == nil && step > start+1 {
				// The interrupted step left no trace: the newest checkpoint is the last complete one.
				if res.LastCheck, err = r.checkpoint(step - 1); err != nil {
					return res, err
				}
			}
			res.Stopped = true
			fmt.Fprintf(r.progress, "stopped after step %d; resume with --resume %s\n", res.Steps, r.out)
			return res, nil
		}
	}
	if res.Final, err = r.writeFinal(); err != nil {
		return res, err
	}
	return res, nil
}

func (r *run) stopRequested() bool {
	if r.opt.Stop == nil {
		return false
	}
	select {
	case <-r.opt.Stop:
		return true
	default:
		return false
	}
}

func (r *run) loadData() error {
	d := r.cfg.Data
	if d.Path == "" {
		r.rows = data.Arithmetic(d.BuiltinSize, r.cfg.Seed)
	} else {
		rows, err := data.Load(d.Path, d.PromptField)
		if err != nil {
			return err
		}
		r.rows = rows
	}
	if d.Limit > 0 && d.Limit < len(r.rows) {
		r.rows = r.rows[:d.Limit]
	}
	for _, s := range r.cfg.Rewards {
		if s.Name == "accuracy" && s.IsBuiltin() {
			field := d.AnswerField
			if f, ok := s.Args["field"].(string); ok && f != "" {
				field = f
			}
			src := d.Path
			if src == "" {
				src = "(built-in)"
			}
			if err := data.CheckField(r.rows, field, src); err != nil {
				return fmt.Errorf("reward accuracy: %w", err)
			}
		}
	}
	r.order = data.NewOrder(len(r.rows), r.cfg.Seed, d.Shuffle)
	r.steps = r.cfg.Steps
	if r.steps == 0 {
		r.steps = data.StepsFor(len(r.rows), r.cfg.Sampling.PromptsPerStep, d.Epochs)
	}
	return nil
}

func (r *run) prepareOut() error {
	if err := os.MkdirAll(filepath.Join(r.out, "checkpoints"), 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	b, err := r.cfg.Encode()
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(r.out, "config.toml"), b)
}

func (r *run) startRewards(ctx context.Context) error {
	cfgs := make([]host.Config, len(r.cfg.Rewards))
	for i, s := range r.cfg.Rewards {
		c, err := host.SpecConfig(s, r.opt.Executable, r.opt.ConfigDir)
		if err != nil {
			return err
		}
		c.Timeout = time.Duration(r.cfg.Plugins.TimeoutSeconds * float64(time.Second))
		c.Retries = r.cfg.Plugins.Restarts
		if c.Retries == 0 {
			c.Retries = -1
		}
		cfgs[i] = c
	}
	set, err := host.StartAll(ctx, cfgs)
	if err != nil {
		return err
	}
	r.plugins = set
	for _, p := range set.Plugins {
		r.rewards = append(r.rewards, p)
	}
	return nil
}

func (r *run) samplerOptions() sampler.Options {
	s := r.cfg.Sampling
	// The prompts of a step are decoded in waves of whole groups; the KV cache holds a
	// wave: each prompt once plus G continuations (prompts are assumed under 1024 tokens;
	// a longer one is reported by the sampler).
	groups := min(s.PromptsPerStep, max(1, s.ParallelSequences/s.GroupSize))
	return sampler.Options{
		Threads:      s.Threads,
		GPULayers:    s.GPULayers,
		MaxSequences: groups * s.GroupSize,
		ContextSize:  groups * (1024 + s.GroupSize*s.MaxTokens),
	}
}

func (r *run) loadModels(ck *checkpointState) error {
	c := r.cfg
	var err error
	fmt.Fprintf(r.progress, "loading %s into the learner (libtorch)\n", c.Model)
	if r.lrn, err = learner.Load(c.Model, learner.Options{Threads: c.Learner.Threads, Device: c.Learner.Device, Precision: c.Learner.Precision}); err != nil {
		return err
	}
	if note := r.lrn.Info().PrecisionNote; note != "" {
		fmt.Fprintln(r.progress, note)
	}
	if c.LoRA.Enabled {
		if err := r.lrn.EnableLoRA(learner.LoRAConfig{Rank: c.LoRA.Rank, Alpha: c.LoRA.Alpha, Targets: c.LoRA.Targets, Seed: c.Seed}); err != nil {
			return fmt.Errorf("lora: %w", err)
		}
	}
	l := c.Learner
	r.tr, err = learner.NewTrainer(r.lrn, learner.TrainConfig{
		Temperature: c.Sampling.Temperature,
		EpsLow:      l.EpsLow, EpsHigh: l.EpsHigh, Beta: l.Beta, Loss: l.Loss,
		MaxCompletionLen: c.Sampling.MaxTokens,
		Mu:               l.Mu, MicroBatch: l.MicroBatch, ISCap: l.ISCap, ActivationRecompute: l.RecomputeActivations, Log: r.progress,
		LR: l.LR, Schedule: l.Schedule, WarmupRatio: l.WarmupRatio, TotalSteps: r.steps * l.Mu,
		Beta1: l.AdamBeta1, Beta2: l.AdamBeta2, WeightDecay: l.WeightDecay, MaxGradNorm: l.MaxGradNorm,
	})
	if err != nil {
		return fmt.Errorf("learner: %w", err)
	}
	if ck != nil {
		if err := r.tr.LoadState(filepath.Join(ck.dir, "learner")); err != nil {
			return fmt.Errorf("resume %s: %w", ck.dir, err)
		}
	}
	fmt.Fprintf(r.progress, "loading %s into the sampler (llama.cpp)\n", c.Model)
	if r.smp, err = sampler.Load(c.Model, r.samplerOptions()); err != nil {
		return err
	}
	if ck != nil && ck.Step > 0 {
		if err := r.sync(); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	}
	if c.SelfCertainty.Source == "offline" {
		if r.offline, err = sampler.Load(c.Model, sampler.Options{Threads: c.Sampling.Threads, GPULayers: c.Sampling.GPULayers, ContextSize: 1024 + c.Sampling.MaxTokens, MaxSequences: 1}); err != nil {
			return fmt.Errorf("offline self-certainty model: %w", err)
		}
	}
	return nil
}

func (r *run) openLogs(start int) error {
	var err error
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if start == 0 {
		flags |= os.O_TRUNC
	} else if err := truncateMetrics(filepath.Join(r.out, "metrics.jsonl"), start); err != nil {
		return err
	}
	if r.metrics, err = os.OpenFile(filepath.Join(r.out, "metrics.jsonl"), flags, 0o644); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if r.complets, err = os.OpenFile(filepath.Join(r.out, "completions.jsonl"), flags, 0o644); err != nil {
		return fmt.Errorf("completions: %w", err)
	}
	return nil
}

func (r *run) close() {
	for _, f := range []*os.File{r.metrics, r.complets} {
		if f != nil {
			f.Close()
		}
	}
	if r.plugins != nil {
		r.plugins.Close()
	}
	if r.tr != nil {
		r.tr.Close()
	}
	if r.lrn != nil {
		r.lrn.Close()
	}
	r.smp.Close()
	r.offline.Close()
}

// step runs one training step. It returns nil metrics when a stop request interrupted
// the step before the learner changed any weight (the step is then redone on resume).
func (r *run) step(ctx context.Context, step int) (*Metrics, bool, error) {
	c := r.cfg
	pos := r.order.Pos
	idx := r.order.Next(c.Sampling.PromptsPerStep)
	reqs := make([]sampler.Request, len(idx))
	for i, k := range idx {
		reqs[i] = sampler.Request{Prompt: r.rows[k].Prompt, System: c.Data.SystemPrompt, Raw: c.Data.Raw}
		if c.Data.Raw {
			reqs[i].System = ""
		}
	}
	m := &Metrics{Step: step, Epoch: pos.Epoch, Rewards: map[string]RewardStats{}}
	undo := func() (*Metrics, bool, error) { r.order.Seek(pos); return nil, true, nil }

	t0 := time.Now()
	groups, err := r.smp.Sample(ctx, reqs, c.Sampling.GroupSize, sampler.Params{
		MaxTokens: c.Sampling.MaxTokens, Temperature: c.Sampling.Temperature, TopP: c.Sampling.TopP,
		TopK: c.Sampling.TopK, MinP: c.Sampling.MinP, Stop: c.Sampling.Stop,
		Seed: c.Seed*1_000_003 + uint64(step),
	})
	if err != nil {
		return nil, false, fmt.Errorf("sample: %w", err)
	}
	if err := r.rescoreSelfCertainty(groups); err != nil {
		return nil, false, err
	}
	m.Time.Sample = time.Since(t0).Seconds()
	if r.stopRequested() {
		return undo()
	}

	t0 = time.Now()
	rg := make([]rewards.Group, len(groups))
	for i, g := range groups {
		rg[i] = rewards.Group{Prompt: reqs[i].Prompt, Fields: r.rows[idx[i]].Fields, Completions: g}
	}
	scores := make([][][]rewards.Score, len(r.rewards))
	for k, f := range r.rewards {
		if scores[k], err = f.Score(ctx, rg); err != nil {
			return nil, false, fmt.Errorf("score: %w", err)
		}
	}
	adv, err := advantage.Compute(c.Rewards, scores, c.Advantage)
	if err != nil {
		return nil, false, fmt.Errorf("advantages: %w", err)
	}
	m.Time.Score = time.Since(t0).Seconds()
	m.observe(c.Rewards, groups, scores, adv)
	if r.stopRequested() {
		return undo()
	}

	t0 = time.Now()
	var samples []learner.Sample
	for i, g := range groups {
		for j, comp := range g {
			samples = append(samples, learner.Sample{Prompt: comp.PromptTokens, Completion: comp.Tokens, Advantage: adv[i][j], SamplerLogProb: comp.LogProb})
		}
	}
	st, err := r.tr.Step(samples)
	if err != nil {
		return nil, false, fmt.Errorf("learn: %w", err)
	}
	m.Time.Learn = time.Since(t0).Seconds()
	m.learner(st)

	// From here the step has changed the weights: it completes, and a stop request takes
	// effect after the sync.
	t0 = time.Now()
	if err := r.sync(); err != nil {
		return nil, false, fmt.Errorf("sync: %w", err)
	}
	m.Time.Sync = time.Since(t0).Seconds()
	m.finish()
	if every := c.Output.CompletionsEvery; every > 0 && step%every == 0 {
		if err := writeCompletions(r.complets, step, c.Rewards, rg, scores, adv); err != nil {
			return nil, false, err
		}
	}
	return m, r.stopRequested(), nil
}

// rescoreSelfCertainty replaces the sampler's statistics when self-certainty comes from
// the learner (exact, π_old) or from the frozen initial model (offline).
func (r *run) rescoreSelfCertainty(groups [][]rollout.Completion) error {
	switch r.cfg.SelfCertainty.Source {
	case "learner":
		var seqs []learner.Sequence
		for _, g := range groups {
			for _, c := range g {
				seqs = append(seqs, learner.Sequence{Tokens: append(append([]int32(nil), c.PromptTokens...), c.Tokens...), PromptLen: len(c.PromptTokens)})
			}
		}
		stats, err := r.lrn.Score(seqs, r.cfg.Sampling.Temperature)
		if err != nil {
			return fmt.Errorf("learner self-certainty: %w", err)
		}
		k := 0
		for i := range groups {
			for j := range groups[i] {
				setStats(&groups[i][j], stats[k])
				k++
			}
		}
	case "offline":
		for i := range groups {
			for j := range groups[i] {
				c := &groups[i][j]
				stats, err := r.offline.Score(append(append([]int32(nil), c.PromptTokens...), c.Tokens...), len(c.PromptTokens), r.cfg.Sampling.Temperature)
				if err != nil {
					return fmt.Errorf("offline self-certainty: %w", err)
				}
				setStats(c, stats)
			}
		}
	}
	return nil
}

// setStats replaces the self-certainty and entropy of a completion; its log-probs stay
// the sampler's, which the importance-sampling correction needs.
func setStats(c *rollout.Completion, stats []rollout.TokenStats) {
	for i, s := range stats {
		c.SelfCertainty[i] = s.SelfCertainty
		c.Entropy[i] = s.Entropy
	}
	c.Finalize()
}

// sync puts the learner's weights into the sampler: a full GGUF re-export at the
// configured precision, or the LoRA adapter hot-swapped.
func (r *run) sync() error {
	dir := filepath.Join(r.out, "sync")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if r.cfg.LoRA.Enabled {
		p := filepath.Join(dir, "adapter.gguf")
		if err := r.lrn.ExportLoRA(p); err != nil {
			return err
		}
		return r.smp.LoadAdapter(p, 1)
	}
	p := filepath.Join(dir, "policy.gguf")
	if err := r.lrn.Export(p, r.cfg.Sync.Precision); err != nil {
		return err
	}
	return r.smp.Reload(p)
}

// writeFinal exports the trained model as a GGUF that llama.cpp and ollama load (LoRA
// merged in), at the sync precision.
func (r *run) writeFinal() (string, error) {
	dir := filepath.Join(r.out, "final")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "model.gguf")
	if err := r.lrn.Export(p, r.cfg.Sync.Precision); err != nil {
		return "", fmt.Errorf("final export: %w", err)
	}
	if r.cfg.LoRA.Enabled {
		if err := r.lrn.ExportLoRA(filepath.Join(dir, "adapter.gguf")); err != nil {
			return "", fmt.Errorf("final adapter export: %w", err)
		}
	}
	fmt.Fprintf(r.progress, "final model: %s\n", p)
	return p, nil
}

// writeFileAtomic writes b to path through a temporary file renamed into place.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}
