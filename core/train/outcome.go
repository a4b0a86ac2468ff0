package train

import (
	"errors"
	"fmt"

	"github.com/rlif/rlif/core/data"
)

// Three things are called a step here: an RL step (the run's unit: sample, score,
// advantage, learn, sync), the learner's Trainer.Step within it (μ passes over the
// batch), and the optimizer steps the learner counts (Trainer.Steps: one per pass, μ per
// RL step). A step's outcome is said in RL steps; learn tells it from the optimizer count.

// outcome is what an RL step did to the learner's state, which decides what a stop or an
// error keeps.
type outcome int

const (
	// unchanged: the learner's state is still that after the step before (a stop request
	// or an error came before the learner's first optimizer step); the step's prompts are
	// drawn again on resume.
	unchanged outcome = iota
	// complete: the learner took the step's whole update; the step counts, with its
	// metrics, even when what follows the update (sync, evaluation, completions) failed.
	complete
	// partial: the learner failed within its update, after some of its optimizer steps:
	// its state is that of no step, and is not saved.
	partial
)

// stepResult is what an RL step returns, with or without an error.
type stepResult struct {
	outcome outcome
	metrics *Metrics // the step's metrics, when complete
	// stopped: a stop request ends the run after this step, or, unchanged, before it.
	stopped bool
}

// undo ends a step before the learner changed anything, when the ranks agreed to stop
// (err nil) or could not agree (err): the step's prompts are drawn again on resume.
func (r *run) undo(pos data.Position, err error) (stepResult, error) {
	r.order.Seek(pos)
	return stepResult{outcome: unchanged, stopped: err == nil}, err
}

// afterError is called when RL step failed with err, after the step's result st. Where
// the learner's state is still that of a complete RL step (st unchanged: the step before;
// st complete: this one, with its metrics), it writes that step's checkpoint, so that the
// run resumes there instead of from the last scheduled checkpoint; pos is the data
// position at the start of step. The returned error says what was written.
func (r *run) afterError(step int, pos data.Position, st stepResult, err error) (string, error) {
	var diverged *divergedError
	if !r.lead() || errors.As(err, &diverged) {
		return "", err // rank 0 keeps the run's state; diverged weights are not worth keeping
	}
	var last int
	switch st.outcome {
	case unchanged:
		last = step - 1
		r.order.Seek(pos) // the failed step's prompts are drawn again on resume
	case complete:
		last = step
		if werr := r.writeMetrics(st.metrics); werr != nil {
			return "", fmt.Errorf("%w; no checkpoint written (metrics: %v)", err, werr)
		}
	default:
		return "", fmt.Errorf("%w; the learner failed within its update, so its state is not saved; resume from the last checkpoint, if any, with --resume %s", err, r.out)
	}
	if last <= r.start {
		return "", err // the learner has not changed since the run started or resumed
	}
	dir, cerr := r.checkpoint(last)
	if cerr != nil {
		return "", fmt.Errorf("%w; the checkpoint of step %d failed too: %v", err, last, cerr)
	}
	return dir, fmt.Errorf("%w; the state after step %d is checkpointed in %s: continue with --resume %s", err, last, dir, r.out)
}

// divergedError is a run whose weights give non-finite outputs after an update: the training
// diverged, and resuming from its state would only do so again.
type divergedError struct {
	step int // the last RL step whose update the weights hold
	lr   float64
	err  error
}

func (e *divergedError) Error() string {
	return fmt.Sprintf("the weights after step %d give non-finite outputs: the training diverged; lower learner.lr (now %g), keep learner.max_grad_norm > 0, and start the run again (checkpoints written since the divergence hold the same weights)", e.step, e.lr)
}

func (e *divergedError) Unwrap() error { return e.err }
