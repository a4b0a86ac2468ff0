package train

import (
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// scoredBatch is what the stages of a step hand on: the sampler fills Groups, the
// rewards Scores, the advantage stage Advantages; the learner takes its samples from it,
// and the step's metrics, diagnostics and completions.jsonl are functions of it (of the
// whole step's, gathered on rank 0, in a job). It is also what a rank reports to rank 0
// on the wire (job.gather), which is why only those three fields are exported.
type scoredBatch struct {
	// Groups are the step's prompts (this rank's share), each with its row's fields and
	// every completion sampled for it: with plurality_vote's vote_n the whole vote group,
	// whose answers the diagnostics read.
	Groups []rewards.Group
	// Scores[k][i][j] is reward k's score of completion j of group i, for the training
	// group only (the first groupSize completions).
	Scores [][][]rewards.Score
	// Advantages[i][j] is the advantage of training completion j of group i.
	Advantages [][]float64

	// groupSize is the training group's size (sampling.group_size), at where the batch
	// lies in the step's prompts.
	groupSize int
	at        share
}

// share is where a rank's groups lie among a step's prompts: groups lo…hi of prompts.
type share struct {
	lo, hi, prompts int
}

// training returns the groups cut to their training completions (the first groupSize
// of a vote group): those that have scores and advantages.
func (b *scoredBatch) training() []rewards.Group {
	out := make([]rewards.Group, len(b.Groups))
	for i, g := range b.Groups {
		out[i] = g
		out[i].Completions = g.Completions[:min(b.groupSize, len(g.Completions))]
	}
	return out
}

// keepTraining cuts each reward's scores to the training completions. TTRL's vote group
// (plurality_vote's vote_n): every reward scored all of a prompt's completions, which all
// voted; the advantages and the learner take the first group_size of them, as TTRL's
// select_top_k_per_prompt does (a prompt's completions are drawn alike, so the first are
// as good a subset as any). Without vote_n the two are the same.
func (b *scoredBatch) keepTraining() {
	for k := range b.Scores {
		for i, g := range b.Scores[k] {
			b.Scores[k][i] = g[:min(b.groupSize, len(g))]
		}
	}
}

// samples are the learner's samples of the batch: each training completion with its
// advantage.
func (b *scoredBatch) samples() []learner.Sample {
	var out []learner.Sample
	for i, g := range b.training() {
		for j, comp := range g.Completions {
			// The importance weight divides by the probability of the distribution each
			// token was drawn from: after top-k/top-p/min-p truncation, not before.
			out = append(out, learner.Sample{Prompt: comp.PromptTokens, Completion: comp.Tokens, Advantage: b.Advantages[i][j], SamplerLogProb: comp.SampledLogProb,
				Truncated: comp.FinishReason == rollout.FinishLength})
		}
	}
	return out
}
