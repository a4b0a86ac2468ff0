package gguf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"
)

// RandomSpec describes a small randomly initialized model of one of the architectures
// the learner supports. It exists to check an architecture end to end against llama.cpp
// without a released checkpoint of that family.
type RandomSpec struct {
	Arch      string // llama, qwen2, qwen3, olmo2
	Embd      int
	Layers    int
	Heads     int
	HeadsKV   int
	FF        int
	Tied      bool // omit output.weight (not allowed for olmo2, which llama.cpp requires it for)
	RopeBase  float32
	RMSEps    float32
	Seed      uint64
	Precision string // f32 unless set
	// RopeFreqs adds llama3-style per-dimension RoPE frequency divisors (rope_freqs.weight;
	// llama only).
	RopeFreqs bool
}

// Architectures are the model architectures (GGUF general.architecture) rlif trains,
// converts from and exports to Hugging Face: the one list in Go (the learner's C++ shim
// implements each; policy/hf maps each to its transformers class).
var Architectures = []string{"llama", "qwen2", "qwen3", "olmo2"}

// WriteRandomModel writes a model with random weights at path. The tokenizer (every
// "tokenizer.*" key) and therefore the vocabulary come from tok, an existing GGUF file.
func WriteRandomModel(path string, spec RandomSpec, tok *File) error {
	if !slices.Contains(Architectures, spec.Arch) {
		return fmt.Errorf("random model: unsupported architecture %q (%s)", spec.Arch, strings.Join(Architectures, ", "))
	}
	if spec.Tied && spec.Arch == "olmo2" {
		return fmt.Errorf("random model: llama.cpp requires output.weight for olmo2")
	}
	if spec.Heads <= 0 || spec.HeadsKV <= 0 || spec.Embd%spec.Heads != 0 || spec.Heads%spec.HeadsKV != 0 {
		return fmt.Errorf("random model: embd %d, heads %d, kv heads %d do not divide", spec.Embd, spec.Heads, spec.HeadsKV)
	}
	vocab := len(tok.KV.Strings("tokenizer.ggml.tokens"))
	if vocab == 0 {
		return fmt.Errorf("random model: %s has no tokenizer.ggml.tokens", tok.Path)
	}
	if spec.RopeBase == 0 {
		spec.RopeBase = 10000
	}
	if spec.RMSEps == 0 {
		spec.RMSEps = 1e-6
	}
	prec := "f32"
	if spec.Precision != "" {
		prec = spec.Precision
	}
	p, err := ParsePrecision(prec)
	if err != nil {
		return err
	}

	a := spec.Arch
	kv := fsggml.KV{
		"general.architecture":                  a,
		"general.name":                          "rlif random " + a,
		a + ".context_length":                   uint32(2048),
		a + ".embedding_length":                 uint32(spec.Embd),
		a + ".block_count":                      uint32(spec.Layers),
		a + ".feed_forward_length":              uint32(spec.FF),
		a + ".attention.head_count":             uint32(spec.Heads),
		a + ".attention.head_count_kv":          uint32(spec.HeadsKV),
		a + ".attention.layer_norm_rms_epsilon": spec.RMSEps,
		a + ".rope.freq_base":                   spec.RopeBase,
		a + ".rope.dimension_count":             uint32(spec.Embd / spec.Heads),
		a + ".vocab_size":                       uint32(vocab),
		"general.alignment":                     uint32(32),
		"general.file_type":                     uint32(0),
	}
	for k, v := range tok.KV {
		if strings.HasPrefix(k, "tokenizer.") {
			kv[k] = v
		}
	}

	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15))
	hd := spec.Embd / spec.Heads
	kvDim := hd * spec.HeadsKV
	var ts []Tensor
	// Scales are chosen so that logits spread over a few nats: a flat distribution
	// would make a parity test pass for the wrong reasons.
	mat := func(name string, in, out int) {
		ts = append(ts, randTensor(rng, name, []uint64{uint64(in), uint64(out)}, 0, 1/math.Sqrt(float64(in))))
	}
	vec := func(name string, n int, mean, std float64) {
		ts = append(ts, randTensor(rng, name, []uint64{uint64(n)}, mean, std))
	}
	ts = append(ts, randTensor(rng, "token_embd.weight", []uint64{uint64(spec.Embd), uint64(vocab)}, 0, 1))
	vec("output_norm.weight", spec.Embd, 1, 0.1)
	if spec.RopeFreqs {
		if a != "llama" {
			return fmt.Errorf("random model: rope_freqs is a llama tensor")
		}
		f := Tensor{Name: "rope_freqs.weight", Shape: []uint64{uint64(hd / 2)}, Data: make([]float32, hd/2)}
		for i := range f.Data {
			f.Data[i] = 1 + 7*float32(i)/float32(len(f.Data)) // as llama3's: 1 for fast dimensions, larger for slow
		}
		ts = append(ts, f)
	}
	if !spec.Tied {
		mat("output.weight", spec.Embd, vocab)
	}
	for l := 0; l < spec.Layers; l++ {
		b := fmt.Sprintf("blk.%d.", l)
		if a != "olmo2" {
			vec(b+"attn_norm.weight", spec.Embd, 1, 0.1)
			vec(b+"ffn_norm.weight", spec.Embd, 1, 0.1)
		}
		mat(b+"attn_q.weight", spec.Embd, spec.Heads*hd)
		mat(b+"attn_k.weight", spec.Embd, kvDim)
		mat(b+"attn_v.weight", spec.Embd, kvDim)
		mat(b+"attn_output.weight", spec.Heads*hd, spec.Embd)
		mat(b+"ffn_gate.weight", spec.Embd, spec.FF)
		mat(b+"ffn_up.weight", spec.Embd, spec.FF)
		mat(b+"ffn_down.weight", spec.FF, spec.Embd)
		switch a {
		case "qwen2":
			vec(b+"attn_q.bias", spec.Heads*hd, 0, 0.5)
			vec(b+"attn_k.bias", kvDim, 0, 0.5)
			vec(b+"attn_v.bias", kvDim, 0, 0.5)
		case "qwen3":
			vec(b+"attn_q_norm.weight", hd, 1, 0.2)
			vec(b+"attn_k_norm.weight", hd, 1, 0.2)
		case "olmo2":
			vec(b+"attn_q_norm.weight", spec.Heads*hd, 1, 0.2)
			vec(b+"attn_k_norm.weight", kvDim, 1, 0.2)
			vec(b+"post_attention_norm.weight", spec.Embd, 1, 0.2)
			vec(b+"post_ffw_norm.weight", spec.Embd, 1, 0.2)
		}
	}
	var n uint64
	for _, t := range ts {
		n += t.Elements()
	}
	kv["general.parameter_count"] = n
	return WriteModel(path, kv, ts, p)
}

func randTensor(rng *rand.Rand, name string, shape []uint64, mean, std float64) Tensor {
	t := Tensor{Name: name, Shape: shape}
	t.Data = make([]float32, t.Elements())
	for i := range t.Data {
		t.Data[i] = float32(mean + std*rng.NormFloat64())
	}
	return t
}
