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

func openLearner(t testing.TB, path string) *Model {
	t.Helper()
	m, err := Load(path, Options{Threads: 2})
	if err != nil {
		t.Fatalf("learner: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// maxDelta is the largest difference between two runs of statistics, field by field.
type maxDelta struct{ logprob, raw, entropy, sc float64 }

func (d maxDelta) max() float64 { return max(d.logprob, d.raw, d.entropy, d.sc) }

func compareStats(t testing.TB, got, want []rollout.TokenStats) maxDelta {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d statistics, want %d", len(got), len(want))
	}
	var d maxDelta
	for i := range got {
		d.logprob = math.Max(d.logprob, math.Abs(got[i].LogProb-want[i].LogProb))
		d.raw = math.Max(d.raw, math.Abs(got[i].RawLogProb-want[i].RawLogProb))
		d.entropy = math.Max(d.entropy, math.Abs(got[i].Entropy-want[i].Entropy))
		d.sc = math.Max(d.sc, math.Abs(got[i].SelfCertainty-want[i].SelfCertainty))
	}
	return d
}

// parity scores the same tokens in both bodies and returns the largest differences.
func parity(t testing.TB, m *Model, s *sampler.Model, toks []int32, temp float64) maxDelta {
	t.Helper()
	want, err := s.Score(toks, 1, temp)
	if err != nil {
		t.Fatalf("sampler score: %v", err)
	}
	got, err := m.Score([]Sequence{{Tokens: toks, PromptLen: 1}}, temp)
	if err != nil {
		t.Fatalf("learner score: %v", err)
	}
	// A distribution that is nearly flat or nearly one-hot would make agreement easy;
	// the test models must give spread-out, varying log-probs.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, st := range want {
		lo, hi = math.Min(lo, st.RawLogProb), math.Max(hi, st.RawLogProb)
	}
	if hi-lo < 1 {
		t.Fatalf("sampler log-probs span only [%g, %g]: the test says nothing", lo, hi)
	}
	return compareStats(t, got[0], want)
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
	m := openLearner(t, path)
	toks := tokens(t, s, 400)
	for _, temp := range []float64{1, 0.7} {
		d := parity(t, m, s, toks, temp)
		t.Logf("T=%g: max |Δ| logprob %.2e raw %.2e entropy %.2e self-certainty %.2e over %d tokens", temp, d.logprob, d.raw, d.entropy, d.sc, len(toks)-1)
		if d.max() > 1e-4 {
			t.Errorf("T=%g: learner and llama.cpp differ by %.3g (> 1e-4): %+v", temp, d.max(), d)
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
	d := parity(t, m, s, toks, 1)
	t.Logf("max |Δ| logprob %.2e entropy %.2e self-certainty %.2e over %d tokens", d.raw, d.entropy, d.sc, len(toks)-1)
	if d.max() > 1e-3 {
		t.Errorf("learner and llama.cpp differ by %.3g (> 1e-3): %+v", d.max(), d)
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
			t.Logf("max |Δ| logprob %.2e entropy %.2e self-certainty %.2e", d.raw, d.entropy, d.sc)
			if d.max() > 1e-4 {
				t.Errorf("learner and llama.cpp differ by %.3g (> 1e-4): %+v", d.max(), d)
			}
			// the learner's own export of this architecture (biases, q/k norms, post-norms,
			// rope_freqs, tied or not) must load back into llama.cpp unchanged
			re := filepath.Join(t.TempDir(), "export.gguf")
			must(t, m.Export(re, "f32"))
			must(t, s.Reload(re))
			if d := parity(t, m, s, toks, 1); d.max() > 1e-4 {
				t.Errorf("after export and reload: learner and llama.cpp differ by %.3g", d.max())
			}
		})
	}
}
