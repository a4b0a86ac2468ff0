package train

import (
	"fmt"
	"time"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/rewards"
)

// The advantage stage: the batch's scores become one advantage per training completion
// (core/advantage), and EMPO's filter masks the groups whose answers disagree too much.

// advantages fills b.Advantages from b.Scores. A reward normalized over the batch
// (normalize = "batch") takes the whole step's scores, every rank's (job.allScores, which
// alone is the batch itself), of which this rank keeps its share's advantages; the other
// normalizations need only this rank's groups. Its time counts in the step's time/score.
func (r *run) advantages(b *scoredBatch, m *Metrics) error {
	t0 := time.Now()
	specs := r.cfg.RewardSpecs()
	scores, keep := b.Scores, share{hi: len(b.Groups), prompts: len(b.Groups)}
	if batchNormalized(specs) {
		var err error
		if scores, err = r.job.allScores(b.Scores, b.at, b.groupSize); err != nil {
			return fmt.Errorf("scores: %w", err)
		}
		keep = b.at
	}
	adv, err := advantage.Compute(specs, scores, r.cfg.Advantage)
	if err != nil {
		return fmt.Errorf("advantages: %w", err)
	}
	b.Advantages = adv[keep.lo:keep.hi]
	// EMPO's filter: no advantage for a group whose answers disagree too much (over all
	// its votes). The step's metrics count the groups it masked (diagnose).
	r.cfg.Advantage.Filter(b.Advantages, b.Groups)
	m.Time.Score += time.Since(t0).Seconds()
	return nil
}

// batchNormalized says whether a reward is normalized over the whole batch.
func batchNormalized(specs []rewards.Spec) bool {
	for _, s := range specs {
		if s.Normalize == rewards.NormalizeBatch {
			return true
		}
	}
	return false
}
