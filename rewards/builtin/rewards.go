package builtin

import (
	"context"
	"fmt"
	"math"
	"regexp"

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
			m := rollout.Mean(xs)
			if math.IsNaN(m) || math.IsInf(m, 0) {
				return nil, fmt.Errorf("%s: group %d completion %d: per-token statistics are not finite", r.name, i, j)
			}
			out[i][j] = rewards.Of(r.sign * m)
		}
	}
	return out, nil
}

// clusters extracts the final answer of every completion of g and groups the
// completions whose answers are equivalent. cluster[j] is the cluster index of
// completion j, -1 when it has no answer; sizes[k] is the size of cluster k. Clusters
// are numbered in order of first appearance; a completion joins the first cluster
// whose first member's answer is equivalent to its own.
func clusters(g rewards.Group) (cluster []int, sizes []int) {
	cluster = make([]int, len(g.Completions))
	var reps []answer.Answer
	byKey := map[string]int{} // canonical key → cluster, to skip most comparisons
	for j := range g.Completions {
		cluster[j] = -1
		a, ok := answer.Extract(g.Completions[j].Text)
		if !ok {
			continue
		}
		p := answer.Prepare(a)
		k, found := byKey[p.Key()]
		if !found {
			k = -1
			for i, rep := range reps {
				if rep.Equivalent(p) {
					k = i
					break
				}
			}
			if k < 0 {
				k = len(reps)
				reps = append(reps, p)
				sizes = append(sizes, 0)
			}
			byKey[p.Key()] = k
		}
		cluster[j] = k
		sizes[k]++
	}
	return cluster, sizes
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
		cluster, sizes := clusters(g)
		allDistinct := true
		for _, n := range sizes {
			if n > 1 {
				allDistinct = false
			}
		}
		for j, k := range cluster {
			v := 0.0
			if k >= 0 && !allDistinct {
				v = float64(sizes[k]) / float64(len(g.Completions))
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}

// pluralityVote is TTRL's reward: the most frequent answer of the group is the
// pseudo-label (ties go to the answer that appeared first).
type pluralityVote struct{}

func (pluralityVote) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		cluster, sizes := clusters(g)
		if len(sizes) == 0 {
			for j := range out[i] {
				out[i][j] = rewards.NA()
			}
			continue
		}
		label := 0
		for k, n := range sizes {
			if n > sizes[label] {
				label = k
			}
		}
		for j, k := range cluster {
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

// layouts are the preset patterns of the format reward.
var layouts = map[string]string{
	LayoutBoxed:       `(?s)\\boxed\s*\{\s*[^\s}].*\}`,
	LayoutThinkAnswer: `(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$`,
}

// formatReward scores 1 when the completion text matches re.
type formatReward struct{ re *regexp.Regexp }

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
	switch {
	case pattern != "" && layout != "":
		return nil, fmt.Errorf("arguments %q and %q both given: use one", "pattern", "layout")
	case pattern == "":
		if layout == "" {
			layout = LayoutBoxed
		}
		p, ok := layouts[layout]
		if !ok {
			return nil, fmt.Errorf("argument %q: unknown layout %q (want %q or %q)", "layout", layout, LayoutBoxed, LayoutThinkAnswer)
		}
		pattern = p
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("argument %q: %w", "pattern", err)
	}
	return formatReward{re: re}, nil
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
			if r.re.MatchString(g.Completions[j].Text) {
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
	field, err := stringArg(args, "field", "answer")
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
			if a, ok := answer.Extract(g.Completions[j].Text); ok && answer.Prepare(a).Equivalent(gold) {
				v = 1
			}
			out[i][j] = rewards.Of(v)
		}
	}
	return out, nil
}
