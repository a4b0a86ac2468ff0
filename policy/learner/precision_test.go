package learner

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/meminfo"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

func TestResolvePrecision(t *testing.T) {
	cases := []struct {
		prec          string
		cuda, cpuBF16 bool
		bf16, note    bool
		err           string
	}{
		{"", false, true, true, false, ""},
		{"auto", false, true, true, false, ""},
		{"auto", true, false, true, false, ""},
		{"auto", false, false, false, true, ""},
		{"bf16", false, false, true, false, ""},
		{"f32", true, true, false, false, ""},
		{"fp16", false, true, false, false, `precision "fp16": want auto, bf16 or f32`},
	}
	for _, c := range cases {
		bf16, note, err := resolvePrecision(c.prec, c.cuda, c.cpuBF16)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.prec, err, c.err)
			}
			continue
		}
		if err != nil || bf16 != c.bf16 || (note != "") != c.note || strings.Contains(note, "\n") {
			t.Errorf("%q cuda=%v cpu=%v: bf16 %v note %q err %v; want bf16 %v, note %v", c.prec, c.cuda, c.cpuBF16, bf16, note, err, c.bf16, c.note)
		}
	}
	if _, err := Load(testutil.StoriesModel(t), Options{Precision: "f64"}); err == nil {
		t.Error("Load accepted precision f64")
	}
}

// TestTokenLogProbs: the completion-only pass gives the full statistics pass's log-probs
// at the masked positions and zero elsewhere. Tolerance: the full pass evaluates the
// log-softmax in float64, this one in float32 (unit roundoff 2⁻²⁴) over logits of size M:
// a few ε₃₂M; under bf16 the two passes may also round a logit to neighbouring bf16
// values (shapes differ), ≤ u·M each, so 2u·M.
func TestTokenLogProbs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		m := openLearnerPrec(t, testutil.StoriesModel(t), prec)
		const B, T = 3, 40
		b := &torch.Batch{B: B, T: T, Tokens: randomTokens(rng, B*T), Lengths: []int32{40, 25, 33}}
		mask := make([]float32, B*T)
		for i := 0; i < B; i++ {
			for j := 10; j < int(b.Lengths[i]); j++ {
				mask[i*T+j] = 1
			}
		}
		full, err := m.t.LogProbs(b, 0.8, false, true)
		must(t, err)
		got, err := m.logProbs(b, mask, 0.8, false)
		must(t, err)
		tolOf := func(M float64) float64 { return 8 * 0x1p-24 * M / 0.8 }
		if prec == PrecisionBF16 {
			tolOf = func(M float64) float64 { return 2 * bf16Unit * M / 0.8 }
		}
		for k := range got {
			if mask[k] == 0 {
				if got[k] != 0 {
					t.Fatalf("%s: position %d outside the mask has log-prob %g", prec, k, got[k])
				}
				continue
			}
			if d := math.Abs(got[k] - full.LogProb[k]); !(d <= tolOf(full.MaxAbsLogit[k])) || got[k] >= 0 {
				t.Fatalf("%s: position %d: %g, full pass %g (|Δ| %.3g)", prec, k, got[k], full.LogProb[k], d)
			}
		}
	}
}

// TestNoReferencePassBeforeUpdate: before the first optimizer step the reference is the
// policy, so a step with β > 0 runs no reference forward (and reports KL 0); after it, one
// per micro-batch. For full fine-tuning (a frozen copy) and for LoRA (the base).
func TestNoReferencePassBeforeUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var samples []Sample
	for i := 0; i < 4; i++ {
		samples = append(samples, Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 8), Advantage: float64(i) - 1.5})
	}
	for _, lora := range []bool{false, true} {
		m := openLearner(t, testutil.StoriesModel(t))
		if lora {
			must(t, m.EnableLoRA(LoRAConfig{Rank: 4, Seed: 1}))
		}
		tr, err := NewTrainer(m, TrainConfig{Beta: 0.1, MicroBatch: 2, LR: 1e-3})
		must(t, err)
		st, err := tr.Step(samples)
		must(t, err)
		if tr.refPasses != 0 || st.KL != 0 {
			t.Errorf("lora=%v step 1: %d reference passes, KL %g; want 0, 0", lora, tr.refPasses, st.KL)
		}
		st, err = tr.Step(samples)
		must(t, err)
		if tr.refPasses != 2 || !(st.KL > 0) {
			t.Errorf("lora=%v step 2: %d reference passes, KL %g; want 2, > 0", lora, tr.refPasses, st.KL)
		}
		tr.Close()
	}
}

// TestNoReferenceAtBetaZero: with β = 0 (TRL's default) the trainer holds no reference
// copy of the weights and runs no reference forward, after updates too, and reports KL 0.
func TestNoReferenceAtBetaZero(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var samples []Sample
	for i := 0; i < 4; i++ {
		samples = append(samples, Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 8), Advantage: float64(i) - 1.5})
	}
	m := openLearner(t, testutil.StoriesModel(t))
	tr, err := NewTrainer(m, TrainConfig{MicroBatch: 2, LR: 1e-3})
	must(t, err)
	defer tr.Close()
	if tr.ref != nil {
		t.Fatal("β = 0: the trainer loaded a reference copy of the weights")
	}
	for step := 1; step <= 3; step++ {
		st, err := tr.Step(samples)
		must(t, err)
		if tr.refPasses != 0 || st.KL != 0 {
			t.Errorf("step %d: %d reference passes, KL %g; want 0, 0", step, tr.refPasses, st.KL)
		}
	}
}

// TestRecomputeDecision: auto keeps the activations of a small micro-batch, recomputes
// those of one too large for the memory, says so once per change, and on/off force it.
func TestRecomputeDecision(t *testing.T) {
	m := openLearner(t, testutil.StoriesModel(t))
	var log bytes.Buffer
	tr, err := NewTrainer(m, TrainConfig{Log: &log})
	must(t, err)
	if _, ok := meminfo.Available(); !ok {
		t.Skip("no /proc/meminfo")
	}
	if tr.recomputeFor(4, 64) || tr.recomputeFor(4, 64) {
		t.Error("auto recomputes a 4×64 micro-batch of a 260K model")
	}
	if !tr.recomputeFor(1<<20, 1<<14) {
		t.Error("auto keeps the activations of a 2²⁰×2¹⁴ micro-batch")
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "keeping activations") || !strings.Contains(lines[1], "recomputing activations") {
		t.Errorf("log %q: want one line per decision change", log.String())
	}
	for mode, want := range map[string]bool{RecomputeOn: true, RecomputeOff: false} {
		tr, err := NewTrainer(m, TrainConfig{ActivationRecompute: mode})
		must(t, err)
		if got := tr.recomputeFor(1<<20, 1<<14); got != want {
			t.Errorf("%s: recompute %v", mode, got)
		}
	}
	if _, err := NewTrainer(m, TrainConfig{ActivationRecompute: "sometimes"}); err == nil {
		t.Error("activation recompute \"sometimes\" accepted")
	}

	// A budget: the same micro-batch is kept under a budget with room for its
	// activations, and recomputed under one that the activations would pass. In use is
	// what recomputeFor counts: the resident set less the allocator's free memory.
	rss, err := meminfo.RSS()
	must(t, err)
	inUse := max(0, rss-torch.AllocatorFreeBytes())
	need := int64(activationBytes(m.info, 16, 256))
	for _, tc := range []struct {
		budget int64
		want   bool
	}{{inUse + 2*need + 1<<30, false}, {inUse + need/2, true}} {
		log.Reset()
		tr, err := NewTrainer(m, TrainConfig{MemoryBudget: tc.budget, Log: &log})
		must(t, err)
		if got := tr.recomputeFor(16, 256); got != tc.want || !strings.Contains(log.String(), "GiB budget (learner.memory_budget_gib)") {
			t.Errorf("budget %d bytes, %d in use, %d needed: recompute %v, want %v; log %q", tc.budget, inUse, need, got, tc.want, log.String())
		}
	}
}

// TestChunkedHeadGradients: an output layer computed chunk by chunk (logits over the
// budget) gives the loss, statistics and gradients of the whole one, with and without
// activation recompute.
func TestChunkedHeadGradients(t *testing.T) {
	path := randomModel(t, gguf.RandomSpec{Arch: "llama", Embd: 32, Layers: 2, Heads: 4, HeadsKV: 2, FF: 48, Seed: 31})
	rng := rand.New(rand.NewPCG(31, 32))
	const B, T = 3, 12
	b := &torch.Batch{B: B, T: T, Tokens: randomTokens(rng, B*T), Lengths: []int32{12, 8, 11}}
	a := &torch.LossArgs{Mask: make([]float32, B*T), Advantages: []float32{1, -1, 0.5}, Temperature: 0.9, EpsLow: 0.2, EpsHi: 0.2}
	for i := 0; i < B; i++ {
		for j := 3; j < int(b.Lengths[i]); j++ {
			a.Mask[i*T+j] = 1
		}
	}
	whole := openLearner(t, path)
	chunked, err := Load(path, Options{Threads: 1, Precision: PrecisionF32, headChunkBytes: int64(4 * 3 * whole.info.Vocab)}) // 3 positions at a time
	must(t, err)
	defer chunked.Close()
	for _, recompute := range []bool{false, true} {
		a.Recompute = recompute
		var stats [2]torch.LossStats
		var grads [2]map[string][]float32
		for k, m := range []*Model{whole, chunked} {
			a.RowWeight = rowWeights(a.Mask, B, T, true, 3)
			stats[k], grads[k] = lossGradients(t, m, b, a)
		}
		if math.Abs(stats[0].Loss-stats[1].Loss) > 1e-6 || stats[0].RatioSum != stats[1].RatioSum || stats[0].Tokens != stats[1].Tokens {
			t.Fatalf("recompute=%v: loss stats %+v, chunked %+v", recompute, stats[0], stats[1])
		}
		sameGradients(t, fmt.Sprintf("recompute=%v, chunked", recompute), grads[0], grads[1])
		if len(grads[0]["token_embd.weight"]) == 0 {
			t.Fatalf("recompute=%v: no embedding gradient", recompute)
		}
	}
}

// A learner asked for a CUDA device where libtorch sees none (a CPU libtorch, or a CUDA one
// on a machine without a GPU) learns on the CPU and says so in one line; an index past the
// devices there are is refused.
func TestCUDAFallsBackToCPU(t *testing.T) {
	if n := torch.CUDADevices(); n > 0 {
		t.Skipf("libtorch sees %d CUDA device(s): the fall-back cannot happen here", n)
	}
	for _, dev := range []string{"cuda", "cuda:1"} {
		m, err := Load(testutil.StoriesModel(t), Options{Threads: 1, Device: dev, Precision: PrecisionF32})
		if err != nil {
			t.Fatalf("device %q: %v", dev, err)
		}
		note, where := m.Info().PrecisionNote, m.Info().Device
		m.Close()
		if where != "cpu" {
			t.Errorf("device %q: the weights are on %q, want cpu", dev, where)
		}
		if !strings.Contains(note, "learning on the CPU") || !strings.Contains(note, dev) || strings.Count(note, "\n") != 0 {
			t.Errorf("device %q: note %q, want one line naming the device and the CPU", dev, note)
		}
	}
}
