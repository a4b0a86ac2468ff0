package train

import (
	"context"
	"fmt"
	"time"

	"github.com/rlif/rlif/rewards"
)

// The score stage: every reward scores every group of the batch.

// score fills b.Scores with each reward's scores of the batch's groups, cut to the
// training completions (all of a vote group's completions are scored, as they all vote).
func (r *run) score(ctx context.Context, b *scoredBatch, m *Metrics) error {
	t0 := time.Now()
	r.live.setPhase("scoring")
	b.Scores = make([][][]rewards.Score, len(r.rewards))
	for k, f := range r.rewards {
		var err error
		if b.Scores[k], err = f.Score(ctx, b.Groups); err != nil {
			return fmt.Errorf("score: %w", err)
		}
	}
	b.keepTraining()
	m.Time.Score = time.Since(t0).Seconds()
	return nil
}
