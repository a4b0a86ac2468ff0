// Package advantage turns reward scores into GRPO advantages: each reward is
// normalized within its group, completions a reward marked "not applicable" are left
// out of that reward's statistics, and the weighted sum of the normalized rewards is
// the advantage of a completion.
//
// The definitions follow TRL's GRPO trainer (scale_rewards, with per-reward
// normalization before the sum) and the Intuitor reference: the group mean is
// subtracted, the standard deviation is the unbiased one (N−1), and ε = 1e-4 is
// added to it.
package advantage

import (
	"fmt"
	"math"
	"strings"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/answer"
)

// Epsilon is added to the standard deviation before dividing by it.
const Epsilon = 1e-4

// How the rewards are combined (Options.Mix).
const (
	// MixSum: Σ_k w_k · normalize_k(r_k).
	MixSum = "sum"
	// MixIntuitor: w_sc · normalize(self_certainty) + normalize(Σ_{k≠sc} w_k · r_k):
	// self-certainty is normalized on its own, the other rewards are summed with their
	// weights first and the sum is normalized as one reward. This is the Intuitor
	// reference implementation's rule, kept as it is: the normalization divides the
	// other rewards' weights away, so only their ratios matter (scaling them all changes
	// nothing, and with a single other reward its weight only sets the sign). Use MixSum
	// for weights that set each reward's share of the advantage.
	MixIntuitor = "intuitor"
)

// SelfCertaintyName is the name of the reward that MixIntuitor treats apart.
const SelfCertaintyName = "self_certainty"

// Options choose how advantages are computed. The zero value is MixSum with Epsilon.
type Options struct {
	// Mix is "sum" (default: each reward normalized on its own, then weighted) or
	// "intuitor" (the reference's rule, where the other rewards' weights only set their
	// ratios; see MixIntuitor).
	Mix string `toml:"mix" json:"mix,omitempty"`
	// Epsilon is added to standard deviations; 0 means the package's Epsilon.
	Epsilon float64 `toml:"epsilon" json:"epsilon,omitempty"`
	// EntropyFilterMax is EMPO's filter (arXiv 2504.05812): a group whose
	// semantic-cluster entropy (answer.Clusters.Entropy, in nats) is at or above it gets
	// advantage 0 for every completion, whatever the rewards; 0 turns it off. EMPO's
	// code filters at ln G, where no two answers agree; a lower value also drops the
	// groups that barely agree.
	EntropyFilterMax float64 `toml:"entropy_filter_max" json:"entropy_filter_max,omitempty"`
}

func (o Options) eps() float64 {
	if o.Epsilon == 0 {
		return Epsilon
	}
	return o.Epsilon
}

// Validate checks the options against the rewards they will mix.
func (o Options) Validate(specs []rewards.Spec) error {
	if o.Epsilon < 0 || !num.Finite(o.Epsilon) {
		return fmt.Errorf("advantage epsilon %v: want a finite number ≥ 0", o.Epsilon)
	}
	if !(o.EntropyFilterMax >= 0) || math.IsInf(o.EntropyFilterMax, 0) {
		return fmt.Errorf("entropy_filter_max = %v: want a finite number of nats > 0, or 0 for no filter", o.EntropyFilterMax)
	}
	switch o.Mix {
	case "", MixSum:
		return nil
	case MixIntuitor:
		sc := selfCertaintyIndex(specs)
		if sc < 0 {
			return fmt.Errorf("mix %q needs a built-in %q reward", MixIntuitor, SelfCertaintyName)
		}
		mode := ""
		for k, s := range specs {
			if k == sc {
				continue
			}
			if mode != "" && s.EffectiveNormalize() != mode {
				return fmt.Errorf("mix %q normalizes the sum of the rewards other than %s as one: their normalize settings differ (%q, %q)", MixIntuitor, SelfCertaintyName, mode, s.EffectiveNormalize())
			}
			mode = s.EffectiveNormalize()
		}
		return nil
	default:
		return fmt.Errorf("mix %q: want %q or %q", o.Mix, MixSum, MixIntuitor)
	}
}

func selfCertaintyIndex(specs []rewards.Spec) int {
	for k, s := range specs {
		// A plugin cannot take a built-in's name (the run's config refuses it), so the
		// name alone says this is the built-in self-certainty.
		if s.Name == SelfCertaintyName {
			return k
		}
	}
	return -1
}

// Normalize scales one reward's scores, given per group ([group][completion]), by
// mode (see rewards.NormalizeGroup and the others). Completions scored "not
// applicable" are left out of the means and standard deviations and get 0. A group
// with fewer than two applicable scores gets 0 everywhere except in "raw" mode.
func Normalize(scores [][]rewards.Score, mode string, eps float64) ([][]float64, error) {
	out := make([][]float64, len(scores))
	for i, g := range scores {
		out[i] = make([]float64, len(g))
		for j, s := range g {
			if s.Applicable && !num.Finite(s.Value) {
				return nil, fmt.Errorf("group %d completion %d: score %v is not a finite number", i, j, s.Value)
			}
		}
	}
	var batchStd float64
	switch mode {
	case rewards.NormalizeRaw:
		for i, g := range scores {
			for j, s := range g {
				if s.Applicable {
					out[i][j] = s.Value
				}
			}
		}
		return out, nil
	case rewards.NormalizeGroup, rewards.NormalizeNone, "":
	case rewards.NormalizeBatch:
		var all []float64
		for _, g := range scores {
			all = append(all, applicable(g)...)
		}
		_, batchStd = moments.MeanStd(all)
	default:
		return nil, rewards.CheckNormalize(mode)
	}
	for i, g := range scores {
		xs := applicable(g)
		if len(xs) < 2 {
			continue // a lone score is its own baseline: advantage 0
		}
		mean, std := moments.MeanStd(xs)
		scale := 1.0
		switch mode {
		case rewards.NormalizeGroup, "":
			scale = 1 / (std + eps)
		case rewards.NormalizeBatch:
			scale = 1 / (batchStd + eps)
		}
		for j, s := range g {
			if s.Applicable {
				out[i][j] = (s.Value - mean) * scale
			}
		}
	}
	return out, nil
}

func applicable(g []rewards.Score) []float64 {
	var xs []float64
	for _, s := range g {
		if s.Applicable {
			xs = append(xs, s.Value)
		}
	}
	return xs
}

// Compute returns the advantage of every completion ([group][completion]) from the
// scores of every reward: scores[k] holds specs[k]'s scores as [group][completion],
// all rewards with the same shape.
func Compute(specs []rewards.Spec, scores [][][]rewards.Score, opt Options) ([][]float64, error) {
	adv, err := compute(specs, scores, opt)
	if err != nil {
		return nil, err
	}
	// Finite scores and finite weights still overflow when the weights are huge (three
	// rewards of weight 1e308): an infinite advantage would turn the weights into NaN.
	for i, g := range adv {
		for j, a := range g {
			if !num.Finite(a) {
				return nil, weightsTooLarge(specs, i, j, "advantage", a)
			}
		}
	}
	return adv, nil
}

// weightsTooLarge is the error of a weighted sum (what) of finite scores that overflowed
// at group i, completion j.
func weightsTooLarge(specs []rewards.Spec, i, j int, what string, v float64) error {
	var ws []string
	for _, s := range specs {
		ws = append(ws, fmt.Sprintf("%s %g", s.Name, s.EffectiveWeight()))
	}
	return fmt.Errorf("group %d completion %d: %s %v is not finite: the rewards' weights (%s) are too large; scale them down", i, j, what, v, strings.Join(ws, ", "))
}

func compute(specs []rewards.Spec, scores [][][]rewards.Score, opt Options) ([][]float64, error) {
	if err := opt.Validate(specs); err != nil {
		return nil, err
	}
	if err := checkShapes(specs, scores); err != nil {
		return nil, err
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("no rewards to compute advantages from")
	}
	adv := zerosLike(scores[0])
	if opt.Mix == MixIntuitor {
		return intuitor(specs, scores, opt.eps(), adv)
	}
	for k, s := range specs {
		norm, err := Normalize(scores[k], s.EffectiveNormalize(), opt.eps())
		if err != nil {
			return nil, fmt.Errorf("reward %s: %w", s.Name, err)
		}
		addScaled(adv, norm, s.EffectiveWeight())
	}
	return adv, nil
}

// intuitor computes w_sc·normalize(sc) + normalize(Σ_{k≠sc} w_k·r_k). In the sum, a
// reward that is not applicable to a completion contributes nothing; a completion
// to which none of the other rewards applies is left out of the sum's statistics.
func intuitor(specs []rewards.Spec, scores [][][]rewards.Score, eps float64, adv [][]float64) ([][]float64, error) {
	sc := selfCertaintyIndex(specs)
	norm, err := Normalize(scores[sc], specs[sc].EffectiveNormalize(), eps)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", specs[sc].Name, err)
	}
	addScaled(adv, norm, specs[sc].EffectiveWeight())
	if len(specs) == 1 {
		return adv, nil
	}
	sum := make([][]rewards.Score, len(adv))
	mode := ""
	for i := range adv {
		sum[i] = make([]rewards.Score, len(adv[i]))
	}
	for k, s := range specs {
		if k == sc {
			continue
		}
		mode = s.EffectiveNormalize()
		w := s.EffectiveWeight()
		for i, g := range scores[k] {
			for j, x := range g {
				if !x.Applicable {
					continue
				}
				if !num.Finite(x.Value) {
					return nil, fmt.Errorf("reward %s: group %d completion %d: score %v is not a finite number", s.Name, i, j, x.Value)
				}
				v := sum[i][j].Value + w*x.Value
				if !num.Finite(v) {
					return nil, weightsTooLarge(specs, i, j, "weighted sum of the rewards other than "+SelfCertaintyName, v)
				}
				sum[i][j] = rewards.Of(v)
			}
		}
	}
	other, err := Normalize(sum, mode, eps)
	if err != nil {
		return nil, fmt.Errorf("sum of the rewards other than %s: %w", SelfCertaintyName, err)
	}
	addScaled(adv, other, 1)
	return adv, nil
}

// Filter applies EMPO's filter (Options.EntropyFilterMax) to advantages computed by
// Compute: it zeroes, in place, the advantages of every group i whose completions
// groups[i] have a semantic-cluster entropy (answer.ClusterTexts(…).Entropy) at or
// above the threshold, and returns how many groups it zeroed. It is a prompt-level
// mask, whatever rewards made the advantages: adv[i] may be fewer completions than
// groups[i] (the trainer's training group out of a larger vote group, all of whose
// answers count). With the filter off it changes nothing.
func (o Options) Filter(adv [][]float64, groups []rewards.Group) int {
	if o.EntropyFilterMax <= 0 {
		return 0
	}
	masked := 0
	for i := range adv {
		if o.Filters(GroupEntropy(groups[i])) {
			clear(adv[i])
			masked++
		}
	}
	return masked
}

// Filters reports whether EMPO's filter drops a group whose semantic-cluster entropy
// is h: the filter is on and h is at or above its threshold.
func (o Options) Filters(h float64) bool {
	return o.EntropyFilterMax > 0 && h >= o.EntropyFilterMax
}

// GroupEntropy is the semantic-cluster entropy of a group's final answers, in nats
// (answer.Clusters.Entropy): what EMPO's filter thresholds.
func GroupEntropy(g rewards.Group) float64 {
	return answer.ClusterTexts(g.Texts()).Entropy()
}

func checkShapes(specs []rewards.Spec, scores [][][]rewards.Score) error {
	if len(scores) != len(specs) {
		return fmt.Errorf("%d rewards configured but scores of %d given", len(specs), len(scores))
	}
	for k := 1; k < len(scores); k++ {
		if len(scores[k]) != len(scores[0]) {
			return fmt.Errorf("reward %s: scores for %d groups, reward %s: %d", specs[k].Name, len(scores[k]), specs[0].Name, len(scores[0]))
		}
		for i := range scores[k] {
			if len(scores[k][i]) != len(scores[0][i]) {
				return fmt.Errorf("reward %s: group %d: %d scores, reward %s: %d", specs[k].Name, i, len(scores[k][i]), specs[0].Name, len(scores[0][i]))
			}
		}
	}
	return nil
}

func zerosLike(scores [][]rewards.Score) [][]float64 {
	out := make([][]float64, len(scores))
	for i, g := range scores {
		out[i] = make([]float64, len(g))
	}
	return out
}

func addScaled(dst, src [][]float64, w float64) {
	for i := range dst {
		for j := range dst[i] {
			dst[i][j] += w * src[i][j]
		}
	}
}
