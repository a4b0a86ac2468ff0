// Package train is the GRPO / Intuitor loop: sample groups with the sampler, score them
// with the reward plugins, turn scores into advantages, take learner steps, and sync the
// new weights back into the sampler; with metrics, completions, checkpoints and resume.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/core/tensorboard"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/hf"
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
	// Resume continues from the newest intact checkpoint in the run directory.
	Resume bool
	// Overwrite clears a run directory that holds another run; without it (or Resume)
	// a non-empty run directory is refused.
	Overwrite bool
	// Stop, when closed, ends the run after the current phase with a checkpoint.
	Stop <-chan struct{}
	// Progress receives one line per step (and start-up messages); nil discards them.
	Progress io.Writer
	// Live receives progress within a step (a redrawn line on a terminal, plain lines
	// every few seconds otherwise); nil shows none.
	Live io.Writer
	// Dist makes the run one rank of a data-parallel job; nil (or one rank): alone.
	Dist *Distributed
}

// Result summarizes a finished (or stopped) run.
type Result struct {
	Steps     int    // steps completed, in total
	Stopped   bool   // ended early by Options.Stop
	Final     string // path of the final GGUF, when the run completed
	LastCheck string // the newest checkpoint directory
	// Collapsed is the step the run stopped at because the health rule called it
	// collapsed (output.stop_on_collapse); 0: it did not.
	Collapsed int
	// Best is the step checkpoints/best holds (output.keep_best), -1 when none.
	Best int
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

	// The run directory's lock (held until close), the step the run started or resumed
	// from, and when the last checkpoint was written (or the run started).
	lock      *os.File
	start     int
	lastCheck time.Time

	// What openRunDir found and made, so that a run refused before it started (started:
	// config.toml written) leaves the directory as it was (abandonRunDir): the directories
	// it created (the outermost), whether it made the lock file and the marker, and
	// whether the directory held no run (fresh).
	createdDir           string
	madeLock, madeMarker bool
	fresh, started       bool
	// longestPrompt is the most tokens of a row's model input (checkPrompts).
	longestPrompt int

	tb   *tensorboard.Writer
	live *live
	// group is this rank's data-parallel job (nil: alone); syncDir the private directory
	// of a rank other than 0 for the sampler's weights.
	group   *learner.Group
	syncDir string
	// The held-out set of [eval] (none when evaluation is off), and the best value of
	// output.keep_best so far (nil before the first evaluation).
	evalPath  string
	evalItems []eval.Item
	best      *bestState
	// The label-free health rule's tracker (health.go) and the first step it called
	// collapsed (0: none yet).
	health      *health.Tracker
	collapsedAt int
}

// Run trains according to cfg. It validates everything cheap before loading models.
// Relative paths in cfg are taken from the working directory (config.Load has made a
// config file's absolute), and the run's config.toml records them absolute.
func Run(ctx context.Context, cfg config.Run, opt Options) (res Result, err error) {
	if err := cfg.ResolvePaths("."); err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, opt: opt, out: cfg.Out, progress: opt.Progress}
	if r.progress == nil {
		r.progress = io.Discard
	}
	defer r.close()
	if err := r.check(); err != nil {
		return Result{}, err
	}
	if err := r.joinGroup(); err != nil {
		return Result{}, err
	}
	if r.lead() {
		if err := r.openRunDir(); err != nil {
			return Result{}, err
		}
	}
	if hf.IsModelDir(r.cfg.Model) {
		if err := r.convertModel(); err != nil {
			return Result{}, err
		}
		if err := r.checkModel(); err != nil {
			return Result{}, err
		}
	}
	if r.hash, err = r.cfg.Hash(); err != nil {
		return Result{}, err
	}
	start := 0
	var ck *checkpointState
	if opt.Resume {
		if ck, err = r.resumePoint(); err != nil {
			return Result{}, err
		}
		if !r.sameConfig(ck) {
			return Result{}, fmt.Errorf("resume %s: checkpoint %s was made with another configuration (hash %.12s, now %.12s); resume with the run's own config.toml or start a new --out", r.out, ck.dir, ck.ConfigHash, r.hash)
		}
		if r.lead() {
			if err := r.markRunDir(); err != nil {
				return Result{}, fmt.Errorf("resume %s: %w", r.out, err)
			}
		}
		start = ck.Step
		r.order.Seek(ck.Data)
		fmt.Fprintf(r.progress, "resuming from %s (step %d)\n", ck.dir, ck.Step)
	}
	r.start = start
	r.live = newLive(opt.Live, r.steps, start)
	if r.lead() {
		if err := r.loadBest(); err != nil {
			return Result{}, err
		}
	}
	if err := r.startRewards(ctx); err != nil {
		return Result{}, err
	}
	if err := r.loadModels(ck); err != nil {
		return Result{}, err
	}
	// Everything is checked: from here the run writes into its directory.
	if r.lead() {
		if err := r.writeConfig(); err != nil {
			return Result{}, err
		}
		if err := r.openLogs(start); err != nil {
			return Result{}, err
		}
		if err := r.openWatch(start); err != nil {
			return Result{}, err
		}
		if err := r.evalBase(ctx); err != nil {
			return Result{}, err
		}
		if err := r.startHealth(); err != nil {
			return Result{}, err
		}
		if r.start == 0 {
			if err := r.keepLabelFree(0, nil); err != nil {
				return Result{}, err
			}
		}
	}
	defer func() { res.Best = r.bestStep() }()

	res.Steps = start
	began := time.Now()
	r.lastCheck = began
	for step := start + 1; step <= r.steps; step++ {
		pos := r.order.Pos
		m, stopped, err := r.step(ctx, step)
		r.live.endStep()
		if err != nil {
			dir, err := r.afterError(step, pos, m, fmt.Errorf("step %d: %w", step, err))
			if dir != "" {
				res.LastCheck = dir
			}
			return res, err
		}
		if m != nil {
			res.Steps = step
			if err := r.checkWeights(step); err != nil {
				return res, fmt.Errorf("step %d: %w", step, err)
			}
		}
		if m != nil && r.lead() {
			fell := r.judge(m)
			if err := r.writeMetrics(m); err != nil {
				return res, err
			}
			if err := r.watchStep(m); err != nil {
				return res, err
			}
			fmt.Fprintln(r.progress, progressLine(m, r.steps, start, began))
			if fell {
				r.sayCollapsed(m)
			}
		}
		collapsed := false
		if m != nil && !stopped {
			if collapsed, err = r.collapseStop(m); err != nil {
				return res, fmt.Errorf("step %d: %w", step, err)
			}
		}
		if m != nil && r.lead() && r.labelFreeCandidate(step) {
			if err := r.keepLabelFree(step, m.Health); err != nil {
				return res, err
			}
		}
		last := step == r.steps
		if m != nil && r.lead() && (stopped || collapsed || last || r.checkpointDue(step)) {
			if res.LastCheck, err = r.checkpoint(step); err != nil {
				return res, err
			}
			r.writeReport()
		}
		if collapsed {
			res.Collapsed = step
			return res, nil
		}
		if stopped {
			if m == nil && step > start+1 && r.lead() {
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
	if !r.lead() {
		return res, nil
	}
	if res.Final, err = r.writeFinal(); err != nil {
		return res, err
	}
	return res, nil
}

// stopRequested says whether the run was asked to stop; in a job, whether any rank was
// (every rank asks at the same points, and all stop together).
func (r *run) stopRequested() (bool, error) {
	return r.agreeStop(r.stopAsked())
}

// stopAsked says whether this process was asked to stop (Options.Stop is closed).
func (r *run) stopAsked() bool {
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

// untilStop returns a context that ends with ctx or when the run is asked to stop, and
// the function that releases it.
func (r *run) untilStop(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	if r.opt.Stop != nil {
		go func() {
			select {
			case <-r.opt.Stop:
				cancel()
			case <-c.Done():
			}
		}()
	}
	return c, cancel
}

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
		StepsPerGeneration: l.StepsPerGeneration, ImportanceSamplingLevel: l.ImportanceSamplingLevel, Delta: l.Delta,
		SAPOTemperaturePos: l.SAPOTemperaturePos, SAPOTemperatureNeg: l.SAPOTemperatureNeg, TopEntropyQuantile: l.TopEntropyQuantile, EntropyCoef: l.EntropyCoef,
		MaskTruncatedCompletions: l.MaskTruncatedCompletions, OffPolicyMaskThreshold: l.OffPolicyMaskThreshold, ISMode: l.ISMode, ISMin: l.ISMin,
		LR: l.LR, Schedule: l.Schedule, WarmupRatio: l.WarmupRatio, TotalSteps: r.steps * l.Mu * max(1, l.StepsPerGeneration),
		Beta1: l.AdamBeta1, Beta2: l.AdamBeta2, WeightDecay: l.WeightDecay, MaxGradNorm: l.MaxGradNorm,
		Progress: r.live.learning,
		Group:    r.group,
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

// loadSampler loads the sampler with the weights every step samples from. A full sync
// exports the learner's weights at sync.precision before step 1 too, so that step 1 samples
// from the same kind of weights as every later step (not from the source file, whose
// quantization differs); a LoRA sync keeps the source file as the base, with the adapter
// loaded when a resumed run has one.
func (r *run) loadSampler(resumed bool) error {
	c := r.cfg
	if c.LoRA.Enabled {
		fmt.Fprintf(r.progress, "loading %s into the sampler (llama.cpp)\n", c.Model)
		var err error
		if r.smp, err = sampler.Load(c.Model, r.samplerOptions()); err != nil {
			return err
		}
		if resumed {
			if err := r.sync(); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
		}
		return nil
	}
	p, err := r.exportPolicy()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.progress, "loading the learner's weights at %s into the sampler (llama.cpp)\n", r.syncPrecision())
	if r.smp, err = sampler.Load(p, r.samplerOptions()); err != nil {
		return err
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

// step runs one training step. It returns nil metrics when a stop request interrupted
// the step before the learner changed any weight (the step is then redone on resume).
func (r *run) step(ctx context.Context, step int) (*Metrics, bool, error) {
	c := r.cfg
	pos := r.order.Pos
	idx := r.order.Next(c.Sampling.PromptsPerStep)
	// In a job, this rank's share of the step's prompts (every rank draws them all).
	prompts := len(idx)
	lo, hi := r.share(idx)
	idx = idx[lo:hi]
	reqs := r.requests(idx)
	m := &Metrics{Step: step, Epoch: pos.Epoch, Rewards: map[string]RewardStats{}}
	undo := func() (*Metrics, bool, error) { r.order.Seek(pos); return nil, true, nil }

	t0 := time.Now()
	r.live.beginStep(step)
	sp := r.sampleParams(step)
	sp.Progress = r.live.sampling
	// A stop request ends sampling between tokens, not after the whole phase (minutes on
	// a big step): nothing has changed yet, and the step is done again on resume.
	sctx, cancel := r.untilStop(ctx)
	groups, err := r.smp.SampleAt(sctx, reqs, lo, c.VoteSize(), sp)
	cancel()
	switch {
	case err != nil && ctx.Err() == nil && r.stopAsked():
		fmt.Fprintf(r.progress, "step %d: sampling interrupted by the stop request; the step is done again on resume\n", step)
	case errors.Is(err, sampler.ErrNotFinite) && r.tr.Steps() > 0:
		return nil, false, &divergedError{step: step - 1, lr: c.Learner.LR, err: err}
	case err != nil:
		return nil, false, fmt.Errorf("sample: %w", err)
	default:
		if err := r.rescoreSelfCertainty(groups); err != nil {
			return nil, false, err
		}
	}
	m.Time.Sample = time.Since(t0).Seconds()
	if stop, err := r.stopRequested(); err != nil || stop {
		if err != nil {
			return nil, false, err
		}
		return undo()
	}

	t0 = time.Now()
	r.live.setPhase("scoring")
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
	// TTRL's vote group (plurality_vote's vote_n): every reward scored all of a prompt's
	// completions, which all voted; the advantages and the learner take the first
	// group_size of them, as TTRL's select_top_k_per_prompt does (a prompt's completions
	// are drawn alike, so the first are as good a subset as any). Without vote_n the two
	// are the same.
	G := c.Sampling.GroupSize
	scores = firstOfEach(scores, G)
	var adv [][]float64
	if r.batchScores() {
		// A reward normalized over the batch: the advantages of the whole step, of which
		// this rank keeps its share.
		all, err := r.allScores(scores, lo, prompts)
		if err != nil {
			return nil, false, fmt.Errorf("scores: %w", err)
		}
		if adv, err = advantage.Compute(c.RewardSpecs(), all, c.Advantage); err != nil {
			return nil, false, fmt.Errorf("advantages: %w", err)
		}
		adv = adv[lo:hi]
	} else if adv, err = advantage.Compute(c.RewardSpecs(), scores, c.Advantage); err != nil {
		return nil, false, fmt.Errorf("advantages: %w", err)
	}
	// EMPO's filter: no advantage for a group whose answers disagree too much (over all
	// its votes). The step's metrics count the groups it masked (diagnose).
	c.Advantage.Filter(adv, rg)
	m.Time.Score = time.Since(t0).Seconds()
	// The step's metrics and completions are of all ranks' groups, on rank 0. The
	// groups keep all their votes (the answer diagnostics are over them); the scores and
	// advantages are of the training groups.
	allRG, allScores, allAdv, err := r.gather(step, m, rg, scores, adv)
	if err != nil {
		return nil, false, err
	}
	trainRG := make([]rewards.Group, len(allRG))
	allGroups := make([][]rollout.Completion, len(allRG))
	for i, g := range allRG {
		trainRG[i] = g
		trainRG[i].Completions = g.Completions[:min(G, len(g.Completions))]
		allGroups[i] = trainRG[i].Completions
	}
	m.observe(c.RewardSpecs(), allGroups, allScores, allAdv)
	if m.Diag, err = diagnose(c.RewardSpecs(), allRG, allScores, allAdv, c.Data.AnswerField, c.Advantage); err != nil {
		return nil, false, fmt.Errorf("diagnostics: %w", err)
	}
	for _, name := range m.inapplicable() {
		if r.lead() {
			fmt.Fprintf(r.progress, "warning: step %d: reward %s scored every completion \"not applicable\"; it adds nothing to this step's advantages\n", step, name)
		}
	}
	if stop, err := r.stopRequested(); err != nil || stop {
		if err != nil {
			return nil, false, err
		}
		return undo()
	}

	t0 = time.Now()
	// Learning begins with the reference and π_old passes, before the first micro-batch
	// reports: the line says "learning" from here, not "scoring".
	r.live.setPhase("learning")
	var samples []learner.Sample
	for i, g := range groups {
		for j, comp := range g[:G] {
			// The importance weight divides by the probability of the distribution each
			// token was drawn from: after top-k/top-p/min-p truncation, not before.
			samples = append(samples, learner.Sample{Prompt: comp.PromptTokens, Completion: comp.Tokens, Advantage: adv[i][j], SamplerLogProb: comp.SampledLogProb,
				Truncated: comp.FinishReason == rollout.FinishLength})
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
	r.live.setPhase("sync")
	if err := r.sync(); err != nil {
		m.finish()
		return m, false, fmt.Errorf("sync: %w", err) // m: the learner's step is complete
	}
	m.Time.Sync = time.Since(t0).Seconds()
	m.finish()
	if r.lead() {
		if err := r.evalStep(ctx, step, m); err != nil {
			return m, false, err // m: the learner's step is complete
		}
		if every := c.Output.CompletionsEvery; every > 0 && step%every == 0 {
			if err := writeCompletions(r.complets, step, c.RewardSpecs(), trainRG, allScores, allAdv); err != nil {
				return m, false, err // m: the learner's step is complete
			}
		}
	}
	stop, err := r.stopRequested()
	if err != nil {
		return m, false, err // m: the learner's step is complete
	}
	return m, stop, nil
}

// firstOfEach returns each reward's scores of the first n completions of every group
// (the training group out of a vote group).
func firstOfEach(scores [][][]rewards.Score, n int) [][][]rewards.Score {
	out := make([][][]rewards.Score, len(scores))
	for k := range scores {
		out[k] = make([][]rewards.Score, len(scores[k]))
		for i, g := range scores[k] {
			out[k][i] = g[:min(n, len(g))]
		}
	}
	return out
}

// requests are the sampler requests of dataset rows idx.
func (r *run) requests(idx []int) []sampler.Request {
	reqs := make([]sampler.Request, len(idx))
	for i, k := range idx {
		reqs[i] = r.request(k)
	}
	return reqs
}

// sampleParams are the sampling parameters of a step: its seed is the run's and the step's.
func (r *run) sampleParams(step int) sampler.Params {
	s := r.cfg.Sampling
	return sampler.Params{
		MaxTokens: s.MaxTokens, Temperature: s.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP, Stop: s.Stop,
		Seed: r.cfg.Seed*1_000_003 + uint64(step),
	}
}

// rescoreSelfCertainty replaces the sampler's self-certainty when it comes from the
// learner (exact, π_old) or from the frozen initial model (offline). Only self-certainty
// moves: entropy and the log-probs stay the sampler's.
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
				setSelfCertainty(&groups[i][j], stats[k])
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
				setSelfCertainty(c, stats)
			}
		}
	}
	return nil
}

// setSelfCertainty replaces the self-certainty of a completion with that of another
// model (self_certainty.source). Nothing else moves: the entropy reward and the
// entropy/mean metric stay the sampler's, as without a source, and the log-probs are the
// sampler's, which the importance-sampling correction needs.
func setSelfCertainty(c *rollout.Completion, stats []rollout.TokenStats) {
	for i, s := range stats {
		c.SelfCertainty[i] = s.SelfCertainty
	}
	c.Finalize()
}

// sync puts the learner's weights into the sampler: a full GGUF re-export at the
// configured precision, or the LoRA adapter hot-swapped.
func (r *run) sync() error {
	dir := r.syncPath()
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
	p, err := r.exportPolicy()
	if err != nil {
		return err
	}
	return r.smp.Reload(p)
}

// syncPrecision is the precision of the sampler's weights: sync.precision, with auto
// resolved to what the sampler decodes fastest on this machine.
func (r *run) syncPrecision() string {
	if p := r.cfg.Sync.Precision; p != "auto" {
		return p
	}
	return sampler.FastestPrecision(r.cfg.Sampling.GPULayers)
}

// exportPolicy writes the learner's weights at the sync precision where the sampler loads
// them from, and returns the path.
func (r *run) exportPolicy() (string, error) {
	dir := r.syncPath()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "policy.gguf")
	if err := r.lrn.Export(p, r.syncPrecision()); err != nil {
		return "", fmt.Errorf("sync export: %w", err)
	}
	return p, nil
}

// writeFinal exports the trained model as a GGUF that llama.cpp and ollama load (LoRA
// merged in), at the sync precision, and as a Hugging Face directory beside it.
func (r *run) writeFinal() (string, error) {
	dir := filepath.Join(r.out, "final")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "model.gguf")
	if err := r.lrn.Export(p, r.syncPrecision()); err != nil {
		return "", fmt.Errorf("final export: %w", err)
	}
	// The same weights as a Hugging Face directory (bf16), for transformers, vLLM and the Hub.
	if err := r.lrn.ExportHF(filepath.Join(dir, "hf"), "", true); err != nil {
		return "", fmt.Errorf("final Hugging Face export: %w", err)
	}
	if r.cfg.LoRA.Enabled {
		if err := r.lrn.ExportLoRA(filepath.Join(dir, "adapter.gguf")); err != nil {
			return "", fmt.Errorf("final adapter export: %w", err)
		}
		if err := r.lrn.ExportPEFT(filepath.Join(dir, "peft")); err != nil {
			return "", fmt.Errorf("final PEFT adapter export: %w", err)
		}
	}
	fmt.Fprintf(r.progress, "final model: %s\n", p)
	return p, nil
}

// orZero is x, or 0 when x is not finite: metrics.jsonl is JSON, which has no NaN.
func orZero(x float64) float64 {
	if !num.Finite(x) {
		return 0
	}
	return x
}
