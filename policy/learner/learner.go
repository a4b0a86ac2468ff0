// Package learner is the policy's trainable body: full-precision weights read from a
// GGUF file into libtorch (through rlif's C++ shim), the forward pass that reproduces
// llama.cpp's per-token log-probs, the GRPO loss, AdamW, LoRA, and the export of the
// trained weights back to GGUF for the sampler.
package learner

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/cpu"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
	"github.com/rlif/rlif/policy/rollout"
)

// Options control where and how a model is held.
type Options struct {
	// Threads is libtorch's intra-op thread count; 0 means one per CPU. (Debian's
	// libtorch reports 1 thread unless told otherwise.)
	Threads int
	// Device is "cpu" (default) or "cuda" / "cuda:N"; CUDA needs a CUDA libtorch
	// (LIBTORCH=/path in scripts/cgo-env.sh). On CUDA, bf16 compute is CUDA autocast
	// (the same guard as on the CPU, in shim.cc), and automatic activation recompute is
	// always on, as the device's free memory is not visible from here.
	Device string
	// Precision of the compute: PrecisionBF16 runs the matmuls in bfloat16 over float32
	// master weights (norms, softmax, the loss and all reductions stay float32);
	// PrecisionF32 runs everything in float32; PrecisionAuto ("" too) picks bf16 on CUDA and
	// on CPUs with native bf16 (AVX-512 BF16 or AMX), f32 elsewhere.
	Precision string

	headChunkBytes int64 // tests: a small output-layer budget, to exercise the chunked path
}

// Compute precisions of the learner.
const (
	PrecisionAuto = "auto"
	PrecisionBF16 = "bf16"
	PrecisionF32  = "f32"
)

// resolvePrecision turns the requested precision into bf16 on or off, with a one-line
// note when auto falls back to f32. cpuBF16 says whether the CPU multiplies bf16 natively.
func resolvePrecision(p string, cuda, cpuBF16 bool) (bf16 bool, note string, err error) {
	switch p {
	case PrecisionBF16:
		return true, "", nil
	case PrecisionF32:
		return false, "", nil
	case "", PrecisionAuto:
		if cuda || cpuBF16 {
			return true, "", nil
		}
		return false, "learner: this CPU has no native bf16 (AVX-512 BF16 or AMX): computing in f32 (set learner.precision = \"bf16\" to force it)", nil
	}
	return false, "", fmt.Errorf("learner precision %q: want auto, bf16 or f32", p)
}

// cpuHasBF16 reports native bf16 matrix instructions, which make bf16 matmuls ~4× faster
// than f32 ones; without them libtorch emulates bf16 and is slower than f32.
func cpuHasBF16() bool { return cpu.X86.HasAVX512BF16 || cpu.X86.HasAMXBF16 }

// Info describes a loaded model.
type Info struct {
	Arch       string
	Vocab      int
	Layers     int
	Embd       int
	Heads      int
	HeadsKV    int
	FF         int
	Params     int64 // parameters of the base model
	Trainable  int64 // parameters that take gradient steps (LoRA adapters when enabled)
	TiedOutput bool
	// Precision is the compute precision in use (bf16 or f32); PrecisionNote explains, a
	// line each, an automatic fall-back to f32 and one from a CUDA device that is not
	// there to the CPU (empty otherwise).
	Precision, PrecisionNote string
	// Device is where the weights are: "cpu", or "cuda:N".
	Device string
}

type tensorInfo struct {
	name  string
	shape []uint64 // ggml order
}

// Model is a model held by libtorch. Its methods may be called from several goroutines;
// they run one at a time.
type Model struct {
	mu      sync.Mutex
	t       *torch.Model
	src     *gguf.File
	info    Info
	tensors []tensorInfo
	extra   []gguf.Tensor // tensors kept verbatim (rope_freqs.weight)
	lora    *LoRAConfig
	opts    Options
}

// CUDADevices is the number of CUDA devices the learner's libtorch can use: 0 with a CPU
// libtorch, or on a machine without a GPU.
func CUDADevices() int { return torch.CUDADevices() }

// Load reads the model at path (any precision ggml can dequantize) into float32 weights.
func Load(path string, opt Options) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	cfg, info, err := configFromKV(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.Threads = opt.Threads
	if cfg.Threads <= 0 {
		cfg.Threads = runtime.NumCPU()
	}
	cfg.CUDA = -1
	switch {
	case opt.Device == "" || opt.Device == "cpu":
	case opt.Device == "cuda":
		cfg.CUDA = 0
	case strings.HasPrefix(opt.Device, "cuda:"):
		n, err := strconv.Atoi(strings.TrimPrefix(opt.Device, "cuda:"))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("device %q: want cpu, cuda or cuda:N", opt.Device)
		}
		cfg.CUDA = n
	default:
		return nil, fmt.Errorf("device %q: want cpu, cuda or cuda:N", opt.Device)
	}
	deviceNote := ""
	if cfg.CUDA >= 0 {
		// A CUDA build runs on a machine without a GPU too, on the CPU, and says so.
		switch n := torch.CUDADevices(); {
		case n == 0:
			deviceNote = fmt.Sprintf("learner: device %q, but libtorch sees no CUDA device (a libtorch without CUDA, see README \"GPU\", or no GPU on this machine): learning on the CPU", opt.Device)
			cfg.CUDA = -1
		case cfg.CUDA >= n:
			return nil, fmt.Errorf("device %q: this machine has %d CUDA device(s), cuda:0 to cuda:%d", opt.Device, n, n-1)
		}
	}
	bf16, note, err := resolvePrecision(opt.Precision, cfg.CUDA >= 0, cpuHasBF16())
	if err != nil {
		return nil, err
	}
	if deviceNote != "" {
		note = strings.TrimSpace(deviceNote + "\n" + note)
	}
	cfg.ComputeBF16 = bf16
	cfg.HeadChunkBytes = opt.headChunkBytes
	tm, err := torch.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m := &Model{t: tm, src: f, info: info, opts: opt}
	m.info.Precision, m.info.PrecisionNote = PrecisionF32, note
	m.info.Device = "cpu"
	if cfg.CUDA >= 0 {
		m.info.Device = fmt.Sprintf("cuda:%d", cfg.CUDA)
	}
	if bf16 {
		m.info.Precision = PrecisionBF16
	}
	for _, t := range f.Tensors {
		data, err := f.ReadF32(t.Name)
		if err != nil {
			tm.Close()
			return nil, err
		}
		if t.Name == "rope_freqs.weight" {
			m.extra = append(m.extra, gguf.Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Data: data})
		}
		shape := make([]int64, len(t.Shape))
		for i, d := range t.Shape {
			shape[len(shape)-1-i] = int64(d)
		}
		if err := tm.SetTensor(t.Name, data, shape); err != nil {
			tm.Close()
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if t.Name != "rope_freqs.weight" {
			m.tensors = append(m.tensors, tensorInfo{t.Name, slices.Clone(t.Shape)})
			m.info.Params += int64(t.Elements())
		}
	}
	if err := tm.Finalize(); err != nil {
		tm.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	_, hasOut := f.Tensor("output.weight")
	m.info.TiedOutput = !hasOut
	m.info.Trainable = tm.Trainable()
	return m, nil
}

// configFromKV reads the hyper-parameters the way llama.cpp's loader does.
func configFromKV(f *gguf.File) (torch.Config, Info, error) {
	kv := f.KV
	arch := f.Arch()
	var c torch.Config
	switch arch {
	case "llama":
		c.Arch = torch.ArchLlama
	case "qwen2":
		c.Arch, c.RopeNeoX = torch.ArchQwen2, true
	case "qwen3":
		c.Arch, c.RopeNeoX = torch.ArchQwen3, true
	case "olmo2":
		c.Arch, c.RopeNeoX = torch.ArchOlmo2, true
	case "":
		return c, Info{}, errors.New("no general.architecture in the file")
	default:
		return c, Info{}, fmt.Errorf("architecture %q is not supported by the learner (supported: %s)", arch, strings.Join(gguf.Architectures, ", "))
	}
	u := func(key string) (int, error) {
		v, ok := kv[arch+"."+key]
		if !ok {
			return 0, fmt.Errorf("missing %s.%s", arch, key)
		}
		if n, ok := gguf.IntValue(v); ok {
			return n, nil
		}
		return 0, fmt.Errorf("%s.%s has type %T (per-layer values are not supported)", arch, key, v)
	}
	var err error
	if c.Embd, err = u("embedding_length"); err != nil {
		return c, Info{}, err
	}
	if c.Layers, err = u("block_count"); err != nil {
		return c, Info{}, err
	}
	if c.Heads, err = u("attention.head_count"); err != nil {
		return c, Info{}, err
	}
	if c.FF, err = u("feed_forward_length"); err != nil {
		return c, Info{}, err
	}
	c.HeadsKV = c.Heads
	if _, ok := kv[arch+".attention.head_count_kv"]; ok {
		if c.HeadsKV, err = u("attention.head_count_kv"); err != nil {
			return c, Info{}, err
		}
	}
	if c.Heads <= 0 || c.Embd%c.Heads != 0 {
		return c, Info{}, fmt.Errorf("embedding length %d does not split into %d heads", c.Embd, c.Heads)
	}
	c.HeadDim = c.Embd / c.Heads
	if _, ok := kv[arch+".attention.key_length"]; ok {
		if c.HeadDim, err = u("attention.key_length"); err != nil {
			return c, Info{}, err
		}
	}
	for _, k := range []string{"attention.value_length", "rope.dimension_count"} {
		if _, ok := kv[arch+"."+k]; ok {
			if n, err := u(k); err != nil || n != c.HeadDim {
				return c, Info{}, fmt.Errorf("%s.%s = %d differs from the head dimension %d (partial rotary is not supported)", arch, k, n, c.HeadDim)
			}
		}
	}
	if n, _ := u("expert_count"); n > 0 {
		return c, Info{}, fmt.Errorf("mixture-of-experts %s models are not supported", arch)
	}
	eps, ok := kv[arch+".attention.layer_norm_rms_epsilon"].(float32)
	if !ok {
		return c, Info{}, fmt.Errorf("missing %s.attention.layer_norm_rms_epsilon", arch)
	}
	c.RMSEps = eps
	// (ollama's KV getters prefix the architecture themselves; read the map directly.)
	f32 := func(key string, def float32) float32 {
		if v, ok := kv[arch+"."+key].(float32); ok {
			return v
		}
		return def
	}
	c.RopeBase = f32("rope.freq_base", 10000)
	c.RopeFreqScale = 1
	st, _ := kv[arch+".rope.scaling.type"].(string)
	switch st {
	case "", "none", "linear":
		factor := f32("rope.scaling.factor", 0)
		if factor == 0 {
			factor = f32("rope.scale_linear", 0)
		}
		if factor != 0 {
			c.RopeFreqScale = 1 / factor
		}
	default:
		return c, Info{}, fmt.Errorf("RoPE scaling %q is not supported (only linear)", st)
	}
	emb, ok := f.Tensor("token_embd.weight")
	if !ok || len(emb.Shape) != 2 {
		return c, Info{}, errors.New("missing or malformed token_embd.weight")
	}
	c.Vocab = int(emb.Shape[1])
	info := Info{Arch: arch, Vocab: c.Vocab, Layers: c.Layers, Embd: c.Embd, Heads: c.Heads, HeadsKV: c.HeadsKV, FF: c.FF}
	return c, info, nil
}

// Close frees the model's memory.
func (m *Model) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t != nil {
		m.t.Close()
		m.t = nil
	}
}

// Info describes the model.
func (m *Model) Info() Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}

// Sequence is a prompt followed by a completion, as token ids.
type Sequence struct {
	Tokens    []int32
	PromptLen int // tokens[:PromptLen] is the prompt; at least 1 (the BOS, say)
}

// batch packs sequences into a right-padded batch (the causal mask keeps padding from
// influencing real positions).
func (m *Model) batch(seqs []Sequence) (*torch.Batch, error) {
	if len(seqs) == 0 {
		return nil, errors.New("no sequences")
	}
	T := 0
	for i, s := range seqs {
		if s.PromptLen < 1 || s.PromptLen > len(s.Tokens) {
			return nil, fmt.Errorf("sequence %d: prompt length %d of %d tokens (need at least one prompt token)", i, s.PromptLen, len(s.Tokens))
		}
		for _, t := range s.Tokens {
			if t < 0 || int(t) >= m.info.Vocab {
				return nil, fmt.Errorf("sequence %d: token %d outside the vocabulary of %d", i, t, m.info.Vocab)
			}
		}
		T = max(T, len(s.Tokens))
	}
	b := &torch.Batch{B: len(seqs), T: T, Tokens: make([]int32, len(seqs)*T), Lengths: make([]int32, len(seqs))}
	for i, s := range seqs {
		copy(b.Tokens[i*T:], s.Tokens)
		b.Lengths[i] = int32(len(s.Tokens))
	}
	if l := planLayout(seqs); l.shared < l.whole {
		b.PromptGroup, b.PromptLength = l.group, make([]int32, len(seqs))
		for i, s := range seqs {
			b.PromptLength[i] = int32(s.PromptLen)
		}
	}
	return b, nil
}

// layoutPlan is how the learner would lay out a batch: group numbers each row's prompt
// (consecutive rows with the same prompt tokens share one), and whole and shared count
// the positions each layout computes, padding included. Whole: every row padded to the
// longest sequence. Shared: each distinct prompt once, padded to the longest prompt, and
// every completion padded to the longest completion (the shim's two layouts).
type layoutPlan struct {
	group         []int32
	whole, shared int
}

func planLayout(seqs []Sequence) layoutPlan {
	l := layoutPlan{group: make([]int32, len(seqs))}
	groups, maxLen, maxPrompt, maxCompletion := 0, 0, 0, 1
	for i, s := range seqs {
		if i == 0 || !slices.Equal(s.Tokens[:s.PromptLen], seqs[i-1].Tokens[:seqs[i-1].PromptLen]) {
			groups++
		}
		l.group[i] = int32(groups - 1)
		maxLen = max(maxLen, len(s.Tokens))
		maxPrompt = max(maxPrompt, s.PromptLen)
		maxCompletion = max(maxCompletion, len(s.Tokens)-s.PromptLen)
	}
	l.whole = len(seqs) * maxLen
	l.shared = groups*maxPrompt + len(seqs)*maxCompletion
	return l
}

// Score returns, for each sequence, the statistics of its completion tokens: entry i
// describes Tokens[PromptLen+i] under the distribution computed from Tokens[:PromptLen+i],
// LogProb at the given temperature and the rest at temperature 1: the forward in the
// model's compute precision, float64 arithmetic from the logits on. This is the learner's
// side of the sampler's Score.
func (m *Model) Score(seqs []Sequence, temperature float64) ([][]rollout.TokenStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return nil, errors.New("model is closed")
	}
	b, err := m.batch(seqs)
	if err != nil {
		return nil, err
	}
	st, err := m.t.LogProbs(b, float32(temperature), false, true)
	if err != nil {
		return nil, fmt.Errorf("learner forward: %w", err)
	}
	out := make([][]rollout.TokenStats, len(seqs))
	for i, s := range seqs {
		out[i] = make([]rollout.TokenStats, len(s.Tokens)-s.PromptLen)
		for j := range out[i] {
			k := i*b.T + s.PromptLen + j
			// Teacher forcing draws nothing, so no truncation applies: the sampled
			// log-prob is the log-prob, as in the sampler's Score.
			out[i][j] = rollout.TokenStats{LogProb: st.LogProb[k], SampledLogProb: st.LogProb[k], RawLogProb: st.RawLogProb[k], Entropy: st.Entropy[k], SelfCertainty: st.SelfCertainty[k]}
		}
	}
	return out, nil
}

// logProbs returns the log-probs [B*T] at temperature of a batch's positions where mask
// is 1 (zero elsewhere).
func (m *Model) logProbs(b *torch.Batch, mask []float32, temperature float64, noLoRA bool) ([]float64, error) {
	return m.t.TokenLogProbs(b, mask, float32(temperature), noLoRA)
}

// ReleaseFreeMemory hands back to the kernel the memory this process holds free: what
// the allocator keeps of the last step's activations, and Go's free heap. For before a
// checkpoint, whose buffers would otherwise add to it; the step after it faults its
// pages in again, so not after every step.
func ReleaseFreeMemory() {
	torch.ReleaseFreeMemory()
	debug.FreeOSMemory()
}
