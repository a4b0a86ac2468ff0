// Package rollout holds the data that flows from the sampler to the rewards and the
// learner: completions and the per-token sufficient statistics of the logits that
// produced them. It is pure Go so that reward plugins can use it without cgo.
package rollout

import (
	"math"

	"github.com/rlif/rlif/internal/moments"
)

// Finish reasons of a completion.
const (
	FinishEOS    = "eos"    // the model produced an end-of-generation token
	FinishLength = "length" // max tokens (or the context) was reached
	FinishStop   = "stop"   // a stop string appeared in the text
)

// Completion is one sampled continuation of a prompt together with, for every generated
// token, the statistics of the distribution that produced it. The JSON form is what
// `rlif sample --json` prints and `rlif score` reads.
type Completion struct {
	// Prompt is the prompt text as the user gave it (before the chat template).
	Prompt string `json:"prompt,omitempty"`
	// Group identifies the group of completions sampled from the same prompt.
	Group string `json:"group,omitempty"`
	// PromptTokens are the token ids of the templated prompt, BOS included.
	PromptTokens []int32 `json:"prompt_tokens"`
	// Tokens are the generated token ids. When the completion ended at an
	// end-of-generation token, that token is the last element.
	Tokens       []int32 `json:"tokens"`
	Text         string  `json:"text"`
	FinishReason string  `json:"finish_reason"`

	// Per generated token (same length as Tokens):
	// LogProb is log softmax(z/T)[token] before any top-k/top-p/min-p truncation
	// (T = 1 when sampling greedily), the quantity the learner recomputes.
	LogProb []float64 `json:"logprob"`
	// RawLogProb is log softmax(z)[token].
	RawLogProb []float64 `json:"raw_logprob"`
	// Entropy is the entropy of softmax(z) in nats.
	Entropy []float64 `json:"entropy"`
	// SelfCertainty is KL(U || softmax(z)) = logsumexp(z) - mean(z) - log V.
	SelfCertainty []float64 `json:"self_certainty"`
	// SelfCertaintyMean is the mean of SelfCertainty (paper eq. 4); 0 when empty.
	SelfCertaintyMean float64 `json:"self_certainty_mean"`
}

// Mean returns the arithmetic mean of xs, or 0 for an empty slice: moments.Mean, the
// mean Finalize takes, here for reward plugins outside this module, which cannot
// import rlif's internal packages.
func Mean(xs []float64) float64 { return moments.Mean(xs) }

// TokenStats are the sufficient statistics of one next-token distribution.
type TokenStats struct {
	LogProb       float64 // log softmax(z/T)[token]
	RawLogProb    float64 // log softmax(z)[token]
	Entropy       float64 // entropy of softmax(z)
	SelfCertainty float64 // logsumexp(z) - mean(z) - log V
}

// Append adds one token and its statistics to the completion.
func (c *Completion) Append(tok int32, s TokenStats) {
	c.Tokens = append(c.Tokens, tok)
	c.LogProb = append(c.LogProb, s.LogProb)
	c.RawLogProb = append(c.RawLogProb, s.RawLogProb)
	c.Entropy = append(c.Entropy, s.Entropy)
	c.SelfCertainty = append(c.SelfCertainty, s.SelfCertainty)
}

// Finalize computes the derived fields (SelfCertaintyMean).
func (c *Completion) Finalize() {
	c.SelfCertaintyMean = Mean(c.SelfCertainty)
}

// Valid reports whether the per-token arrays agree in length and hold finite numbers.
func (c *Completion) Valid() bool {
	n := len(c.Tokens)
	if len(c.LogProb) != n || len(c.RawLogProb) != n || len(c.Entropy) != n || len(c.SelfCertainty) != n {
		return false
	}
	for i := 0; i < n; i++ {
		for _, v := range [...]float64{c.LogProb[i], c.RawLogProb[i], c.Entropy[i], c.SelfCertainty[i]} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return false
			}
		}
	}
	return true
}
