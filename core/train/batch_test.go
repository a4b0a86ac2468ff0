package train

import (
	"testing"

	"github.com/rlif/rlif/rewards"
)

// A vote group (plurality_vote's vote_n): every completion is scored and kept for the
// diagnostics, but the scores, advantages, learner samples and completions.jsonl are of
// the training group, the first group_size completions.
func TestScoredBatchTrainsOnTheFirstOfAVoteGroup(t *testing.T) {
	b := &scoredBatch{
		Groups:    []rewards.Group{{Prompt: "p", Completions: completions("a", "b", "c", "d")}},
		Scores:    [][][]rewards.Score{{score(1, 2, 3, 4)}, {score(5, 6, 7, 8)}},
		groupSize: 2,
	}
	b.keepTraining()
	for k, s := range b.Scores {
		if len(s[0]) != 2 || s[0][1].Value != float64(2+4*k) {
			t.Fatalf("reward %d keeps %v", k, s[0])
		}
	}
	b.Advantages = [][]float64{{0.5, -0.5}}
	if tr := b.training(); len(tr[0].Completions) != 2 || len(b.Groups[0].Completions) != 4 {
		t.Fatalf("training group of %d, vote group of %d", len(tr[0].Completions), len(b.Groups[0].Completions))
	}
	s := b.samples()
	if len(s) != 2 || s[0].Advantage != 0.5 || s[1].Advantage != -0.5 {
		t.Fatalf("samples %+v", s)
	}
}
