package builtin

import (
	"context"
	"fmt"
	"math"
	"regexp"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/answer"
)

// tokenMean is a reward equal to sign × the mean of one per-token statistic.
type tokenMean struct {
	name string
	sign float64
	stat func(*rollout.Completion) []float64
}

func selfCertaintyStat(c *rollout.Completion) []float64 { return c.SelfCertainty }
func entropyStat(c *rollout.Completion) []float64       { return c.Entropy }

func (r tokenMean) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		for j := range g.Completions {
			xs := r.stat(&g.Completions[j])
			if len(xs) == 0 {
				out[i][j] = rewards.NA()
				continue
			}
			m := moments.Mean(xs)
			if math.IsNaN(m) || math.IsInf(m, 0) {
				return nil, fmt.Errorf("%s: group %d completion %d: per-token statistics are not finite", r.name, i, j)
			}
			out[i][j] = rewards.Of(r.sign * m)
		}
	}
	return out, nil
}

// clusters groups the completions of g by their final answers (answer.Cluster).
func clusters(g rewards.Group) answer.Clusters {
	answers := make([]string, len(g.Completions))
	for j := range g.Completions {
		answers[j], _ = answer.Extract(g.Completions[j].Text)
	}
	return answer.Cluster(answers)
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

// pluralityVote is TTRL's reward: the most frequent answer of the group is the
// pseudo-label (answer.Clusters.Plurality: a tie goes to the answer that appeared
// first), as for an evaluation's maj@k.
type pluralityVote struct{}

func (pluralityVote) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
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
