package learner

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
)

// parityText is long enough for a few hundred tokens on the stories vocabulary.
const parityText = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ` +
	`One day, she saw a big red ball near the tree. She wanted to play with it, but it was too high. ` +
	`Lily asked her mom for help. Her mom smiled and said, "Let's get it together!" They jumped and jumped ` +
	`until the ball fell down. Lily was very happy. She played with the ball all day long. When the sun went ` +
	`down, Lily and her mom went home. They ate a yummy dinner and talked about their fun day. Lily said, ` +
	`"Thank you, mom, for helping me." Her mom hugged her and said, "I love you, Lily." The next morning, ` +
	`Lily woke up early. She saw a little bird outside her window. The bird was singing a happy song. ` +
	`Lily wanted to sing too, so she opened the window and sang with the bird.`

// openSampler loads path into llama.cpp with an f32 KV cache (the f16 cache alone moves
// log-probs by ~1e-3, more than the tolerances here).
func openSampler(t testing.TB, path string) *sampler.Model {
	t.Helper()
	s, err := sampler.Load(path, sampler.Options{Threads: 2, KVCacheF32: true, ContextSize: 1024, MaxSequences: 1})
	if err != nil {
		t.Fatalf("sampler: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// openLearner loads path into a float32 learner: the precision every exact test assumes.
func openLearner(t testing.TB, path string) *Model {
	t.Helper()
	return openLearnerPrec(t, path, PrecisionF32)
}

func openLearnerPrec(t testing.TB, path, precision string) *Model {
	t.Helper()
	m, err := Load(path, Options{Threads: 2, Precision: precision})
	if err != nil {
		t.Fatalf("learner: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

func compareStats(t testing.TB, got, want []rollout.TokenStats) Gap {
	t.Helper()
	g, err := CompareStats(got, want)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// parity scores the same tokens in both bodies and returns the largest differences.
func parity(t testing.TB, m *Model, s *sampler.Model, toks []int32, temp float64) Gap {
	t.Helper()
	// A distribution that is nearly flat or nearly one-hot would make agreement easy;
	// the test models must give spread-out, varying log-probs.
	want, err := s.Score(toks, 1, temp)
	if err != nil {
		t.Fatalf("sampler score: %v", err)
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, st := range want {
		lo, hi = math.Min(lo, st.RawLogProb), math.Max(hi, st.RawLogProb)
	}
	if hi-lo < 1 {
		t.Fatalf("sampler log-probs span only [%g, %g]: the test says nothing", lo, hi)
	}
	g, err := Parity(m, s, toks, temp)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// bf16Unit is bfloat16's unit roundoff: 8 significant bits, round to nearest, 2⁻⁸.
const bf16Unit = 1.0 / 256

// checkBF16Parity compares a bf16 learner with llama.cpp in f32 token by token, against
// tolerances derived from bf16 rounding. The output layer returns bf16 logits, each off
// by at most u·|z_v|; the rounding of every matmul's inputs upstream adds errors of the
// same relative size that mostly cancel, which we allow for by doubling: u' = 2u. To
// first order, with M = max_v |z_v|:
//   - log p_t = z_t − logsumexp(z) moves by ≤ |Δz_t| + max|Δz_v| ≤ 2u'M, and at
//     temperature T by ≤ 2u'M/T;
//   - self-certainty = logsumexp(z) − mean(z) − log V moves by ≤ 2u'M;
//   - entropy H: ∂H/∂z_v = −p_v(z_v − E_p z) and z_v − E_p z = log p_v + H, so
//     |ΔH| ≤ u'M·E_p|log p + H| ≤ u'M·2H, plus the float64 evaluation of
//     logsumexp(z) − E_p z, two terms of size M: 4ε₆₄M (it is all that is left when the
//     distribution is one-hot and H ≈ 0).
//
// Everything else (softmax, norms, the loss) is float32 and far below these.
//
// That bound holds on CPUs with native bf16 (AVX-512 BF16, AMX), the only ones where rlif
// computes in bf16 unless told to. Elsewhere libtorch runs bf16 through portable kernels
// (on an AVX2 EPYC its GEMM was checked to accumulate in float32 with one output rounding;
// where the rest of the extra error arises was not traced) and the errors
// reached 1.76× the bound on 3 of 8 random architectures. There the check asserts a
// bound 4× wider, which still fails a wrong forward (an error of the size of M), and
// logs how far the native bound was exceeded.
func checkBF16Parity(t testing.TB, m *Model, s *sampler.Model, toks []int32, temp float64) Gap {
	t.Helper()
	g := parity(t, m, s, toks, temp) // the spread check, and the gap to report
	want, err := s.Score(toks, 1, temp)
	must(t, err)
	b, err := m.batch([]Sequence{{Tokens: toks, PromptLen: 1}})
	must(t, err)
	st, err := m.t.LogProbs(b, float32(temp), false, true)
	must(t, err)
	u := 2 * bf16Unit
	if !cpuHasBF16() {
		u *= 4
		t.Logf("no native bf16 on this CPU: asserting 4× the native tolerance (largest |Δ|/tolerance below is against the wider bound)")
	}
	bad, worst := 0, map[string]float64{}
	for j, w := range want {
		k := 1 + j
		M := st.MaxAbsLogit[k]
		for _, c := range []struct {
			name      string
			got, want float64
			tol       float64
		}{
			{"log-prob", st.LogProb[k], w.LogProb, 2 * u * M / temp},
			{"raw log-prob", st.RawLogProb[k], w.RawLogProb, 2 * u * M},
			{"self-certainty", st.SelfCertainty[k], w.SelfCertainty, 2 * u * M},
			{"entropy", st.Entropy[k], w.Entropy, 2*u*M*w.Entropy + 4*0x1p-52*M},
		} {
			d := math.Abs(c.got - c.want)
			worst[c.name] = math.Max(worst[c.name], d/c.tol)
			if !(d <= c.tol) {
				if bad++; bad <= 5 {
					t.Errorf("token %d: bf16 %s %.6f, llama.cpp %.6f: |Δ| %.3g > %.3g (max |logit| %.2f)", k, c.name, c.got, c.want, d, c.tol, M)
				}
			}
		}
	}
	t.Logf("bf16 T=%g: largest |Δ|/tolerance: %v", temp, worst)
	if g.Max() == 0 {
		t.Errorf("bf16 learner equals llama.cpp's f32 exactly: bf16 compute is not in effect")
	}
	return g
}

func tokens(t testing.TB, s *sampler.Model, n int) []int32 {
	t.Helper()
	toks, err := s.Tokenize(strings.Repeat(parityText+" ", 4), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) < n {
		t.Fatalf("only %d tokens", len(toks))
	}
	return toks[:n]
}

func TestParityStories(t *testing.T) {
	path := testutil.StoriesModel(t)
	s := openSampler(t, path)
	toks := tokens(t, s, 400)
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		m := openLearnerPrec(t, path, prec)
		for _, temp := range []float64{1, 0.7} {
			if prec == PrecisionBF16 {
				d := checkBF16Parity(t, m, s, toks, temp)
				t.Logf("bf16 T=%g: max |Δ| logprob %.2e raw %.2e entropy %.2e self-certainty %.2e over %d tokens", temp, d.LogProb, d.RawLogProb, d.Entropy, d.SelfCertainty, len(toks)-1)
				continue
			}
			d := parity(t, m, s, toks, temp)
			t.Logf("f32 T=%g: max |Δ| logprob %.2e raw %.2e entropy %.2e self-certainty %.2e over %d tokens", temp, d.LogProb, d.RawLogProb, d.Entropy, d.SelfCertainty, len(toks)-1)
			if d.Max() > 1e-4 {
				t.Errorf("T=%g: learner and llama.cpp differ by %.3g (> 1e-4): %+v", temp, d.Max(), d)
			}
		}
	}
}

func TestParitySmolLM2F32(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a 135M model twice")
	}
	m := openLearner(t, testutil.DefaultModel(t))
	f32 := filepath.Join(t.TempDir(), "smollm2-f32.gguf")
	// Compare from the same weights: the learner holds the dequantized Q4_1 values, so
	// the sampler gets them back as f32 and quantization error is not counted.
	if err := m.Export(f32, "f32"); err != nil {
		t.Fatal(err)
	}
	s := openSampler(t, f32)
	toks := tokens(t, s, 300)
	db := checkBF16Parity(t, openLearnerPrec(t, testutil.DefaultModel(t), PrecisionBF16), s, toks, 1)
	t.Logf("bf16: max |Δ| logprob %.2e entropy %.2e self-certainty %.2e", db.RawLogProb, db.Entropy, db.SelfCertainty)
	d := parity(t, m, s, toks, 1)
	t.Logf("max |Δ| logprob %.2e entropy %.2e self-certainty %.2e over %d tokens", d.RawLogProb, d.Entropy, d.SelfCertainty, len(toks)-1)
	if d.Max() > 1e-3 {
		t.Errorf("learner and llama.cpp differ by %.3g (> 1e-3): %+v", d.Max(), d)
	}
}

// TestParityArchitectures proves each architecture's forward pass against llama.cpp on a
// small random model written here.
func TestParityArchitectures(t *testing.T) {
	tok, err := gguf.Open(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []gguf.RandomSpec{
		{Arch: "qwen2", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 128, Tied: true, RopeBase: 1e6, Seed: 1},
		{Arch: "qwen3", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 128, RopeBase: 1e6, Seed: 2},
		{Arch: "qwen3", Embd: 64, Layers: 1, Heads: 4, HeadsKV: 4, FF: 128, Tied: true, Seed: 5},
		{Arch: "olmo2", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 4, FF: 128, RopeBase: 5e5, Seed: 3},
		{Arch: "olmo2", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 128, Seed: 6},
		{Arch: "llama", Embd: 64, Layers: 2, Heads: 8, HeadsKV: 2, FF: 96, Tied: true, Seed: 4},
		{Arch: "llama", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 4, FF: 96, RopeBase: 1e6, Seed: 7},
		{Arch: "llama", Embd: 64, Layers: 2, Heads: 4, HeadsKV: 2, FF: 96, RopeBase: 5e5, RopeFreqs: true, Seed: 8},
	}
	for _, spec := range cases {
		t.Run(fmt.Sprintf("%s/heads%d-kv%d/tied=%v/base%g/freqs=%v", spec.Arch, spec.Heads, spec.HeadsKV, spec.Tied, spec.RopeBase, spec.RopeFreqs), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), spec.Arch+".gguf")
			if err := gguf.WriteRandomModel(path, spec, tok); err != nil {
				t.Fatal(err)
			}
			s := openSampler(t, path)
			m := openLearner(t, path)
			if got := m.Info().Arch; got != spec.Arch {
				t.Fatalf("arch %q, want %q", got, spec.Arch)
			}
			toks := tokens(t, s, 200)
			d := parity(t, m, s, toks, 1)
			t.Logf("max |Δ| logprob %.2e entropy %.2e self-certainty %.2e", d.RawLogProb, d.Entropy, d.SelfCertainty)
			if d.Max() > 1e-4 {
				t.Errorf("learner and llama.cpp differ by %.3g (> 1e-4): %+v", d.Max(), d)
			}
			// the learner's own export of this architecture (biases, q/k norms, post-norms,
			// rope_freqs, tied or not) must load back into llama.cpp unchanged
			re := filepath.Join(t.TempDir(), "export.gguf")
			must(t, m.Export(re, "f32"))
			must(t, s.Reload(re))
			if d := parity(t, m, s, toks, 1); d.Max() > 1e-4 {
				t.Errorf("after export and reload: learner and llama.cpp differ by %.3g", d.Max())
			}
			db := checkBF16Parity(t, openLearnerPrec(t, path, PrecisionBF16), s, toks, 1)
			t.Logf("bf16: max |Δ| logprob %.2e entropy %.2e self-certainty %.2e", db.RawLogProb, db.Entropy, db.SelfCertainty)
		})
	}
}
