package builtin

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"sort"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/answer"
)

// Token windows of the per-token rewards (entropy, self_certainty): which of a
// completion's tokens their mean is over. RENT (arXiv 2505.22660) finds the entropy of
// the last tokens, and of the answer's, tracks correctness better than the whole
// completion's.
const (
	// WindowAll: every generated token (an end-of-generation token included).
	WindowAll = "all"
	// WindowLast: the last k generated tokens (all of them when there are fewer).
	WindowLast = "last"
	// WindowAnswer: the tokens that spell the final answer, as rewards/answer finds it
	// (answer.Locate: inside the last \boxed{}, after "####", after "answer is", or else
	// the last number), mapped to tokens by the completion's TokenEnds; a token that
	// spelled part of the answer counts whole.
	WindowAnswer = "answer"
)

// tokenWindow selects the tokens of a completion that a per-token reward averages.
type tokenWindow struct {
	kind string
	k    int // the window's length, for WindowLast
}

// span returns the tokens [lo, hi) of c's n tokens in the window; ok is false when
// the window holds none (an empty completion, one without an answer).
func (w tokenWindow) span(c *rollout.Completion, n int) (lo, hi int, ok bool, err error) {
	switch w.kind {
	case WindowLast:
		return max(0, n-w.k), n, n > 0, nil
	case WindowAnswer:
		start, end, found := answer.Locate(c.Text)
		if !found {
			return 0, 0, false, nil
		}
		if len(c.TokenEnds) != n {
			return 0, 0, false, fmt.Errorf("completion has %d token_ends for %d tokens: the answer window maps the answer to tokens by where each token's text ends (rlif's sampler records them; completions read from a file need their token_ends)", len(c.TokenEnds), n)
		}
		// Token i spelled Text[TokenEnds[i-1]:TokenEnds[i]]; the tokens that overlap
		// [start, end) are the first one ending after start up to the first one ending
		// at or after end.
		lo = sort.Search(n, func(i int) bool { return int(c.TokenEnds[i]) > start })
		hi = min(n, sort.Search(n, func(i int) bool { return int(c.TokenEnds[i]) >= end })+1)
		return lo, hi, lo < hi, nil
	default:
		return 0, n, n > 0, nil
	}
}

// tokenMean is a reward equal to sign × the mean of one per-token statistic over a
// window of the completion's tokens.
type tokenMean struct {
	name   string
	sign   float64
	stat   func(*rollout.Completion) []float64
	window tokenWindow
}

func selfCertaintyStat(c *rollout.Completion) []float64 { return c.SelfCertainty }
func entropyStat(c *rollout.Completion) []float64       { return c.Entropy }

func (r tokenMean) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	return perCompletion(ctx, r.name, groups, func(c *rollout.Completion) (float64, bool, error) {
		xs := r.stat(c)
		lo, hi, ok, err := r.window.span(c, len(xs))
		if !ok || err != nil {
			return 0, false, err
		}
		return r.sign * moments.Mean(xs[lo:hi]), true, nil
	})
}

// perCompletion scores every completion of every group on its own: score returns the
// completion's score, or ok = false for "not applicable". A score that is not finite
// is an error, named with the reward, the group and the completion.
func perCompletion(ctx context.Context, name string, groups []rewards.Group, score func(*rollout.Completion) (v float64, ok bool, err error)) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		for j := range g.Completions {
			v, ok, err := score(&g.Completions[j])
			switch {
			case err != nil:
				return nil, fmt.Errorf("%s: group %d completion %d: %w", name, i, j, err)
			case !ok:
				out[i][j] = rewards.NA()
			case !num.Finite(v):
				return nil, fmt.Errorf("%s: group %d completion %d: per-token statistics are not finite", name, i, j)
			default:
				out[i][j] = rewards.Of(v)
			}
		}
	}
	return out, nil
}

// How trajectory_entropy aggregates the chosen tokens' log-probabilities.
const (
	// AggregateMean: (1/T) Σ_t log π(y_t | y_<t, x), the URLVR code's
	// trajectory_level_entropy (masked_mean of the old log-probs).
	AggregateMean = "mean"
	// AggregateSum: Σ_t log π(y_t | y_<t, x) = log π(y | x), the unnormalized
	// single-sample estimate of the negative trajectory entropy −H(π(·|x)).
	AggregateSum = "sum"
)

// trajectoryEntropy is EM-RL's trajectory-level entropy reward (arXiv 2505.15134): the
// trajectory entropy H(π(·|x)) = E_y[−log π(y|x)] is estimated from the one sampled
// trajectory by −log π(y|x), and the reward is its negative, from the chosen-token
// log-probabilities the sampler records (Completion.LogProb: log softmax(z/T), the
// temperature-scaled distribution the token was drawn from before truncation, which is
// what verl's old_log_probs hold). By default the sum is divided by the length, as the
// URLVR code of "How Far Can Unsupervised RLVR Scale" (PRIME-RL/TTRL, urlvr-dev,
// compute_certainty_reward, "trajectory_level_entropy": masked_mean of old_log_probs)
// does; aggregate = "sum" keeps the unnormalized log π(y|x), which favours short
// completions as strongly as a per-sequence likelihood does.
type trajectoryEntropy struct{ mean bool }

func (r trajectoryEntropy) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	return perCompletion(ctx, TrajectoryEntropy, groups, func(c *rollout.Completion) (float64, bool, error) {
		if len(c.LogProb) == 0 {
			return 0, false, nil
		}
		if r.mean {
			return moments.Mean(c.LogProb), true, nil
		}
		return sum(c.LogProb), true, nil
	})
}

// sequenceProbability is the URLVR code's "probability" estimator: π(y|x) =
// exp(Σ_t log π(y_t | y_<t, x)) (masked_sum of the old log-probs, then exp), from
// Completion.LogProb as trajectory_entropy. It is not length-normalized: beyond a few
// dozen tokens it is tiny and, past about 745 nats, 0 in float64, where the group's
// scores stop differing.
type sequenceProbability struct{}

func (sequenceProbability) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	return perCompletion(ctx, SequenceProbability, groups, func(c *rollout.Completion) (float64, bool, error) {
		if len(c.LogProb) == 0 {
			return 0, false, nil
		}
		return math.Exp(sum(c.LogProb)), true, nil
	})
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

// clusters groups the completions of g by their final answers (answer.ClusterTexts).
func clusters(g rewards.Group) answer.Clusters {
	return answer.ClusterTexts(g.Texts())
}

// semanticEntropy is EMPO's reward: the empirical probability of the completion's
// semantic cluster, |cluster| / G.
type semanticEntropy struct{}

func (semanticEntropy) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		c := clusters(g)
		allDistinct := true
		for _, n := range c.Size {
			if n > 1 {
				allDistinct = false
			}
		}
		for j, k := range c.Of {
			v := 0.0
			if k >= 0 && !allDistinct {
				v = float64(c.Size[k]) / float64(len(g.Completions))
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}

// Modes of the plurality_vote reward.
const (
	// VoteMode: TTRL's reward, 1 for the group's most frequent answer, else 0.
	VoteMode = "vote"
	// HybridMode: the URLVR code's "hybrid" ground truth (PRIME-RL/TTRL, urlvr-dev,
	// apply_hybrid_gt): the gold answer is the label, except in a group where no
	// completion matches it; there, when some completion has an answer, the vote's
	// label replaces it. A row without a gold answer is voted on.
	HybridMode = "hybrid"
)

// pluralityVote is TTRL's reward: the most frequent answer of the group is the
// pseudo-label (answer.Clusters.Plurality: a tie goes to the answer that appeared
// first), as for an evaluation's maj@k; in HybridMode the gold answer of the row's
// field is the label where some completion matches it. It scores the group it is
// given: with vote_n the trainer gives it all vote_n completions and trains on the
// first group_size.
type pluralityVote struct {
	hybrid bool
	field  string // the gold answer's field, in HybridMode
}

func (r pluralityVote) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		if r.hybrid && goldLabels(g, r.field, out[i]) {
			continue
		}
		c := clusters(g)
		label, ok := c.Plurality()
		if !ok {
			for j := range out[i] {
				out[i][j] = rewards.NA()
			}
			continue
		}
		for j, k := range c.Of {
			v := 0.0
			if k == label {
				v = 1
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}

// goldLabels scores the completions of g against the gold answer in its field (the
// accuracy reward's rule, answer.Check) into out, and reports whether it did: it does
// not when the row has no gold answer or no completion matches it.
func goldLabels(g rewards.Group, field string, out []rewards.Score) bool {
	gold := answer.Prepare(answer.Gold(g.Fields[field]))
	if gold.Empty() {
		return false
	}
	any := false
	for j := range g.Completions {
		v := 0.0
		if _, _, correct := answer.Check(g.Completions[j].Text, gold); correct {
			v, any = 1, true
		}
		out[j] = rewards.Of(v)
	}
	return any
}

// Layouts of the format reward.
const (
	LayoutBoxed       = "boxed"
	LayoutThinkAnswer = "think_answer"
)

// layouts are the preset checks of the format reward.
var layouts = map[string]func(text string) bool{
	// A final answer in \boxed{…}, read as the answer rewards read it.
	LayoutBoxed: func(text string) bool {
		_, ok := answer.Boxed(text)
		return ok
	},
	LayoutThinkAnswer: regexp.MustCompile(`(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$`).MatchString,
}

// formatReward scores 1 when the completion text has the layout: match reports it.
type formatReward struct{ match func(text string) bool }

func newFormat(args map[string]any) (rewards.Func, error) {
	if err := checkArgs(args, []Arg{{Name: "pattern"}, {Name: "layout"}}); err != nil {
		return nil, err
	}
	pattern, err := stringArg(args, "pattern", "")
	if err != nil {
		return nil, err
	}
	layout, err := stringArg(args, "layout", "")
	if err != nil {
		return nil, err
	}
	if pattern != "" && layout != "" {
		return nil, fmt.Errorf("arguments %q and %q both given: use one", "pattern", "layout")
	}
	if pattern != "" {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", "pattern", err)
		}
		return formatReward{match: re.MatchString}, nil
	}
	if layout == "" {
		layout = LayoutBoxed
	}
	match, ok := layouts[layout]
	if !ok {
		return nil, fmt.Errorf("argument %q: unknown layout %q (want %q or %q)", "layout", layout, LayoutBoxed, LayoutThinkAnswer)
	}
	return formatReward{match: match}, nil
}

func (r formatReward) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		for j := range g.Completions {
			v := 0.0
			if r.match(g.Completions[j].Text) {
				v = 1
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}

// accuracyReward scores 1 when the completion's final answer is equivalent to the
// gold answer in the dataset field.
type accuracyReward struct{ field string }

func newAccuracy(args map[string]any) (rewards.Func, error) {
	if err := checkArgs(args, []Arg{{Name: "field"}}); err != nil {
		return nil, err
	}
	field, err := stringArg(args, "field", answer.GoldField)
	if err != nil {
		return nil, err
	}
	if field == "" {
		return nil, fmt.Errorf("argument %q: empty field name", "field")
	}
	return accuracyReward{field: field}, nil
}

func (r accuracyReward) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		gold := answer.Prepare(answer.Gold(g.Fields[r.field]))
		for j := range g.Completions {
			if gold.Empty() {
				out[i][j] = rewards.NA()
				continue
			}
			v := 0.0
			if _, _, correct := answer.Check(g.Completions[j].Text, gold); correct {
				v = 1
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}
