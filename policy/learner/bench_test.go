package learner

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// peakRSSMB is the process's peak resident memory (VmHWM) in MiB.
func peakRSSMB(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Logf("peak RSS unavailable: %v", err)
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// matmulGFLOPs measures libtorch's plain matmul (float32 or bfloat16) in this process:
// the reference peak that the learner's throughput is compared with.
func matmulGFLOPs(b *testing.B, threads int, bf16 bool) float64 {
	const n, reps = 1024, 20
	s, err := torch.MatmulBench(n, reps, threads, bf16)
	if err != nil {
		b.Fatal(err)
	}
	return 2 * n * n * n * reps / s / 1e9
}

// BenchmarkForwardBackward: one GRPO forward+backward of 8 sequences × 256 tokens (64
// prompt + 192 completion) on the default SmolLM2 model, in f32 and in bf16, as one batch
// or as micro-batches with gradient accumulation, with and without activation recompute,
// next to libtorch's plain matmul (of the same precision) measured in the same run.
// Run: go test -run '^$' -bench 'ForwardBackward$' -benchtime 2x ./policy/learner/
func BenchmarkForwardBackward(b *testing.B) {
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		b.Run("precision="+prec, func(b *testing.B) {
			m := openLearnerPrec(b, testutil.DefaultModel(b), prec)
			benchForwardBackward(b, m, 8, 256, 64, []benchCase{{8, true}, {2, false}, {8, false}})
			m.Close()
		})
	}
}

// BenchmarkLearnPhase compares, on a shared machine, what the learner did per batch
// before bf16 with what it does now, in rounds that run every variant once, so that
// contention from other jobs falls on all of them alike: 8 sequences × 256 tokens (64
// prompt + 192 completion) of SmolLM2 in micro-batches of 4 (the default config), the
// forward+backward in f32 with recompute (the old default), bf16 with recompute, bf16
// keeping activations; and the reference pass as it was (statistics in float64 at every
// position, f32) and as it is (completion positions only, f32 log-softmax, bf16 matmuls).
// Run: go test -run '^$' -bench 'LearnPhase' -benchtime 3x ./policy/learner/
func BenchmarkLearnPhase(b *testing.B) {
	f32 := openLearnerPrec(b, testutil.DefaultModel(b), PrecisionF32)
	bf16 := openLearnerPrec(b, testutil.DefaultModel(b), PrecisionBF16)
	const B, T, P, mb = 8, 256, 64, 4
	rng := rand.New(rand.NewPCG(1, 1))
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(rng.IntN(f32.info.Vocab))
	}
	var batches []*torch.Batch
	var args []*torch.LossArgs
	for lo := 0; lo < B; lo += mb {
		batch := &torch.Batch{B: mb, T: T, Tokens: toks[lo*T : (lo+mb)*T], Lengths: make([]int32, mb)}
		a := &torch.LossArgs{Mask: make([]float32, mb*T), Advantages: make([]float32, mb), Temperature: 1, EpsLow: 0.2, EpsHi: 0.2}
		for i := 0; i < mb; i++ {
			batch.Lengths[i] = T
			a.Advantages[i] = float32(lo+i) - 3.5
			for j := P; j < T; j++ {
				a.Mask[i*T+j] = 1
			}
		}
		a.RowWeight = rowWeights(a.Mask, mb, T, true, B)
		batches, args = append(batches, batch), append(args, a)
	}
	fb := func(m *Model, recompute bool) func() {
		return func() {
			for i, bt := range batches {
				a := *args[i]
				a.Recompute = recompute
				if _, err := m.t.LossBackward(bt, &a); err != nil {
					b.Fatal(err)
				}
			}
			must(b, m.t.ZeroGrad())
		}
	}
	variants := []struct {
		name string
		run  func()
	}{
		{"fwdbwd-f32-recompute", fb(f32, true)},
		{"fwdbwd-bf16-recompute", fb(bf16, true)},
		{"fwdbwd-bf16-keep", fb(bf16, false)},
		{"ref-f32-allstats", func() {
			for _, bt := range batches {
				if _, err := f32.t.LogProbs(bt, 1, false, false); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"ref-bf16-completion", func() {
			for i, bt := range batches {
				if _, err := bf16.logProbs(bt, args[i].Mask, 1, false); err != nil {
					b.Fatal(err)
				}
			}
		}},
	}
	for _, v := range variants {
		v.run() // warm-up: allocator and thread pool
	}
	sec := make([]float64, len(variants))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k, v := range variants {
			t0 := time.Now()
			v.run()
			sec[k] += time.Since(t0).Seconds()
		}
	}
	b.StopTimer()
	for k, v := range variants {
		b.ReportMetric(float64(B*T)*float64(b.N)/sec[k], v.name+"-tok/s")
	}
	b.ReportMetric(sec[0]/sec[2], "speedup-fwdbwd")
	b.ReportMetric(sec[3]/sec[4], "speedup-ref")
	b.ReportMetric(peakRSSMB(b), "peak-RSS-MiB")
}

// BenchmarkForwardBackwardLong: one sequence of 2,048 tokens (the paper's completion
// lengths) in bf16 with activation recompute, for its peak memory; run alone, as peak
// RSS is per process:
// go test -run '^$' -bench 'ForwardBackwardLong' -benchtime 1x ./policy/learner/
func BenchmarkForwardBackwardLong(b *testing.B) {
	m := openLearnerPrec(b, testutil.DefaultModel(b), PrecisionBF16)
	benchForwardBackward(b, m, 1, 2048, 64, []benchCase{{1, true}})
}

type benchCase struct {
	mb        int
	recompute bool
}

func benchForwardBackward(b *testing.B, m *Model, B, T, P int, cases []benchCase) {
	rng := rand.New(rand.NewPCG(1, 1))
	toks := make([]int32, B*T)
	for i := range toks {
		toks[i] = int32(rng.IntN(m.info.Vocab))
	}
	bf16 := m.info.Precision == PrecisionBF16
	// Peak RSS is per process: the settings that need less memory run first.
	for _, c := range cases {
		mb := c.mb
		b.Run(fmt.Sprintf("T=%d/microbatch=%d/recompute=%v", T, mb, c.recompute), func(b *testing.B) {
			type part struct {
				batch *torch.Batch
				args  *torch.LossArgs
			}
			var parts []part
			for lo := 0; lo < B; lo += mb {
				batch := &torch.Batch{B: mb, T: T, Tokens: toks[lo*T : (lo+mb)*T], Lengths: make([]int32, mb)}
				a := &torch.LossArgs{Mask: make([]float32, mb*T), Advantages: make([]float32, mb), Temperature: 1, EpsLow: 0.2, EpsHi: 0.2, Recompute: c.recompute}
				for i := 0; i < mb; i++ {
					batch.Lengths[i] = int32(T)
					a.Advantages[i] = float32(lo+i) - 3.5
					for j := P; j < T; j++ {
						a.Mask[i*T+j] = 1
					}
				}
				a.RowWeight = rowWeights(a.Mask, mb, T, true, float64(B))
				parts = append(parts, part{batch, a})
			}
			step := func() {
				for _, p := range parts {
					if _, err := m.t.LossBackward(p.batch, p.args); err != nil {
						b.Fatal(err)
					}
				}
				must(b, m.t.ZeroGrad())
			}
			// The machine may be shared: take the better of two matmul measurements,
			// one on each side of the timed loop.
			peak := matmulGFLOPs(b, m.opts.Threads, bf16)
			step() // warm-up: allocator and thread pool
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				step()
			}
			sec := time.Since(start).Seconds() / float64(b.N)
			b.StopTimer()
			peak = max(peak, matmulGFLOPs(b, m.opts.Threads, bf16))
			in := m.info
			// Matmul FLOPs of one forward: the layers' weights on every position,
			// attention (QKᵀ and AV counted over the full T×T, though the blocked attention
			// skips the blocks above the diagonal at large T), and the output layer on the
			// completion positions; the backward pass costs twice the forward.
			hd := in.Embd / in.Heads
			perLayer := 2 * (in.Embd*in.Heads*hd + 2*in.Embd*in.HeadsKV*hd + in.Heads*hd*in.Embd + 3*in.Embd*in.FF)
			fwd := float64(B*T*perLayer*in.Layers) + float64(B*in.Layers*2*2*T*T*in.Heads*hd) + float64(2*B*(T-P)*in.Embd*in.Vocab)
			achieved := 3 * fwd / sec / 1e9 // model FLOPs: the recompute's extra forward not counted
			b.ReportMetric(float64(B*T)/sec, "tokens/s")
			b.ReportMetric(achieved, "GFLOP/s")
			b.ReportMetric(peak, "matmul-GFLOP/s")
			b.ReportMetric(100*achieved/peak, "MFU-%")
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MiB")
		})
	}
}

// BenchmarkExportReload: write the SmolLM2 weights as GGUF and have llama.cpp reload them.
func BenchmarkExportReload(b *testing.B) {
	m := openLearner(b, testutil.DefaultModel(b))
	s := openSampler(b, testutil.DefaultModel(b))
	dir := b.TempDir()
	for _, prec := range []string{"f16", "q8_0"} {
		b.Run(prec, func(b *testing.B) {
			path := filepath.Join(dir, "export-"+prec+".gguf")
			var export, reload time.Duration
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				must(b, m.Export(path, prec))
				t1 := time.Now()
				must(b, s.Reload(path))
				export, reload = export+t1.Sub(t0), reload+time.Since(t1)
			}
			b.ReportMetric(export.Seconds()/float64(b.N), "export-s")
			b.ReportMetric(reload.Seconds()/float64(b.N), "reload-s")
			b.ReportMetric(peakRSSMB(b), "peak-RSS-MiB")
		})
	}
}

// BenchmarkLoRAHotSwap: export a rank-16 q,k,v,o adapter of SmolLM2 and swap it into
// the running sampler (unload the previous one, load the new one).
func BenchmarkLoRAHotSwap(b *testing.B) {
	m := openLearner(b, testutil.DefaultModel(b))
	s := openSampler(b, testutil.DefaultModel(b))
	must(b, m.EnableLoRA(LoRAConfig{Rank: 16, Alpha: 32, Seed: 1}))
	path := filepath.Join(b.TempDir(), "adapter.gguf")
	var export, swap time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		must(b, m.ExportLoRA(path))
		t1 := time.Now()
		must(b, s.UnloadAdapter())
		must(b, s.LoadAdapter(path, 1))
		export, swap = export+t1.Sub(t0), swap+time.Since(t1)
	}
	b.ReportMetric(export.Seconds()/float64(b.N), "export-s")
	b.ReportMetric(swap.Seconds()/float64(b.N), "swap-s")
	b.ReportMetric(peakRSSMB(b), "peak-RSS-MiB")
}

// BenchmarkPromptSharing: one GRPO forward+backward of a group of 7 completions of one
// prompt (SmolLM2, f32 and bf16, activations kept), each row computed whole (the layout
// before prompt sharing) and with the prompt computed once, in the same run. Prompt 96
// and completions of 96..192 tokens, near examples/intuitor.toml's step (prompts of about
// 50 to 150 tokens, completions averaging ~210).
// Run: go test -run '^$' -bench 'PromptSharing$' -benchtime 2x ./policy/learner/
func BenchmarkPromptSharing(b *testing.B) {
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		b.Run("precision="+prec, func(b *testing.B) {
			m := openLearnerPrec(b, testutil.DefaultModel(b), prec)
			defer m.Close()
			rng := rand.New(rand.NewPCG(2, 2))
			prompt := make([]int32, 96)
			for i := range prompt {
				prompt[i] = int32(rng.IntN(m.info.Vocab))
			}
			var seqs []Sequence
			for _, n := range []int{192, 176, 160, 144, 128, 112, 96} {
				s := Sequence{Tokens: slices.Clone(prompt), PromptLen: len(prompt)}
				for range n {
					s.Tokens = append(s.Tokens, int32(rng.IntN(m.info.Vocab)))
				}
				seqs = append(seqs, s)
			}
			shared, err := m.batch(seqs)
			must(b, err)
			whole := *shared
			whole.PromptGroup, whole.PromptLength = nil, nil
			B, T := shared.B, shared.T
			a := &torch.LossArgs{Mask: make([]float32, B*T), Advantages: make([]float32, B), Temperature: 1, EpsLow: 0.2, EpsHi: 0.2}
			for i, s := range seqs {
				a.Advantages[i] = float32(i) - 3
				for j := s.PromptLen; j < len(s.Tokens); j++ {
					a.Mask[i*T+j] = 1
				}
			}
			a.RowWeight = rowWeights(a.Mask, B, T, true, float64(B))
			completion := 0
			for _, s := range seqs {
				completion += len(s.Tokens) - s.PromptLen
			}
			for round := 1; round <= 2; round++ {
				for _, c := range []struct {
					name  string
					batch *torch.Batch
				}{{"whole", &whole}, {"shared", shared}} {
					b.Run(fmt.Sprintf("%s/round_%d", c.name, round), func(b *testing.B) {
						for i := 0; i < b.N; i++ {
							if _, err := m.t.LossBackward(c.batch, a); err != nil {
								b.Fatal(err)
							}
							must(b, m.t.ZeroGrad())
						}
						b.ReportMetric(float64(completion*b.N)/b.Elapsed().Seconds(), "completion-tok/s")
					})
				}
			}
		})
	}
}
