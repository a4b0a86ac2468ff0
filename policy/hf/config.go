package hf

// config.json: the architecture, its checks against the weights, and the GGUF keys it gives.

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/policy/gguf"
)

func (c hfConfig) arch() (string, error) {
	if len(c.Architectures) > 0 {
		if a, ok := archOfClass(c.Architectures[0]); ok {
			return a, nil
		}
		return "", fmt.Errorf("architecture %q is not supported (%s)", c.Architectures[0], strings.Join(supportedClasses(), ", "))
	}
	if _, ok := archSpecs[c.ModelType]; ok {
		return c.ModelType, nil
	}
	return "", fmt.Errorf("no architectures and model_type %q is not supported (%s)", c.ModelType, strings.Join(gguf.Architectures, ", "))
}

// check checks config.json's values on their own: sizes positive and within the 32-bit
// fields GGUF stores them in (a negative num_key_value_heads would be written as
// 4294967295), and the head sizes fitting together. Derived values are filled in.
func (c *hfConfig) check() error {
	for _, f := range []struct {
		name     string
		v        int
		optional bool // 0 means absent: derived or defaulted
	}{
		{"hidden_size", c.HiddenSize, false}, {"intermediate_size", c.Intermediate, false},
		{"num_attention_heads", c.Heads, false}, {"num_hidden_layers", c.Layers, false},
		{"num_key_value_heads", c.KVHeads, true}, {"head_dim", c.HeadDim, true},
		{"vocab_size", c.VocabSize, true}, {"max_position_embeddings", c.MaxPositions, true},
	} {
		switch {
		case f.v == 0 && f.optional:
		case f.v <= 0:
			return fmt.Errorf("%s = %d: want a positive value", f.name, f.v)
		case f.v > math.MaxUint32:
			return fmt.Errorf("%s = %d: more than GGUF's 32-bit field holds (%d)", f.name, f.v, uint32(math.MaxUint32))
		}
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	c.headDimKey = "head_dim"
	if c.HeadDim == 0 {
		c.HeadDim = c.HiddenSize / c.Heads
		c.headDimKey = "hidden_size / num_attention_heads"
	}
	if c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 {
		return fmt.Errorf("num_attention_heads %d, num_key_value_heads %d, head_dim %d do not fit together", c.Heads, c.KVHeads, c.HeadDim)
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("rms_norm_eps = %g: want a positive value", c.RMSNormEps)
	}
	if c.RopeTheta < 0 {
		return fmt.Errorf("rope_theta = %g: want a positive value", c.RopeTheta)
	}
	return nil
}

// dim is a size config.json gives (or implies), named by its keys for messages.
type dim struct {
	keys string
	v    uint64
}

// checkShapes checks config.json against the shapes of the weights (transformers'
// order, [out, in]), which are named by their GGUF names: the layer count, and every
// tensor's shape against the sizes the config gives. It returns the vocabulary size:
// the embedding's rows. Errors name config.json (cfgPath) or, for a tensor missing from
// the weights, the directory.
func (c hfConfig) checkShapes(arch, cfgPath, dir string, ts []namedTensor) (int, error) {
	var embd *namedTensor
	layers := map[int]map[string]bool{} // layer index: GGUF suffixes after blk.N.
	for i, t := range ts {
		if t.gguf == "token_embd.weight" {
			embd = &ts[i]
		}
		if rest, ok := strings.CutPrefix(t.gguf, "blk."); ok {
			num, suffix, _ := strings.Cut(rest, ".")
			n, _ := strconv.Atoi(num) // GGUFName made it a number
			if layers[n] == nil {
				layers[n] = map[string]bool{}
			}
			layers[n][suffix] = true
		}
	}
	if embd == nil || len(embd.Shape) != 2 {
		return 0, fmt.Errorf("%s: the weights lack model.embed_tokens.weight (a matrix)", dir)
	}
	// Every layer from 0 to num_hidden_layers-1, each with the tensors of layer 0.
	last := -1
	for n := range layers {
		last = max(last, n)
	}
	if last >= c.Layers {
		return 0, fmt.Errorf("%s: num_hidden_layers = %d, but the weights hold layers up to model.layers.%d", cfgPath, c.Layers, last)
	}
	for n := 0; n < c.Layers; n++ {
		if layers[n] == nil {
			return 0, fmt.Errorf("%s: num_hidden_layers = %d, but the weights have no model.layers.%d", cfgPath, c.Layers, n)
		}
		for _, pair := range [][2]int{{0, n}, {n, 0}} {
			for suffix := range layers[pair[0]] {
				if !layers[pair[1]][suffix] {
					hfName, _ := HFName(arch, fmt.Sprintf("blk.%d.%s", pair[1], suffix))
					return 0, fmt.Errorf("%s: the weights lack %s (model.layers.%d has its like)", dir, hfName, pair[0])
				}
			}
		}
	}

	vocab := embd.Shape[0]
	vocabKey := "the embedding's rows"
	if c.VocabSize > 0 {
		vocab, vocabKey = uint64(c.VocabSize), "vocab_size"
	}
	hd := uint64(c.HeadDim)
	var (
		h   = dim{"hidden_size", uint64(c.HiddenSize)}
		ff  = dim{"intermediate_size", uint64(c.Intermediate)}
		v   = dim{vocabKey, vocab}
		q   = dim{fmt.Sprintf("num_attention_heads × %s (%d × %d)", c.headDimKey, c.Heads, c.HeadDim), uint64(c.Heads) * hd}
		kvd = dim{fmt.Sprintf("num_key_value_heads × %s (%d × %d)", c.headDimKey, c.KVHeads, c.HeadDim), uint64(c.KVHeads) * hd}
		qn  = dim{c.headDimKey, hd}
		kn  = qn
	)
	if arch == "olmo2" { // OLMo 2 normalizes whole q and k projections, Qwen 3 each head
		qn, kn = q, kvd
	}
	want := map[string][]dim{
		"token_embd.weight":  {v, h},
		"output.weight":      {v, h},
		"output_norm.weight": {h},
		"attn_q.weight":      {q, h}, "attn_k.weight": {kvd, h}, "attn_v.weight": {kvd, h},
		"attn_output.weight": {h, q},
		"attn_q.bias":        {q}, "attn_k.bias": {kvd}, "attn_v.bias": {kvd},
		"attn_q_norm.weight": {qn}, "attn_k_norm.weight": {kn},
		"ffn_gate.weight": {ff, h}, "ffn_up.weight": {ff, h}, "ffn_down.weight": {h, ff},
		"attn_norm.weight": {h}, "ffn_norm.weight": {h},
		"post_attention_norm.weight": {h}, "post_ffw_norm.weight": {h},
	}
	// The embedding first: a wrong hidden_size or vocab_size is named against it.
	for _, t := range append([]namedTensor{*embd}, ts...) {
		key := t.gguf
		if rest, ok := strings.CutPrefix(key, "blk."); ok {
			_, key, _ = strings.Cut(rest, ".")
		}
		dims, ok := want[key]
		if !ok {
			continue
		}
		if len(t.Shape) != len(dims) {
			return 0, fmt.Errorf("%s: tensor %s has shape %v, want %d dimensions", filepath.Join(dir, t.file), t.Name, t.Shape, len(dims))
		}
		for i, d := range dims {
			if t.Shape[i] != d.v {
				axis := []string{"rows", "columns"}[i]
				if len(dims) == 1 {
					axis = "elements"
				}
				return 0, fmt.Errorf("%s: %s = %d, but %s has %d %s (shape %v)", cfgPath, d.keys, d.v, t.Name, t.Shape[i], axis, t.Shape)
			}
		}
	}
	if vocab > math.MaxUint32 {
		return 0, fmt.Errorf("%s: the embedding's %d rows are more than GGUF's 32-bit vocabulary size holds", dir, vocab)
	}
	return int(vocab), nil
}

// padVocabulary makes the tokenizer's vocabulary as long as the embedding (n rows), as
// llama.cpp requires: checkpoints often round the embedding up (Qwen2.5's holds 151936
// rows for 151665 tokens); the rows beyond the tokenizer become unused [PADi] tokens, as
// llama.cpp's converter names them.
func padVocabulary(kv fsggml.KV, n int) error {
	tokens, _ := kv["tokenizer.ggml.tokens"].([]string)
	if len(tokens) > n {
		return fmt.Errorf("the tokenizer has %d tokens, more than the %d rows of model.embed_tokens.weight", len(tokens), n)
	}
	types, _ := kv["tokenizer.ggml.token_type"].([]int32)
	scores, hasScores := kv["tokenizer.ggml.scores"].([]float32)
	for i := len(tokens); i < n; i++ {
		tokens = append(tokens, fmt.Sprintf("[PAD%d]", i))
		types = append(types, tokUnused)
		scores = append(scores, 0)
	}
	kv["tokenizer.ggml.tokens"] = tokens
	kv["tokenizer.ggml.token_type"] = types
	if hasScores {
		kv["tokenizer.ggml.scores"] = scores
	}
	return nil
}

func (c hfConfig) kv(arch string) (fsggml.KV, error) {
	theta := c.RopeTheta
	r := c.RopeScaling
	if c.RopeParameters != nil {
		if theta == 0 {
			theta = c.RopeParameters.RopeTheta
		}
		if r == nil {
			r = c.RopeParameters
		}
	}
	if theta == 0 {
		theta = 10000
	}
	ctx := c.MaxPositions
	if ctx == 0 {
		ctx = 2048
	}
	kv := fsggml.KV{
		"general.architecture":                     arch,
		"general.name":                             arch,
		arch + ".context_length":                   uint32(ctx),
		arch + ".embedding_length":                 uint32(c.HiddenSize),
		arch + ".block_count":                      uint32(c.Layers),
		arch + ".feed_forward_length":              uint32(c.Intermediate),
		arch + ".attention.head_count":             uint32(c.Heads),
		arch + ".attention.head_count_kv":          uint32(c.KVHeads),
		arch + ".attention.key_length":             uint32(c.HeadDim),
		arch + ".attention.value_length":           uint32(c.HeadDim),
		arch + ".rope.dimension_count":             uint32(c.HeadDim),
		arch + ".rope.freq_base":                   float32(theta),
		arch + ".attention.layer_norm_rms_epsilon": float32(c.RMSNormEps),
	}
	if r != nil {
		t := r.RopeType
		if t == "" {
			t = r.Type
		}
		switch t {
		case "", "default":
		case "linear":
			kv[arch+".rope.scaling.type"] = "linear"
			kv[arch+".rope.scaling.factor"] = float32(r.Factor)
		default:
			return nil, fmt.Errorf("rope scaling %q is not supported (only linear)", t)
		}
	}
	return kv, nil
}
