package learner

import (
	"fmt"
	"math"

	"github.com/rlif/rlif/policy/rollout"
)

// Gap is the largest |Δ| between two scorings of the same tokens, statistic by
// statistic: LogProb at the scoring temperature, the others at temperature 1.
type Gap struct {
	LogProb       float64 `json:"logprob"`
	RawLogProb    float64 `json:"raw_logprob"`
	Entropy       float64 `json:"entropy"`
	SelfCertainty float64 `json:"self_certainty"`
}

// Max is the largest of the four.
func (g Gap) Max() float64 { return max(g.LogProb, g.RawLogProb, g.Entropy, g.SelfCertainty) }

// Scorer scores tokens after the first promptLen: the sampler's side of a parity check.
type Scorer interface {
	Score(tokens []int32, promptLen int, temperature float64) ([]rollout.TokenStats, error)
}

// Parity scores toks (after the first) in the sampler and in the learner at temperature
// and returns the largest differences: the one comparison that `rlif check` and the
// parity tests make.
func Parity(m *Model, s Scorer, toks []int32, temperature float64) (Gap, error) {
	want, err := s.Score(toks, 1, temperature)
	if err != nil {
		return Gap{}, fmt.Errorf("sampler score: %w", err)
	}
	got, err := m.Score([]Sequence{{Tokens: toks, PromptLen: 1}}, temperature)
	if err != nil {
		return Gap{}, fmt.Errorf("learner score: %w", err)
	}
	return CompareStats(got[0], want)
}

// CompareStats returns the Gap between two scorings; a NaN on either side makes that
// statistic's gap infinite.
func CompareStats(got, want []rollout.TokenStats) (Gap, error) {
	if len(got) != len(want) {
		return Gap{}, fmt.Errorf("learner scored %d tokens, sampler %d", len(got), len(want))
	}
	var g Gap
	d := func(acc *float64, a, b float64) {
		if math.IsNaN(a) || math.IsNaN(b) {
			*acc = math.Inf(1)
			return
		}
		*acc = math.Max(*acc, math.Abs(a-b))
	}
	for i := range got {
		d(&g.LogProb, got[i].LogProb, want[i].LogProb)
		d(&g.RawLogProb, got[i].RawLogProb, want[i].RawLogProb)
		d(&g.Entropy, got[i].Entropy, want[i].Entropy)
		d(&g.SelfCertainty, got[i].SelfCertainty, want[i].SelfCertainty)
	}
	return g, nil
}
