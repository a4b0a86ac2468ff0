package train

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
	"github.com/rlif/rlif/rewards"
)

// The sample stage: a step's prompts are drawn, this rank takes its share, and the
// sampler decodes a group of completions for each.

// sample draws step's prompts and samples this rank's share of them into a new batch
// (its Groups). A stop request ends sampling between tokens, not after the whole phase
// (minutes on a big step): the batch is then nil, nothing has changed, and the step is
// done again on resume.
func (r *run) sample(ctx context.Context, step int, m *Metrics) (*scoredBatch, error) {
	c := r.cfg
	t0 := time.Now()
	peak := phasePeak()
	r.live.beginStep(step)
	// Every rank draws all of the step's prompts, and keeps its share.
	idx := r.order.Next(c.Sampling.PromptsPerStep)
	at := share{prompts: len(idx)}
	at.lo, at.hi = r.job.share(len(idx))
	idx = idx[at.lo:at.hi]
	reqs := r.requests(idx)
	sp := r.sampleParams(step)
	sp.Progress = r.live.sampling
	sctx, cancel := r.untilStop(ctx)
	groups, err := r.smp.SampleAt(sctx, reqs, at.lo, c.VoteSize(), sp)
	cancel()
	m.Time.Sample = time.Since(t0).Seconds()
	switch {
	case err != nil && ctx.Err() == nil && r.stopAsked():
		fmt.Fprintf(r.progress, "step %d: sampling interrupted by the stop request; the step is done again on resume\n", step)
		return nil, nil
	case errors.Is(err, sampler.ErrNotFinite) && r.tr.Steps() > 0:
		return nil, &divergedError{step: step - 1, lr: c.Learner.LR, err: err}
	case err != nil:
		return nil, fmt.Errorf("sample: %w", err)
	}
	if err := r.rescoreSelfCertainty(groups); err != nil {
		return nil, err
	}
	m.Time.Sample = time.Since(t0).Seconds()
	m.Peak.Sample = peak()
	b := &scoredBatch{Groups: make([]rewards.Group, len(groups)), groupSize: c.Sampling.GroupSize, at: at}
	for i, g := range groups {
		b.Groups[i] = rewards.Group{Prompt: reqs[i].Prompt, Fields: r.rows[idx[i]].Fields, Completions: g}
	}
	return b, nil
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
