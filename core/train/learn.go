package train

import (
	"fmt"
	"time"
)

// The learn stage: the learner's step on the batch's samples.

// learn takes the learner's step on the batch (Trainer.Step: μ passes over the samples,
// each one optimizer step) and puts its statistics into m. Its outcome says what the
// learner's state is, also after an error: complete, unchanged when the learner took no
// optimizer step, partial when it failed after some.
func (r *run) learn(b *scoredBatch, m *Metrics) (outcome, error) {
	t0 := time.Now()
	peak := phasePeak()
	// Learning begins with the reference and π_old passes, before the first micro-batch
	// reports: the line says "learning" from here, not "scoring".
	r.live.setPhase("learning")
	optimizerSteps := r.tr.Steps()
	st, err := r.tr.Step(b.samples())
	if err != nil {
		if r.tr.Steps() == optimizerSteps {
			return unchanged, fmt.Errorf("learn: %w", err)
		}
		return partial, fmt.Errorf("learn: %w", err)
	}
	m.Time.Learn = time.Since(t0).Seconds()
	m.Peak.Learn = peak()
	m.learner(st)
	return complete, nil
}
