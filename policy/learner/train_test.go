package learner

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// randomModel writes a small random model of arch and returns its path.
func randomModel(t testing.TB, spec gguf.RandomSpec) string {
	t.Helper()
	tok, err := gguf.Open(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), spec.Arch+".gguf")
	if err := gguf.WriteRandomModel(path, spec, tok); err != nil {
		t.Fatal(err)
	}
	return path
}

// randomTokens returns n token ids from the ordinary part of a 512-token vocabulary.
func randomTokens(rng *rand.Rand, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(3 + rng.IntN(500))
	}
	return out
}

// TestGradientFiniteDifference checks the analytic gradient of the full GRPO loss
// (clipped surrogate, importance weights, k3 KL, temperature, per-sequence mean) against
// central differences of the loss itself.
func TestGradientFiniteDifference(t *testing.T) {
	for _, arch := range []string{"qwen2", "olmo2"} {
		t.Run(arch, func(t *testing.T) {
			path := randomModel(t, gguf.RandomSpec{Arch: arch, Embd: 32, Layers: 1, Heads: 4, HeadsKV: 2, FF: 48, Seed: 11})
			m := openLearner(t, path)
			rng := rand.New(rand.NewPCG(1, 2))
			const B, T = 2, 12
			b := &torch.Batch{B: B, T: T, Tokens: randomTokens(rng, B*T), Lengths: []int32{T, 9}}
			base, err := m.t.LogProbs(b, 0.8, false, false)
			if err != nil {
				t.Fatal(err)
			}
			a := &torch.LossArgs{
				Mask: make([]float32, B*T), Advantages: []float32{1, -0.5},
				OldLogProb: make([]float64, B*T), RefLogProb: make([]float64, B*T), SamplerLogProb: make([]float64, B*T),
				Temperature: 0.8, EpsLow: 0.2, EpsHi: 0.2, Beta: 0.1, ISCap: 2,
			}
			for i := 0; i < B; i++ {
				for j := 4; j < int(b.Lengths[i]); j++ {
					k := i*T + j
					a.Mask[k] = 1
					// ratios within the clip range (the clipped surrogate has kinks at its ends)
					a.OldLogProb[k] = base.LogProb[k] + 0.05*(2*rng.Float64()-1)
					a.RefLogProb[k] = base.LogProb[k] + 0.3*(2*rng.Float64()-1)
					a.SamplerLogProb[k] = a.OldLogProb[k] + 0.2*(2*rng.Float64()-1)
				}
			}
			a.RowWeight = rowWeights(a.Mask, B, T, true, B)
			loss := func() float64 {
				st, err := m.t.LossBackward(b, a)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.t.ZeroGrad(); err != nil {
					t.Fatal(err)
				}
				return st.Loss
			}
			if _, err := m.t.LossBackward(b, a); err != nil {
				t.Fatal(err)
			}
			names := []string{"token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
				"blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_gate.weight", "blk.0.ffn_down.weight"}
			if arch == "qwen2" {
				names = append(names, "blk.0.attn_q.bias", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight")
			} else {
				names = append(names, "blk.0.attn_q_norm.weight", "blk.0.attn_k_norm.weight", "blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight")
			}
			grads := map[string][]float32{}
			for _, n := range names {
				g, err := m.gradient(n)
				if err != nil {
					t.Fatal(err)
				}
				grads[n] = g
			}
			if err := m.t.ZeroGrad(); err != nil {
				t.Fatal(err)
			}
			const h = 1e-2
			checked := 0
			for _, n := range names {
				g := grads[n]
				// the three largest entries: small ones would be all FD noise
				idx := make([]int, len(g))
				for i := range idx {
					idx[i] = i
				}
				slices.SortFunc(idx, func(x, y int) int { return -cmpAbs(g[x], g[y]) })
				w := make([]float32, len(g))
				if err := m.t.Tensor(n, w, false, false); err != nil {
					t.Fatal(err)
				}
				for _, i := range idx[:3] {
					orig := w[i]
					w[i] = orig + h
					must(t, m.setTensor(n, w))
					lp := loss()
					w[i] = orig - h
					must(t, m.setTensor(n, w))
					lm := loss()
					w[i] = orig
					must(t, m.setTensor(n, w))
					fd := (lp - lm) / (2 * h)
					if diff := math.Abs(fd - float64(g[i])); diff > 3e-4+0.03*math.Abs(fd) {
						t.Errorf("%s[%d]: gradient %.6g, finite difference %.6g", n, i, g[i], fd)
					}
					checked++
				}
			}
			t.Logf("%d gradient entries match central differences", checked)
		})
	}
}

func cmpAbs(a, b float32) int {
	x, y := math.Abs(float64(a)), math.Abs(float64(b))
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// rowWeights are the loss's row weights for a mean over each row's masked tokens divided
// by denom (seqMean), or for the sum over all of them divided by denom.
func rowWeights(mask []float32, B, T int, seqMean bool, denom float64) []float32 {
	w := make([]float32, B)
	for i := range w {
		n := 1.0
		if seqMean {
			n = 0
			for _, v := range mask[i*T : (i+1)*T] {
				n += float64(v)
			}
			n = max(n, 1)
		}
		w[i] = float32(1 / (n * denom))
	}
	return w
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func completionLogProb(t testing.TB, m *Model, s Sample) float64 {
	t.Helper()
	st, err := m.Score([]Sequence{{Tokens: append(slices.Clone(s.Prompt), s.Completion...), PromptLen: len(s.Prompt)}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, x := range st[0] {
		sum += x.LogProb
	}
	return sum
}

// TestStepZeroRatioAndKL: before any update the policy equals π_old and the reference,
// so the first pass sees ratio 1 and KL 0; the second pass, after one step, does not.
func TestStepZeroRatioAndKL(t *testing.T) {
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		t.Run(prec, func(t *testing.T) { stepZeroRatioAndKL(t, prec) })
	}
}

func stepZeroRatioAndKL(t *testing.T, prec string) {
	m := openLearnerPrec(t, testutil.StoriesModel(t), prec)
	rng := rand.New(rand.NewPCG(3, 4))
	var samples []Sample
	for i := 0; i < 4; i++ {
		samples = append(samples, Sample{Prompt: randomTokens(rng, 5), Completion: randomTokens(rng, 10+i), Advantage: float64(i) - 1.5})
	}
	tr, err := NewTrainer(m, TrainConfig{Beta: 0.1, Mu: 2, MicroBatch: 3, LR: 1e-4, Temperature: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st, err := tr.Step(samples)
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := st.Passes[0], st.Passes[1]
	t.Logf("pass 0: ratio %.8f KL %.3g clip %.3g; pass 1: ratio %.6f KL %.3g", p0.RatioMean, p0.KL, p0.ClipRegion, p1.RatioMean, p1.KL)
	if math.Abs(p0.RatioMean-1) > 1e-5 || math.Abs(p0.KL) > 1e-8 || p0.ClipRegion != 0 {
		t.Errorf("step 0: mean ratio %v, KL %v, clipped %v; want 1, 0, 0", p0.RatioMean, p0.KL, p0.ClipRegion)
	}
	if math.Abs(p1.RatioMean-1) < 1e-6 || p1.KL <= 1e-9 {
		t.Errorf("after one step: mean ratio %v, KL %v; the policy should have moved", p1.RatioMean, p1.KL)
	}
	if st.OptimSteps != 2 || p0.GradNorm <= 0 {
		t.Errorf("optimizer steps %d, gradient norm %v", st.OptimSteps, p0.GradNorm)
	}
}

// TestAdvantageSign: one step with a positive advantage raises the completion's
// log-prob; a negative one lowers it. Every loss aggregation must agree.
func TestAdvantageSign(t *testing.T) {
	path := testutil.StoriesModel(t)
	rng := rand.New(rand.NewPCG(5, 6))
	s := Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 12)}
	for _, loss := range []string{LossGRPO, LossBNPO, LossDAPO, LossDrGRPO} {
		for _, adv := range []float64{1, -1} {
			m := openLearner(t, path)
			before := completionLogProb(t, m, s)
			tr, err := NewTrainer(m, TrainConfig{LR: 1e-3, Loss: loss})
			if err != nil {
				t.Fatal(err)
			}
			s.Advantage = adv
			if _, err := tr.Step([]Sample{s}); err != nil {
				t.Fatal(err)
			}
			after := completionLogProb(t, m, s)
			t.Logf("%s advantage %+g: log-prob %.4f -> %.4f", loss, adv, before, after)
			if (after-before)*adv <= 0 {
				t.Errorf("%s advantage %+g: log-prob went from %.4f to %.4f", loss, adv, before, after)
			}
		}
	}
}

// TestExportReloadParity trains a step, exports, reloads in llama.cpp, and checks parity;
// an exported q8_0 file must load and agree to quantization error.
func TestExportReloadParity(t *testing.T) {
	path := testutil.StoriesModel(t)
	m := openLearner(t, path)
	s := openSampler(t, path)
	toks := tokens(t, s, 300)
	tr, err := NewTrainer(m, TrainConfig{LR: 1e-4})
	must(t, err)
	_, err = tr.Step([]Sample{{Prompt: toks[:5], Completion: toks[5:40], Advantage: 1}})
	must(t, err)
	dir := t.TempDir()

	f32 := filepath.Join(dir, "step1-f32.gguf")
	must(t, m.Export(f32, "f32"))
	must(t, s.Reload(f32))
	if d := parity(t, m, s, toks, 1); d.Max() > 1e-4 {
		t.Errorf("f32 export: learner and llama.cpp differ by %.3g", d.Max())
	}

	f16 := filepath.Join(dir, "step1-f16.gguf")
	must(t, m.Export(f16, "f16"))
	must(t, s.Reload(f16))
	m16 := openLearner(t, f16) // the f16-rounded weights, back in the learner
	// Same weights on both sides, but ggml multiplies F16 weights with activations rounded
	// to f16 too, which alone costs a few 1e-3 in log-prob: f32 is the export for parity.
	d16 := parity(t, m16, s, toks, 1)
	t.Logf("f16 export: max |Δ log-prob| %.3g (llama.cpp rounds activations to f16 in F16 matmuls)", d16.Max())
	if d16.Max() > 2e-2 {
		t.Errorf("f16 export: learner (reloaded) and llama.cpp differ by %.3g", d16.Max())
	}

	q8 := filepath.Join(dir, "step1-q8_0.gguf")
	must(t, m.Export(q8, "q8_0"))
	f, err := gguf.Open(q8)
	must(t, err)
	if typ, _ := f.Tensor("blk.0.attn_q.weight"); typ.Type() != "Q8_0" {
		t.Errorf("q8_0 export stored attn_q as %s", typ.Type())
	}
	if len(f.KV.Strings("tokenizer.ggml.tokens")) != 512 {
		t.Errorf("q8_0 export lost the tokenizer")
	}
	must(t, s.Reload(q8))
	d := parity(t, m, s, toks, 1)
	t.Logf("q8_0 export vs learner float32: max |Δ log-prob| %.3g (quantization error)", d.RawLogProb)
	if d.Max() > 0.5 {
		t.Errorf("q8_0 export: %.3g from the learner, more than quantization explains", d.Max())
	}
}

// TestLoRAHotSwap trains adapters a few steps, hot-swaps them into llama.cpp, checks that
// the sampler now agrees with the learner's adapted model, and that unloading restores it.
func TestLoRAHotSwap(t *testing.T) {
	path := testutil.StoriesModel(t)
	m := openLearner(t, path)
	s := openSampler(t, path)
	toks := tokens(t, s, 200)
	must(t, m.EnableLoRA(LoRAConfig{Rank: 4, Alpha: 8, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, Seed: 1}))
	if info := m.Info(); info.Trainable >= info.Params || info.Trainable == 0 {
		t.Fatalf("LoRA trains %d of %d parameters", info.Trainable, info.Params)
	}
	tr, err := NewTrainer(m, TrainConfig{LR: 5e-3, Beta: 0.05})
	must(t, err)
	for i := 0; i < 3; i++ {
		st, err := tr.Step([]Sample{{Prompt: toks[:5], Completion: toks[5:60], Advantage: 1}, {Prompt: toks[:5], Completion: toks[60:90], Advantage: -1}})
		must(t, err)
		t.Logf("LoRA step %d: loss %.4f KL %.3g", i, st.Loss, st.KL)
	}
	before, err := s.Score(toks, 1, 1)
	must(t, err)
	adapter := filepath.Join(t.TempDir(), "adapter.gguf")
	must(t, m.ExportLoRA(adapter))
	must(t, s.LoadAdapter(adapter, 1))
	after, err := s.Score(toks, 1, 1)
	must(t, err)
	if d := compareStats(t, after, before); d.RawLogProb < 1e-3 {
		t.Errorf("the adapter changed the sampler's log-probs by only %.3g", d.RawLogProb)
	}
	if d := parity(t, m, s, toks, 1); d.Max() > 1e-4 {
		t.Errorf("with the adapter, learner and llama.cpp differ by %.3g", d.Max())
	}
	must(t, s.UnloadAdapter())
	restored, err := s.Score(toks, 1, 1)
	must(t, err)
	if d := compareStats(t, restored, before); d.Max() > 1e-9 {
		t.Errorf("unloading the adapter left a difference of %.3g", d.Max())
	}
}

// readAll returns every tensor of a GGUF file as float32.
func readAll(t testing.TB, f *gguf.File) []gguf.Tensor {
	t.Helper()
	var ts []gguf.Tensor
	for _, ti := range f.Tensors {
		d, err := f.ReadF32(ti.Name)
		must(t, err)
		ts = append(ts, gguf.Tensor{Name: ti.Name, Shape: slices.Clone(ti.Shape), Data: d})
	}
	return ts
}

func TestBadInput(t *testing.T) {
	stories := testutil.StoriesModel(t)
	raw, err := os.ReadFile(stories)
	must(t, err)
	src, err := gguf.Open(stories)
	must(t, err)
	f32, _ := gguf.ParsePrecision("f32")
	dir := t.TempDir()

	rewrite := func(name string, edit func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor) string {
		p := filepath.Join(dir, name)
		kv := map[string]any{}
		for k, v := range src.KV {
			kv[k] = v
		}
		ts := edit(kv, readAll(t, src))
		must(t, gguf.WriteModel(p, kv, ts, f32))
		return p
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o644))
		return p
	}
	cases := []struct {
		name, path, want string
	}{
		{"truncated data", write("half.gguf", raw[:len(raw)/2]), "truncated"},
		{"truncated header", write("head.gguf", raw[:300]), "not a valid GGUF"},
		{"not GGUF", write("text.gguf", []byte("hello, this is not a model file at all")), "not a valid GGUF"},
		{"empty", write("empty.gguf", nil), "not a valid GGUF"},
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file"},
		{"unknown architecture", rewrite("gpt2.gguf", func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor {
			kv["general.architecture"] = "gpt2"
			return ts
		}), `architecture "gpt2" is not supported`},
		{"shape mismatch", rewrite("shape.gguf", func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor {
			for i, t := range ts {
				if t.Name == "blk.1.attn_k.weight" { // 32 output rows → 16
					ts[i].Shape = []uint64{t.Shape[0], t.Shape[1] / 2}
					ts[i].Data = t.Data[:len(t.Data)/2]
				}
			}
			return ts
		}), "blk.1.attn_k.weight has shape [16 64], want [32 64]"},
		{"missing tensor", rewrite("missing.gguf", func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor {
			return slices.DeleteFunc(ts, func(t gguf.Tensor) bool { return t.Name == "blk.2.ffn_up.weight" })
		}), "missing tensor blk.2.ffn_up.weight"},
		{"unused tensor", rewrite("extra.gguf", func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor {
			return append(ts, gguf.Tensor{Name: "blk.0.ffn_gate_inp.weight", Shape: []uint64{64, 8}, Data: make([]float32, 512)})
		}), "not used by this architecture"},
		{"bad head count", rewrite("heads.gguf", func(kv map[string]any, ts []gguf.Tensor) []gguf.Tensor {
			kv["llama.attention.head_count"] = uint32(7)
			return ts
		}), "does not split into 7 heads"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Load(c.path, Options{Threads: 1})
			if err == nil {
				m.Close()
				t.Fatalf("loaded %s without error", c.name)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

func TestLRSchedule(t *testing.T) {
	cases := []struct {
		cfg  TrainConfig
		step int
		want float64
	}{
		{TrainConfig{LR: 1, Schedule: ScheduleConstant}, 0, 1},
		{TrainConfig{LR: 1, Schedule: ScheduleConstant, WarmupSteps: 4}, 0, 0.25},
		{TrainConfig{LR: 1, Schedule: ScheduleConstant, WarmupSteps: 4}, 3, 1},
		{TrainConfig{LR: 1, Schedule: ScheduleLinear, TotalSteps: 10}, 5, 0.5},
		{TrainConfig{LR: 1, Schedule: ScheduleLinear, TotalSteps: 10, WarmupSteps: 2}, 6, 0.5},
		{TrainConfig{LR: 1, Schedule: ScheduleLinear, TotalSteps: 10}, 20, 0},
		{TrainConfig{LR: 2, Schedule: ScheduleCosine, TotalSteps: 10}, 0, 2},
		{TrainConfig{LR: 2, Schedule: ScheduleCosine, TotalSteps: 10}, 5, 1},
		{TrainConfig{LR: 2, Schedule: ScheduleCosine, TotalSteps: 10}, 10, 0},
		{TrainConfig{LR: 1, Schedule: ScheduleCosine, TotalSteps: 100, WarmupRatio: 0.1}, 4, 0.5},
		{TrainConfig{LR: 1, Schedule: ScheduleCosine, TotalSteps: 100, WarmupRatio: 0.1}, 55, 0.5},
	}
	for _, c := range cases {
		if got := c.cfg.LRAt(c.step); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v step %d: lr %v, want %v", c.cfg, c.step, got, c.want)
		}
	}
}

func TestTrainConfigValidation(t *testing.T) {
	m := openLearner(t, testutil.StoriesModel(t))
	bad := []struct {
		name string
		cfg  TrainConfig
		want string
	}{
		{"loss", TrainConfig{Loss: "mean"}, "loss aggregation"},
		{"schedule", TrainConfig{Schedule: "step"}, "schedule"},
		{"cosine without total", TrainConfig{Schedule: ScheduleCosine}, "total number of steps"},
		{"eps", TrainConfig{EpsLow: 1.5}, "clip range"},
		{"beta", TrainConfig{Beta: -1}, "must not be negative"},
		{"adam", TrainConfig{Beta1: 1}, "Adam betas"},
		{"mu", TrainConfig{Mu: -1}, "μ"},
	}
	for _, c := range bad {
		if _, err := NewTrainer(m, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	tr, err := NewTrainer(m, TrainConfig{ISCap: 2})
	must(t, err)
	if _, err := tr.Step(nil); err == nil {
		t.Error("empty batch accepted")
	}
	if _, err := tr.Step([]Sample{{Prompt: []int32{1}, Completion: []int32{5, 6}, Advantage: 1}}); err == nil || !strings.Contains(err.Error(), "sampler log-probs") {
		t.Errorf("missing sampler log-probs with an IS cap: %v", err)
	}
	if _, err := tr.Step([]Sample{{Prompt: []int32{1}, Completion: []int32{5, 9999}, Advantage: 1, SamplerLogProb: []float64{-1, -1}}}); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
		t.Errorf("out-of-vocabulary token: %v", err)
	}
	if err := m.EnableLoRA(LoRAConfig{Rank: 2, Targets: []string{"attn"}}); err == nil {
		t.Error("unknown LoRA target accepted")
	}
}

// TestSaveLoadState: a trainer restored from a checkpoint takes exactly the step the
// original takes (same weights, same Adam moments and bias correction), with and without LoRA.
func TestSaveLoadState(t *testing.T) {
	path := testutil.StoriesModel(t)
	rng := rand.New(rand.NewPCG(9, 9))
	batch := func() []Sample {
		return []Sample{{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 10), Advantage: 1},
			{Prompt: randomTokens(rng, 3), Completion: randomTokens(rng, 8), Advantage: -1}}
	}
	b1, b2 := batch(), batch()
	probe := Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 16)}
	for _, lora := range []bool{false, true} {
		t.Run(fmt.Sprintf("lora=%v", lora), func(t *testing.T) {
			setup := func() (*Model, *Trainer) {
				m := openLearner(t, path)
				if lora {
					must(t, m.EnableLoRA(LoRAConfig{Rank: 2, Seed: 3}))
				}
				tr, err := NewTrainer(m, TrainConfig{LR: 1e-3, Schedule: ScheduleCosine, TotalSteps: 10, WeightDecay: 0.1})
				must(t, err)
				return m, tr
			}
			m1, tr1 := setup()
			_, err := tr1.Step(b1)
			must(t, err)
			dir := filepath.Join(t.TempDir(), "ckpt")
			must(t, tr1.SaveState(dir))
			_, err = tr1.Step(b2)
			must(t, err)
			want := completionLogProb(t, m1, probe)

			m2, tr2 := setup()
			must(t, tr2.LoadState(dir))
			st, err := tr2.Step(b2)
			must(t, err)
			got := completionLogProb(t, m2, probe)
			if math.Abs(got-want) > 1e-9 || st.OptimSteps != 2 {
				t.Errorf("resumed run: log-prob %.12f after %d steps, uninterrupted %.12f", got, st.OptimSteps, want)
			}
		})
	}
	m := openLearner(t, path)
	must(t, m.EnableLoRA(LoRAConfig{Rank: 2}))
	tr, err := NewTrainer(m, TrainConfig{})
	must(t, err)
	full, err := NewTrainer(openLearner(t, path), TrainConfig{})
	must(t, err)
	dir := filepath.Join(t.TempDir(), "full")
	must(t, full.SaveState(dir))
	if err := tr.LoadState(dir); err == nil || !strings.Contains(err.Error(), "LoRA") {
		t.Errorf("loading a full-model state into a LoRA trainer: %v", err)
	}
}

// TestBatchPadding: scoring sequences of different lengths together (right-padded)
// gives what scoring each alone gives.
func TestBatchPadding(t *testing.T) {
	m := openLearner(t, testutil.StoriesModel(t))
	rng := rand.New(rand.NewPCG(11, 12))
	seqs := []Sequence{{Tokens: randomTokens(rng, 30), PromptLen: 5}, {Tokens: randomTokens(rng, 9), PromptLen: 1}, {Tokens: randomTokens(rng, 17), PromptLen: 17}}
	together, err := m.Score(seqs, 0.8)
	must(t, err)
	for i, s := range seqs {
		alone, err := m.Score([]Sequence{s}, 0.8)
		must(t, err)
		if len(alone[0]) != len(s.Tokens)-s.PromptLen {
			t.Fatalf("sequence %d: %d statistics for %d completion tokens", i, len(alone[0]), len(s.Tokens)-s.PromptLen)
		}
		// float32 rounding differs with the matmul shapes; padding leaking in would not be small
		if d := compareStats(t, together[i], alone[0]); d.Max() > 1e-4 {
			t.Errorf("sequence %d: batched and alone differ by %.3g", i, d.Max())
		}
	}
}

// TestMicroBatchAccumulation: splitting a batch into micro-batches accumulates to the
// same update for the aggregations that normalize over the whole batch (bnpo normalizes
// per micro-batch by definition, as in TRL).
func TestMicroBatchAccumulation(t *testing.T) {
	path := testutil.StoriesModel(t)
	rng := rand.New(rand.NewPCG(13, 14))
	var samples []Sample
	for i := 0; i < 4; i++ {
		samples = append(samples, Sample{Prompt: randomTokens(rng, 3+i), Completion: randomTokens(rng, 6+3*i), Advantage: float64(i) - 1.2})
	}
	probe := Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 16)}
	before := completionLogProb(t, openLearner(t, path), probe)
	for _, loss := range []string{LossGRPO, LossDAPO, LossDrGRPO} {
		var results []float64
		for _, mb := range []int{0, 1, 3} {
			m := openLearner(t, path)
			// SGD-like setting (β1 = β2 ≈ 0 is not allowed; a large Adam ε makes the step
			// proportional to the gradient, so differences in it would show)
			tr, err := NewTrainer(m, TrainConfig{LR: 1e-2, AdamEps: 1, Loss: loss, MicroBatch: mb})
			must(t, err)
			_, err = tr.Step(samples)
			must(t, err)
			results = append(results, completionLogProb(t, m, probe))
		}
		// equal results from a step that does nothing would prove nothing
		if math.Abs(results[0]-before) < 1e-2 {
			t.Errorf("%s: the step moved the probe's log-prob only from %.6f to %.6f", loss, before, results[0])
		}
		for i := 1; i < len(results); i++ {
			if math.Abs(results[i]-results[0]) > 1e-4 {
				t.Errorf("%s: micro-batches give %.6f, one batch %.6f", loss, results[i], results[0])
			}
		}
		t.Logf("%s: probe log-prob %.6f before, after one step %.6f (one batch), %.6f, %.6f (micro-batches)", loss, before, results[0], results[1], results[2])
	}
}

// TestActivationRecomputeGradients: recomputing activations in the backward pass gives
// the gradients of the plain backward pass, for full fine-tuning and for LoRA, in both
// precisions (the recomputation repeats the same bf16 operations).
func TestActivationRecomputeGradients(t *testing.T) {
	for _, prec := range []string{PrecisionF32, PrecisionBF16} {
		t.Run(prec, func(t *testing.T) { activationRecomputeGradients(t, prec) })
	}
}

func activationRecomputeGradients(t *testing.T, prec string) {
	path := randomModel(t, gguf.RandomSpec{Arch: "qwen3", Embd: 32, Layers: 3, Heads: 4, HeadsKV: 2, FF: 48, Seed: 21})
	rng := rand.New(rand.NewPCG(21, 22))
	const B, T = 3, 10
	b := &torch.Batch{B: B, T: T, Tokens: randomTokens(rng, B*T), Lengths: []int32{10, 7, 9}}
	a := &torch.LossArgs{Mask: make([]float32, B*T), Advantages: []float32{1, -1, 0.5}, Temperature: 1, EpsLow: 0.2, EpsHi: 0.2}
	for i := range a.Mask {
		a.Mask[i] = float32(i % T / 3 % 2)
	}
	a.RowWeight = rowWeights(a.Mask, B, T, false, 20)
	for _, lora := range []bool{false, true} {
		m := openLearnerPrec(t, path, prec)
		if lora {
			must(t, m.EnableLoRA(LoRAConfig{Rank: 2, Targets: []string{"q", "v", "down"}, Seed: 1}))
			// B starts at zero, where A gets no gradient: move off it with one step.
			tr, err := NewTrainer(m, TrainConfig{LR: 1e-2})
			must(t, err)
			_, err = tr.Step([]Sample{{Prompt: b.Tokens[:3], Completion: b.Tokens[3:10], Advantage: 1}})
			must(t, err)
		}
		grads := make([]map[string][]float32, 2)
		for k, ckpt := range []bool{false, true} {
			a.Recompute = ckpt
			_, err := m.t.LossBackward(b, a)
			must(t, err)
			grads[k] = map[string][]float32{}
			for i := 0; i < m.t.TrainableCount(); i++ {
				name, n, err := m.t.TrainableInfo(i)
				must(t, err)
				g := make([]float32, n)
				if lora {
					// adapters are not in the model's tensor list: read through the shim
					must(t, m.t.Tensor(name, g, false, true))
				} else {
					g, err = m.gradient(name)
					must(t, err)
				}
				grads[k][name] = g
			}
			must(t, m.t.ZeroGrad())
		}
		sameGradients(t, fmt.Sprintf("lora=%v, with recompute", lora), grads[0], grads[1])
	}
}

// lossGradients runs one loss backward of b on m and returns its statistics and the
// gradient of every model tensor, leaving the gradients zeroed.
func lossGradients(t testing.TB, m *Model, b *torch.Batch, a *torch.LossArgs) (torch.LossStats, map[string][]float32) {
	t.Helper()
	st, err := m.t.LossBackward(b, a)
	must(t, err)
	grads := map[string][]float32{}
	for _, ti := range m.tensors {
		g, err := m.gradient(ti.name)
		must(t, err)
		grads[ti.name] = g
	}
	must(t, m.t.ZeroGrad())
	return st, grads
}

// sameGradients fails unless got equals want tensor by tensor to float32 rounding of a
// different summation order (1e-6 + 1e-4 relative), and some gradient is not zero.
func sameGradients(t testing.TB, what string, want, got map[string][]float32) {
	t.Helper()
	nonzero := 0
	for name, g := range want {
		if len(got[name]) != len(g) {
			t.Fatalf("%s: %s has %d gradient values, want %d", what, name, len(got[name]), len(g))
		}
		for i := range g {
			if g[i] != 0 {
				nonzero++
			}
			if d := math.Abs(float64(g[i] - got[name][i])); d > 1e-6+1e-4*math.Abs(float64(g[i])) {
				t.Fatalf("%s: %s[%d]: gradient %g, want %g", what, name, i, got[name][i], g[i])
			}
		}
	}
	if nonzero == 0 {
		t.Fatalf("%s: all gradients are zero", what)
	}
}
