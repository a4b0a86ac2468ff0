// Package train is the GRPO / Intuitor loop: sample groups with the sampler, score them
// with the reward plugins, turn scores into advantages, take learner steps, and sync the
// new weights back into the sampler; with metrics, completions, checkpoints and resume.
package train

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/core/tensorboard"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/policy/learner"
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
	settings config.Settings // what checkpoints record, to compare on resume
	// deviceNoted: the sampler's device was reported (once; the sampler reloads each sync)
	deviceNoted bool
	progress    io.Writer

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
	// job is this rank's place in its data-parallel job (job.go; a run alone is a job of
	// one rank); syncDir the private directory of a rank other than 0 for the sampler's
	// weights.
	job     job
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
	if r.settings, err = r.cfg.Settings(); err != nil {
		return Result{}, err
	}
	start := 0
	var ck *checkpointState
	if opt.Resume {
		if ck, err = r.resumePoint(); err != nil {
			return Result{}, err
		}
		if err := r.sameConfig(ck); err != nil {
			return Result{}, fmt.Errorf("resume %s: %w", r.out, err)
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
		if err := r.startHealth(); err != nil {
			return Result{}, err
		}
		if err := r.evalBase(ctx); err != nil {
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
		st, err := r.step(ctx, step)
		r.live.endStep()
		if err != nil {
			dir, err := r.afterError(step, pos, st, fmt.Errorf("step %d: %w", step, err))
			if dir != "" {
				res.LastCheck = dir
			}
			return res, err
		}
		if st.outcome == unchanged {
			// A stop request interrupted the step before it changed anything: it left no
			// trace, and the newest checkpoint is the last complete step's.
			if step > start+1 && r.lead() {
				if res.LastCheck, err = r.checkpoint(step - 1); err != nil {
					return res, err
				}
			}
			return r.stopped(res), nil
		}
		res.Steps = step
		collapsed, dir, err := r.afterStep(step, st, began)
		if dir != "" {
			res.LastCheck = dir
		}
		switch {
		case err != nil:
			return res, err
		case collapsed:
			res.Collapsed = step
			return res, nil
		case st.stopped:
			return r.stopped(res), nil
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

// step runs RL step n as its stages, each in the file named for it: sample → score →
// advantage → learn → sync, with the step's report (report.go) between scoring and
// learning, where the ranks of a job gather on rank 0. Before the learner's update a
// stop request undoes the step; after it the step completes, and the stop takes effect
// after the sync. Its result says what the step did to the learner's state, error or not.
func (r *run) step(ctx context.Context, n int) (stepResult, error) {
	pos := r.order.Pos
	m := &Metrics{Step: n, Epoch: pos.Epoch, Rewards: map[string]RewardStats{}}
	b, err := r.sample(ctx, n, m)
	if err != nil {
		return stepResult{}, err
	}
	if stop, err := r.stopRequested(); stop || err != nil {
		return r.undo(pos, err)
	}
	if err := r.score(ctx, b, m); err != nil {
		return stepResult{}, err
	}
	if err := r.advantages(b, m); err != nil {
		return stepResult{}, err
	}
	all, err := r.report(n, m, b)
	if err != nil {
		return stepResult{}, err
	}
	if stop, err := r.stopRequested(); stop || err != nil {
		return r.undo(pos, err)
	}
	if out, err := r.learn(b, m); err != nil {
		return stepResult{outcome: out}, err
	}
	done := stepResult{outcome: complete, metrics: m}
	if err := r.syncStep(m); err != nil {
		return done, err
	}
	if err := r.record(ctx, n, m, all); err != nil {
		return done, err
	}
	done.stopped, err = r.stopRequested()
	return done, err
}

// afterStep does what follows a complete step: the comparison of the ranks' weights,
// and on rank 0 the step's health verdict, metrics line and progress line, the label-free
// best, and its checkpoint when one is due (or the run stops). It says whether the run
// stops for collapse, and returns the checkpoint it wrote, if any.
func (r *run) afterStep(step int, st stepResult, began time.Time) (collapsed bool, dir string, err error) {
	m := st.metrics
	if err := r.checkWeights(step); err != nil {
		return false, "", fmt.Errorf("step %d: %w", step, err)
	}
	if r.lead() {
		fell := r.judge(m)
		if err := r.writeMetrics(m); err != nil {
			return false, "", err
		}
		if err := r.watchStep(m); err != nil {
			return false, "", err
		}
		fmt.Fprintln(r.progress, progressLine(m, r.steps, r.start, began))
		if fell {
			r.sayCollapsed(m)
		}
	}
	if !st.stopped {
		if collapsed, err = r.collapseStop(m); err != nil {
			return false, "", fmt.Errorf("step %d: %w", step, err)
		}
	}
	if r.lead() && r.labelFreeCandidate(step) {
		if err := r.keepLabelFree(step, m.Health); err != nil {
			return false, "", err
		}
	}
	if r.lead() && (st.stopped || collapsed || step == r.steps || r.checkpointDue(step)) {
		if dir, err = r.checkpoint(step); err != nil {
			return false, "", err
		}
		r.writeReport()
	}
	return collapsed, dir, nil
}

// stopped ends the run at a stop request, with its result.
func (r *run) stopped(res Result) Result {
	res.Stopped = true
	fmt.Fprintf(r.progress, "stopped after step %d; resume with --resume %s\n", res.Steps, r.out)
	return res
}
