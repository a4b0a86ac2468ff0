package learner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// sharedPromptSeqs are rows as a step's micro-batch holds them: two groups whose rows
// continue one prompt each (different prompt lengths, completions of different lengths,
// so both layouts pad), and a row whose prompt no other row has.
func sharedPromptSeqs(rng *rand.Rand) []Sequence {
	var seqs []Sequence
	for _, g := range []struct{ prompt, completions []int }{
		{[]int{9}, []int{7, 3, 6}},
		{[]int{12}, []int{4, 1}},
		{[]int{4}, []int{9}},
	} {
		p := randomTokens(rng, g.prompt[0])
		for _, n := range g.completions {
			seqs = append(seqs, Sequence{Tokens: append(append([]int32{}, p...), randomTokens(rng, n)...), PromptLen: len(p)})
		}
	}
	return seqs
}

// TestPromptSharingMatchesWholeRows: computing each shared prompt once (the shim's shared
// layout) gives the log-probs, loss and gradients of computing every row whole. Both run
// in f32, where the two layouts differ only in the order of the sums; the tolerances are
// those of TestChunkedHeadGradients, a float32 rounding scale.
func TestPromptSharingMatchesWholeRows(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2", "qwen3", "olmo2"} {
		t.Run(arch, func(t *testing.T) {
			path := randomModel(t, gguf.RandomSpec{Arch: arch, Embd: 32, Layers: 2, Heads: 4, HeadsKV: 2, FF: 48, Seed: 41})
			rng := rand.New(rand.NewPCG(41, 42))
			seqs := sharedPromptSeqs(rng)
			m := openLearnerPrec(t, path, PrecisionF32)
			shared, err := m.batch(seqs)
			must(t, err)
			if shared.PromptGroup == nil {
				t.Fatalf("batch of %d rows in 3 prompt groups not laid out shared", len(seqs))
			}
			if want := []int32{0, 0, 0, 1, 1, 2}; !slices.Equal(shared.PromptGroup, want) {
				t.Fatalf("prompt groups %v, want %v", shared.PromptGroup, want)
			}
			whole := *shared
			whole.PromptGroup, whole.PromptLength = nil, nil
			B, T := shared.B, shared.T
			mask := make([]float32, B*T)
			for i, s := range seqs {
				for j := s.PromptLen; j < len(s.Tokens); j++ {
					mask[i*T+j] = 1
				}
			}
			lp := [2][]float64{}
			for k, b := range []*torch.Batch{&whole, shared} {
				lp[k], err = m.t.TokenLogProbs(b, mask, 0.9, false)
				must(t, err)
			}
			for i := range lp[0] {
				if d := math.Abs(lp[0][i] - lp[1][i]); d > 1e-5 {
					t.Fatalf("log-prob %d: whole rows %g, shared prompts %g", i, lp[0][i], lp[1][i])
				}
			}
			st := [2]*torch.Stats{}
			for k, b := range []*torch.Batch{&whole, shared} {
				st[k], err = m.t.LogProbs(b, 1, false, true)
				must(t, err)
			}
			for i := range st[0].Entropy {
				if d := math.Abs(st[0].Entropy[i] - st[1].Entropy[i]); d > 1e-5 {
					t.Fatalf("entropy %d: whole rows %g, shared prompts %g", i, st[0].Entropy[i], st[1].Entropy[i])
				}
			}
			a := &torch.LossArgs{Mask: mask, Advantages: []float32{1, -1, 0.5, 0.7, -0.3, 2}, Temperature: 0.9, EpsLow: 0.2, EpsHi: 0.2,
				RowWeight: rowWeights(mask, B, T, true, 3)}
			for _, recompute := range []bool{false, true} {
				a.Recompute = recompute
				var stats [2]torch.LossStats
				var grads [2]map[string][]float32
				for k, b := range []*torch.Batch{&whole, shared} {
					stats[k], grads[k] = lossGradients(t, m, b, a)
				}
				if math.Abs(stats[0].Loss-stats[1].Loss) > 1e-6 || stats[0].Tokens != stats[1].Tokens {
					t.Fatalf("recompute=%v: loss stats %+v, shared %+v", recompute, stats[0], stats[1])
				}
				sameGradients(t, fmt.Sprintf("recompute=%v, shared prompts", recompute), grads[0], grads[1])
			}
		})
	}
}

// TestPromptGroupChecked: rows that claim one prompt group but hold different prompts are
// an error, not a silently wrong forward.
func TestPromptGroupChecked(t *testing.T) {
	path := randomModel(t, gguf.RandomSpec{Arch: "llama", Embd: 32, Layers: 1, Heads: 4, HeadsKV: 2, FF: 48, Seed: 5})
	m := openLearnerPrec(t, path, PrecisionF32)
	b, err := m.batch([]Sequence{{Tokens: []int32{5, 6, 7, 8}, PromptLen: 2}, {Tokens: []int32{5, 9, 7, 8}, PromptLen: 2}})
	must(t, err)
	b.PromptGroup, b.PromptLength = []int32{0, 0}, []int32{2, 2}
	mask := []float32{0, 0, 1, 1, 0, 0, 1, 1}
	_, err = m.t.TokenLogProbs(b, mask, 1, false)
	if err == nil || !strings.Contains(err.Error(), "share a prompt group but not its tokens") {
		t.Fatalf("error %v, want one about rows sharing a group but not its tokens", err)
	}
}

func TestPlanLayout(t *testing.T) {
	seq := func(prompt []int32, completion int) Sequence {
		return Sequence{Tokens: append(append([]int32{}, prompt...), make([]int32, completion)...), PromptLen: len(prompt)}
	}
	p1, p2 := []int32{1, 2, 3, 4, 5, 6}, []int32{7, 8}
	for _, c := range []struct {
		name          string
		seqs          []Sequence
		group         []int32
		whole, shared int
	}{
		{"one group", []Sequence{seq(p1, 4), seq(p1, 2), seq(p1, 3)}, []int32{0, 0, 0}, 3 * 10, 6 + 3*4},
		{"two groups", []Sequence{seq(p1, 4), seq(p2, 6)}, []int32{0, 1}, 2 * 10, 2*6 + 2*6},
		{"same prompt, not consecutive", []Sequence{seq(p1, 1), seq(p2, 1), seq(p1, 1)}, []int32{0, 1, 2}, 3 * 7, 3*6 + 3*1},
		{"empty completion", []Sequence{seq(p2, 0), seq(p2, 0)}, []int32{0, 0}, 2 * 2, 2 + 2*1},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := planLayout(c.seqs)
			if !slices.Equal(l.group, c.group) || l.whole != c.whole || l.shared != c.shared {
				t.Fatalf("plan %+v, want groups %v, whole %d, shared %d", l, c.group, c.whole, c.shared)
			}
		})
	}
}

// TestPhysicalOrder: a step's rows are grouped by prompt when that computes fewer
// positions, and stay sorted by length when it does not.
func TestPhysicalOrder(t *testing.T) {
	seq := func(prompt []int32, completion int) Sequence {
		return Sequence{Tokens: append(append([]int32{}, prompt...), make([]int32, completion)...), PromptLen: len(prompt)}
	}
	long := make([]int32, 40)
	long[0] = 9
	// Two groups with long prompts, interleaved by length: by length, each micro-batch
	// of 2 holds both prompts; grouped, one.
	grouped := []Sequence{seq(long, 10), seq(append([]int32{8}, long[1:]...), 9), seq(long, 8), seq(append([]int32{8}, long[1:]...), 7)}
	if got := physicalOrder(grouped, 2); !slices.Equal(got, []int{0, 2, 1, 3}) {
		t.Fatalf("long prompts: order %v, want the groups together [0 2 1 3]", got)
	}
	// Two groups with one-token prompts, each with a long and a short completion: grouped,
	// each micro-batch pads a short completion to a long one (61 + 59 positions); by
	// length, the long ones go together and the short ones (62 + 10).
	a, c := []int32{1}, []int32{2}
	byLen := []Sequence{seq(a, 30), seq(c, 29), seq(a, 3), seq(c, 4)}
	if got := physicalOrder(byLen, 2); !slices.Equal(got, []int{0, 1, 3, 2}) {
		t.Fatalf("short prompts: order %v, want by length [0 1 3 2]", got)
	}
}
