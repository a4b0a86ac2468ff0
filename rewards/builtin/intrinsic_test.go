package builtin

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// spelled builds a completion whose tokens spelled pieces (their TokenEnds as the
// sampler records them), with per-token entropies and self-certainties.
func spelled(pieces []string, entropy, selfCertainty []float64) rollout.Completion {
	var c rollout.Completion
	var raw []byte
	var ends []int
	for i, p := range pieces {
		raw = append(raw, p...)
		ends = append(ends, len(raw))
		c.Append(int32(i), rollout.TokenStats{Entropy: entropy[i], SelfCertainty: selfCertainty[i]})
	}
	c.Text, c.TokenEnds = rollout.TextOf(raw, ends)
	c.Finalize()
	return c
}

// TestTokenWindows checks the token windows of entropy and self_certainty on means
// worked by hand: a sum for the mean, a wrong sign, a window off by one token or a
// window mapped from bytes as if they were tokens all give other numbers.
func TestTokenWindows(t *testing.T) {
	// Eight tokens, the last an end-of-generation token that spells nothing. The
	// answer "42" is tokens 3 and 4.
	boxed := spelled([]string{"We", " get", ` \boxed{`, "4", "2", "}", ".", ""},
		[]float64{1, 2, 3, 4, 6, 8, 10, 12}, []float64{0.5, 1, 1, 2, 3, 1, 1, 1})
	// A token that spelled part of the answer counts whole: " {7" and "0}" spell "70".
	merged := spelled([]string{"so", ` \boxed{7`, "0}", ""},
		[]float64{1, 2, 4, 100}, []float64{9, 3, 5, 0})
	// The last number, with its sign: "-3" is tokens 2 and 3.
	number := spelled([]string{"7 - 10 =", " ", "-", "3"},
		[]float64{5, 5, 1, 2}, []float64{1, 1, 4, 6})
	none := spelled([]string{"no", " idea"}, []float64{2, 4}, []float64{1, 3})
	empty := spelled(nil, nil, nil)
	group := rewards.Group{Completions: []rollout.Completion{boxed, merged, number, none, empty}}

	tests := []struct {
		name      string
		args      map[string]any
		entropy   []rewards.Score
		certainty []rewards.Score
	}{
		{"all tokens", nil,
			// entropy: −(1+2+3+4+6+8+10+12)/8 = −5.75; −(1+2+4+100)/4 = −26.75; −(5+5+1+2)/4 = −3.25; −3
			want(-5.75, -26.75, -3.25, -3, na), want(10.5/8, 17.0/4, 3, 2, na)},
		{"all tokens, named", map[string]any{"window": "all"},
			want(-5.75, -26.75, -3.25, -3, na), want(10.5/8, 17.0/4, 3, 2, na)},
		{"last 3", map[string]any{"window": "last", "k": int64(3)},
			// −(8+10+12)/3 = −10; −(2+4+100)/3; −(5+1+2)/3; fewer than 3 tokens: all of them
			want(-10, -106.0/3, -8.0/3, -3, na), want(1, 8.0/3, 11.0/3, 2, na)},
		{"last 1 from the plugin protocol's JSON number", map[string]any{"window": "last", "k": 1.0},
			want(-12, -100, -2, -4, na), want(1, 0, 6, 3, na)},
		{"answer span", map[string]any{"window": "answer"},
			// "42": −(4+6)/2 = −5; "70": −(2+4)/2 = −3; "-3": −(1+2)/2 = −1.5; no answer: n/a
			want(-5, -3, -1.5, na, na), want(2.5, 4, 5, na, na)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, "entropy", score(t, Entropy, tt.args, group)[0], tt.entropy)
			assertScores(t, "self_certainty", score(t, SelfCertainty, tt.args, group)[0], tt.certainty)
		})
	}
}

// The answer window needs to know which bytes each token spelled: a completion without
// TokenEnds (one read from a file that lacks them) is an error that says so, not a
// silent "not applicable".
func TestAnswerWindowNeedsTokenEnds(t *testing.T) {
	c := completion(`\boxed{5}`, []float64{1, 2}, []float64{1, 2})
	f, err := New(Entropy, map[string]any{"window": "answer"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Score(context.Background(), []rewards.Group{{Completions: []rollout.Completion{c}}})
	if err == nil || !strings.Contains(err.Error(), "token_ends") || !strings.Contains(err.Error(), "group 0 completion 0") {
		t.Fatalf("err = %v, want one naming the completion and its token_ends", err)
	}
}

// withLogProbs builds a completion whose chosen tokens had log-probabilities lp; its
// other log-probabilities (raw, sampled) and entropies are decoys a wrong field would
// read.
func withLogProbs(lp ...float64) rollout.Completion {
	var c rollout.Completion
	for i, x := range lp {
		c.Append(int32(i), rollout.TokenStats{LogProb: x, RawLogProb: 10 * x, SampledLogProb: x / 2, Entropy: 7, SelfCertainty: 7})
	}
	c.Finalize()
	return c
}

// TestTrajectoryRewards checks trajectory_entropy and sequence_probability on sums
// worked by hand; a wrong sign, the sum for the mean (or the mean for the sum), the
// raw or sampled log-probs for the temperature-scaled ones, or no exp all give other
// numbers.
func TestTrajectoryRewards(t *testing.T) {
	g := rewards.Group{Completions: []rollout.Completion{
		withLogProbs(-0.5, -1.5, -1),    // Σ = −3, mean −1
		withLogProbs(-0.25),             // Σ = mean = −0.25
		withLogProbs(0, -2, -0.5, -1.5), // Σ = −4, mean −1
		withLogProbs(),                  // no tokens: n/a
	}}
	tests := []struct {
		name string
		args map[string]any
		want []rewards.Score
	}{
		{TrajectoryEntropy, nil, want(-1, -0.25, -1, na)},
		{TrajectoryEntropy, map[string]any{"aggregate": "mean"}, want(-1, -0.25, -1, na)},
		{TrajectoryEntropy, map[string]any{"aggregate": "sum"}, want(-3, -0.25, -4, na)},
		{SequenceProbability, nil, want(math.Exp(-3), math.Exp(-0.25), math.Exp(-4), na)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, tt.name, score(t, tt.name, tt.args, g)[0], tt.want)
		})
	}
	// A long completion's probability underflows to 0, a finite score.
	long := make([]float64, 1000)
	for i := range long {
		long[i] = -1
	}
	assertScores(t, "underflow", score(t, SequenceProbability, nil, rewards.Group{Completions: []rollout.Completion{withLogProbs(long...)}})[0], want(0))
	// A log-prob that is not finite is an error, not a score.
	f, _ := New(TrajectoryEntropy, nil)
	if _, err := f.Score(context.Background(), []rewards.Group{{Completions: []rollout.Completion{withLogProbs(-1, math.Inf(-1))}}}); err == nil || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("−Inf log-prob: err = %v, want a 'not finite' error", err)
	}
}

// TestPluralityVoteHybrid checks the hybrid mode: the gold answer is the label where
// some completion matches it, the vote's label where none does or the row has none.
func TestPluralityVoteHybrid(t *testing.T) {
	gold := func(answer string, g rewards.Group) rewards.Group {
		g.Fields = map[string]string{"answer": answer}
		return g
	}
	tests := []struct {
		name  string
		group rewards.Group
		want  []rewards.Score
	}{
		{"gold matched by a minority: gold is the label",
			gold("3", texts(`\boxed{3}`, `\boxed{4}`, `\boxed{4}`, "none")), want(1, 0, 0, 0)},
		{"GSM8K gold", gold("so 2 * 2 = 4\n#### 4", texts(`\boxed{3}`, `\boxed{4.0}`, `\boxed{3}`)), want(0, 1, 0)},
		{"gold matched by none: the vote's label",
			gold("5", texts(`\boxed{3}`, `\boxed{4}`, `\boxed{4}`, "none")), want(0, 1, 1, 0)},
		{"no gold: the vote's label", texts(`\boxed{3}`, `\boxed{4}`, `\boxed{4}`), want(0, 1, 1)},
		{"empty gold: the vote's label", gold("  ", texts(`\boxed{3}`, `\boxed{3}`, `\boxed{4}`)), want(1, 1, 0)},
		{"no answers at all", gold("5", texts("a", "b")), want(na, na)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, tt.name, score(t, PluralityVote, map[string]any{"mode": "hybrid"}, tt.group)[0], tt.want)
		})
	}
	// The default mode ignores the gold answer; field names another gold field.
	g := gold("3", texts(`\boxed{3}`, `\boxed{4}`, `\boxed{4}`))
	assertScores(t, "vote mode", score(t, PluralityVote, nil, g)[0], want(0, 1, 1))
	g.Fields["label"] = "#### 4"
	assertScores(t, "field", score(t, PluralityVote, map[string]any{"mode": "hybrid", "field": "label"}, g)[0], want(0, 1, 1))
	g.Fields["label"] = "3"
	assertScores(t, "field", score(t, PluralityVote, map[string]any{"mode": "hybrid", "field": "label"}, g)[0], want(1, 0, 0))
}

// vote_n changes what the trainer samples, not what the reward computes: the reward
// votes over the group it is given.
func TestVoteSize(t *testing.T) {
	tests := []struct {
		args map[string]any
		want int
		err  string
	}{
		{nil, 0, ""},
		{map[string]any{"vote_n": int64(16)}, 16, ""},
		{map[string]any{"vote_n": 16.0}, 16, ""}, // the plugin protocol's JSON
		{map[string]any{"vote_n": int64(1)}, 0, "at least 2"},
		{map[string]any{"vote_n": 3.5}, 0, "whole number"},
	}
	for _, tt := range tests {
		n, err := VoteSize(tt.args)
		if n != tt.want || (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("VoteSize(%v) = %d, %v; want %d and an error with %q", tt.args, n, err, tt.want, tt.err)
		}
	}
	g := texts(`\boxed{1}`, `\boxed{2}`, `\boxed{2}`)
	assertScores(t, "vote_n", score(t, PluralityVote, map[string]any{"vote_n": int64(8)}, g)[0], want(0, 1, 1))
}
