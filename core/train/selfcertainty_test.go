package train

import (
	"context"
	"math"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
)

// self_certainty.source = learner | offline replaces the completions' self-certainty with
// that model's, and nothing else: the entropy (the entropy reward, entropy/mean) and the
// log-probs stay those of the sampler that drew the tokens. The other model here has
// other weights, so every statistic it computes differs from the sampler's.
func TestSelfCertaintySourceReplacesOnlySelfCertainty(t *testing.T) {
	stories := testutil.StoriesModel(t)
	other := testutil.NegateTail(t, stories, 64<<10)
	smp, err := sampler.Load(stories, sampler.Options{Threads: 1, ContextSize: 1024, MaxSequences: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Close()
	const temp = 1.0
	reqs := []sampler.Request{{Prompt: "Once upon a time", Raw: true}, {Prompt: "The dog", Raw: true}}
	params := sampler.Params{MaxTokens: 16, Temperature: temp, Seed: 9}

	for _, source := range []string{"learner", "offline"} {
		t.Run(source, func(t *testing.T) {
			groups, err := smp.Sample(context.Background(), reqs, 2, params)
			if err != nil {
				t.Fatal(err)
			}
			before := cloneGroups(groups)
			r := &run{cfg: config.Default()}
			r.cfg.SelfCertainty.Source = source
			r.cfg.Sampling.Temperature = temp
			var score func(c rollout.Completion) []rollout.TokenStats
			switch source {
			case "learner":
				// f32: the check below compares one batch with rows scored alone at float32
				// rounding; in bf16 (the default on CPUs with native bf16) the two layouts
				// round differently by ~0.1 nats, which is not what this test is about.
				if r.lrn, err = learner.Load(other, learner.Options{Threads: 1, Precision: learner.PrecisionF32}); err != nil {
					t.Fatal(err)
				}
				defer r.lrn.Close()
				score = func(c rollout.Completion) []rollout.TokenStats {
					st, err := r.lrn.Score([]learner.Sequence{{Tokens: append(append([]int32(nil), c.PromptTokens...), c.Tokens...), PromptLen: len(c.PromptTokens)}}, temp)
					if err != nil {
						t.Fatal(err)
					}
					return st[0]
				}
			case "offline":
				if r.offline, err = sampler.Load(other, sampler.Options{Threads: 1, ContextSize: 1024, MaxSequences: 1}); err != nil {
					t.Fatal(err)
				}
				defer r.offline.Close()
				score = func(c rollout.Completion) []rollout.TokenStats {
					st, err := r.offline.Score(append(append([]int32(nil), c.PromptTokens...), c.Tokens...), len(c.PromptTokens), temp)
					if err != nil {
						t.Fatal(err)
					}
					return st
				}
			}
			if err := r.rescoreSelfCertainty(groups); err != nil {
				t.Fatal(err)
			}
			for i := range groups {
				for j, c := range groups[i] {
					b := before[i][j]
					want := score(b)
					entropyDiffers := false
					for k := range c.Tokens {
						// Scored alone here, in one batch there: float32 rounding apart.
						if d := math.Abs(c.SelfCertainty[k] - want[k].SelfCertainty); d > 1e-5*math.Max(1, math.Abs(want[k].SelfCertainty)) {
							t.Errorf("completion %d/%d token %d: self-certainty %g, the %s model's %g", i, j, k, c.SelfCertainty[k], source, want[k].SelfCertainty)
						}
						if c.Entropy[k] != b.Entropy[k] {
							t.Errorf("completion %d/%d token %d: entropy changed from the sampler's %g to %g", i, j, k, b.Entropy[k], c.Entropy[k])
						}
						if c.LogProb[k] != b.LogProb[k] || c.SampledLogProb[k] != b.SampledLogProb[k] {
							t.Errorf("completion %d/%d token %d: log-probs changed", i, j, k)
						}
						if math.Abs(want[k].Entropy-b.Entropy[k]) > 1e-3 {
							entropyDiffers = true
						}
					}
					if !entropyDiffers {
						t.Fatalf("completion %d/%d: the %s model's entropy equals the sampler's: the test cannot tell them apart", i, j, source)
					}
					if c.SelfCertaintyMean != rollout.Mean(c.SelfCertainty) {
						t.Errorf("completion %d/%d: self_certainty_mean %g not recomputed", i, j, c.SelfCertaintyMean)
					}
				}
			}
		})
	}
}

func cloneGroups(groups [][]rollout.Completion) [][]rollout.Completion {
	out := make([][]rollout.Completion, len(groups))
	for i, g := range groups {
		for _, c := range g {
			for _, xs := range []*[]float64{&c.LogProb, &c.SampledLogProb, &c.RawLogProb, &c.Entropy, &c.SelfCertainty} {
				*xs = append([]float64(nil), *xs...)
			}
			out[i] = append(out[i], c)
		}
	}
	return out
}
