// Package rollout holds the data that flows from the sampler to the rewards and the
// learner: completions and the per-token sufficient statistics of the logits that
// produced them. It is pure Go so that reward plugins can use it without cgo.
package rollout

import (
	"strings"
	"unicode/utf8"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/internal/num"
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
	Tokens []int32 `json:"tokens"`
	// Text is valid UTF-8 (see ValidText): the bytes of the tokens, up to a stop string,
	// with invalid sequences replaced. The bytes need not be valid (a character cut by
	// the token limit, byte-fallback tokens); Tokens stay the authoritative record.
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason"`
	// TokenEnds are, per generated token, where its text ends in Text: token i spelled
	// Text[TokenEnds[i-1]:TokenEnds[i]] (Text[:TokenEnds[0]] for the first). They never
	// decrease and the last is at most len(Text); a token that spelled nothing (an
	// end-of-generation token, the rest of a stop string) ends where the one before it
	// did. A byte that ValidText replaced counts as its replacement. They map a span of
	// the text (an answer) to the tokens that spelled it. Empty when not known (a
	// completion that did not come from rlif's sampler).
	TokenEnds []int32 `json:"token_ends,omitempty"`

	// Per generated token (same length as Tokens):
	// LogProb is log softmax(z/T)[token] before any top-k/top-p/min-p truncation
	// (T = 1 when sampling greedily), the quantity the learner recomputes.
	LogProb []float64 `json:"logprob"`
	// SampledLogProb is the log-probability of the token under the distribution it was
	// actually drawn from: softmax(z/T) renormalized over the tokens top-k/top-p/min-p
	// kept (equal to LogProb when none is on; 0 when decoding greedily). The learner's
	// truncated importance-sampling weight divides by it. Empty when not known (a
	// completion that did not come from the sampler, or from the plugin protocol).
	SampledLogProb []float64 `json:"sampled_logprob,omitempty"`
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

// ValidText returns s as valid UTF-8: each byte that does not start a valid encoding
// is replaced by U+FFFD, the rule of Go's range loops and encoding/json (so a completion
// reads the same in a plugin, in completions.jsonl and in `rlif sample --json`). Valid
// input is returned as it is, without a copy.
func ValidText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*utf8.UTFMax)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// TextOf returns the text of a completion whose tokens spelled raw, and where each
// token's text ends in it: ends[i] is where token i's bytes end in the bytes the tokens
// spelled, of which raw is a prefix (a stop string cut it short: ends beyond it end at
// its end). The text is ValidText(raw); each byte ValidText replaces becomes the three
// bytes of U+FFFD, and the ends move with it (see Completion.TokenEnds).
func TextOf(raw []byte, ends []int) (string, []int32) {
	text := ValidText(string(raw))
	// at[i] is where raw[i] lands in text; at[len(raw)] = len(text).
	at := make([]int32, len(raw)+1)
	out := 0
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 1 {
			at[i] = int32(out)
			out += utf8.RuneLen(utf8.RuneError)
			i++
			continue
		}
		for k := 0; k < size; k++ {
			at[i+k] = int32(out + k)
		}
		out += size
		i += size
	}
	at[len(raw)] = int32(out)
	tokenEnds := make([]int32, len(ends))
	for i, e := range ends {
		tokenEnds[i] = at[min(max(e, 0), len(raw))]
	}
	return text, tokenEnds
}

// TokenStats are the sufficient statistics of one next-token distribution.
type TokenStats struct {
	LogProb        float64 // log softmax(z/T)[token]
	SampledLogProb float64 // log of the token's probability in the distribution it was drawn from (LogProb when scored)
	RawLogProb     float64 // log softmax(z)[token]
	Entropy        float64 // entropy of softmax(z)
	SelfCertainty  float64 // logsumexp(z) - mean(z) - log V
}

// Append adds one token and its statistics to the completion.
func (c *Completion) Append(tok int32, s TokenStats) {
	c.Tokens = append(c.Tokens, tok)
	c.LogProb = append(c.LogProb, s.LogProb)
	c.SampledLogProb = append(c.SampledLogProb, s.SampledLogProb)
	c.RawLogProb = append(c.RawLogProb, s.RawLogProb)
	c.Entropy = append(c.Entropy, s.Entropy)
	c.SelfCertainty = append(c.SelfCertainty, s.SelfCertainty)
}

// Finalize computes the derived fields (SelfCertaintyMean).
func (c *Completion) Finalize() {
	c.SelfCertaintyMean = Mean(c.SelfCertainty)
}

// Valid reports whether the per-token arrays agree in length (SampledLogProb and
// TokenEnds may be empty), hold finite numbers, and TokenEnds are offsets into Text.
func (c *Completion) Valid() bool {
	n := len(c.Tokens)
	if len(c.LogProb) != n || len(c.RawLogProb) != n || len(c.Entropy) != n || len(c.SelfCertainty) != n {
		return false
	}
	if len(c.SampledLogProb) != 0 && len(c.SampledLogProb) != n {
		return false
	}
	if len(c.TokenEnds) != 0 && len(c.TokenEnds) != n {
		return false
	}
	for i, e := range c.TokenEnds {
		if e < 0 || int(e) > len(c.Text) || i > 0 && e < c.TokenEnds[i-1] {
			return false
		}
	}
	arrays := [][]float64{c.LogProb, c.SampledLogProb, c.RawLogProb, c.Entropy, c.SelfCertainty}
	for _, a := range arrays {
		for _, v := range a {
			if !num.Finite(v) {
				return false
			}
		}
	}
	return true
}
