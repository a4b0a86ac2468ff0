package train

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/sampler"
)

// Check checks what Run checks before it joins a job or touches the run directory: the
// configuration, the data, and in a job of Options.Dist.World ranks, each rank's share of
// a step; then the model's file and the prompts' lengths, unless the model is a Hugging
// Face directory (each run converts it first, see convertModel). A launcher of ranks
// calls it once, so that a bad run is one error before any rank starts, not one error
// per rank.
func Check(cfg config.Run, opt Options) error {
	if err := cfg.ResolvePaths("."); err != nil {
		return err
	}
	r := &run{cfg: cfg, opt: opt, out: cfg.Out, progress: io.Discard}
	defer r.close()
	return r.check()
}

// check is Run's checks of everything cheap, before it joins a job or touches the run
// directory: those of the model's file wait for its conversion when it is a Hugging
// Face directory.
func (r *run) check() error {
	if err := r.checkConfig(); err != nil {
		return err
	}
	if hf.IsModelDir(r.cfg.Model) {
		return nil
	}
	return r.checkModel()
}

// checkConfig checks everything cheap that needs no model.
func (r *run) checkConfig() error {
	if err := r.cfg.Validate(); err != nil {
		return err
	}
	if err := checkShare(r.cfg, r.opt.Dist); err != nil {
		return err
	}
	if err := r.loadData(); err != nil {
		return err
	}
	return r.loadEval()
}

// checkModel checks the model's file and that every prompt fits its context, before any
// model loads.
func (r *run) checkModel() error {
	if err := sampler.CheckGGUF(r.cfg.Model); err != nil {
		return err
	}
	return r.checkPrompts()
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
	src := d.Path
	if src == "" {
		src = "(built-in)"
	}
	if err := r.cfg.CheckRewardData(src, r.rows); err != nil {
		return err
	}
	r.order = data.NewOrder(len(r.rows), r.cfg.Seed, d.Shuffle)
	r.steps = r.cfg.Steps
	if r.steps == 0 {
		r.steps = data.StepsFor(len(r.rows), r.cfg.Sampling.PromptsPerStep, d.Epochs)
	}
	return nil
}

func (r *run) startRewards(ctx context.Context) error {
	cfgs, err := r.cfg.PluginConfigs(r.opt.Executable)
	if err != nil {
		return err
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
	// wave: each prompt once plus n continuations (G, or the vote group's vote_n), 1024
	// tokens a prompt on average (the sampler packs waves by their real cost), and at
	// least the longest prompt's group (checkPrompts measured it), so that every row fits.
	n := r.cfg.VoteSize()
	groups := min(s.PromptsPerStep, max(1, s.ParallelSequences/n))
	return sampler.Options{
		Threads:      s.Threads,
		GPULayers:    s.GPULayers,
		MaxSequences: groups * n,
		ContextSize:  max(groups*(1024+n*s.MaxTokens), r.longestPrompt+n*s.MaxTokens),
	}
}

func (r *run) loadModels(ck *checkpointState) error {
	c := r.cfg
	var err error
	fmt.Fprintf(r.progress, "loading %s into the learner (libtorch)\n", c.Model)
	if r.lrn, err = learner.Load(c.Model, learner.Options{Threads: c.Learner.Threads, Device: r.learnerDevice(), Precision: c.Learner.Precision}); err != nil {
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
		MemoryBudget:       int64(l.MemoryBudgetGiB * (1 << 30)),
		StepsPerGeneration: l.StepsPerGeneration, ImportanceSamplingLevel: l.ImportanceSamplingLevel, Delta: l.Delta,
		SAPOTemperaturePos: l.SAPOTemperaturePos, SAPOTemperatureNeg: l.SAPOTemperatureNeg, TopEntropyQuantile: l.TopEntropyQuantile, EntropyCoef: l.EntropyCoef,
		MaskTruncatedCompletions: l.MaskTruncatedCompletions, OffPolicyMaskThreshold: l.OffPolicyMaskThreshold, ISMode: l.ISMode, ISMin: l.ISMin,
		LR: l.LR, Schedule: l.Schedule, WarmupRatio: l.WarmupRatio, TotalSteps: r.steps * l.Mu * max(1, l.StepsPerGeneration),
		Beta1: l.AdamBeta1, Beta2: l.AdamBeta2, WeightDecay: l.WeightDecay, MaxGradNorm: l.MaxGradNorm,
		Progress: r.live.learning,
		Group:    r.job.group(),
	})
	if err != nil {
		return fmt.Errorf("learner: %w", err)
	}
	if ck != nil && r.lead() {
		if err := r.tr.LoadState(filepath.Join(ck.dir, "learner")); err != nil {
			return r.scheduleError(ck, err)
		}
	}
	if ck != nil {
		// In a job the other ranks get rank 0's learner state: weights, moments, steps.
		if err := r.tr.SyncState(); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	}
	if err := r.loadSampler(ck != nil && ck.Step > 0); err != nil {
		return err
	}
	if c.SelfCertainty.Source == "offline" {
		if r.offline, err = sampler.Load(c.Model, sampler.Options{Threads: c.Sampling.Threads, GPULayers: c.Sampling.GPULayers, ContextSize: max(r.longestPrompt, 1024) + c.Sampling.MaxTokens, MaxSequences: 1}); err != nil {
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
	} else {
		// Steps after the checkpoint are done again: their lines go.
		for _, name := range []string{"metrics.jsonl", "completions.jsonl"} {
			if err := rewindLog(filepath.Join(r.out, name), start); err != nil {
				return fmt.Errorf("resume: %s: %w", name, err)
			}
		}
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
	r.tb.Close()
	r.live.close()
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
	r.closeGroup()
	if r.lock != nil {
		r.abandonRunDir()
		r.lock.Close()
	}
}
