package hf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ollama/ollama/convert/sentencepiece"
	fsggml "github.com/ollama/ollama/fs/ggml"
	"google.golang.org/protobuf/proto"

	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/internal/inputfile"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// ConvertOptions say how to convert a Hugging Face directory to GGUF.
type ConvertOptions struct {
	// Precision of the GGUF's weight matrices (gguf.ParsePrecision's names); "" keeps the
	// checkpoint's: f32 for F32, bf16 for BF16, f16 for F16.
	Precision string
	// AllowNoTemplate accepts a tokenizer without a chat template (a base model that is
	// fed raw prompts); otherwise its absence is an error, since rlif's chat prompts
	// need it.
	AllowNoTemplate bool
}

// IsModelDir reports whether path is a directory holding a config.json.
func IsModelDir(path string) bool {
	st, err := os.Stat(path)
	if err != nil || !st.IsDir() {
		return false
	}
	_, err = os.Stat(filepath.Join(path, "config.json"))
	return err == nil
}

// hfConfig holds the config.json keys rlif reads, in both layouts transformers has
// written: torch_dtype (older) or dtype (newer), rope_theta at the top (older) or inside
// rope_parameters (newer), and text_config for models saved with a wrapper.
type hfConfig struct {
	Architectures  []string  `json:"architectures"`
	ModelType      string    `json:"model_type"`
	HiddenSize     int       `json:"hidden_size"`
	Intermediate   int       `json:"intermediate_size"`
	Heads          int       `json:"num_attention_heads"`
	KVHeads        int       `json:"num_key_value_heads"`
	Layers         int       `json:"num_hidden_layers"`
	HeadDim        int       `json:"head_dim"`
	RMSNormEps     float64   `json:"rms_norm_eps"`
	RopeTheta      float64   `json:"rope_theta"`
	VocabSize      int       `json:"vocab_size"`
	MaxPositions   int       `json:"max_position_embeddings"`
	TieEmbeddings  *bool     `json:"tie_word_embeddings"`
	TorchDType     string    `json:"torch_dtype"`
	DType          string    `json:"dtype"`
	BOS            any       `json:"bos_token_id"`
	EOS            any       `json:"eos_token_id"`
	RopeScaling    *rope     `json:"rope_scaling"`
	RopeParameters *rope     `json:"rope_parameters"`
	TextConfig     *hfConfig `json:"text_config"`

	headDimKey string // how config.json gives head_dim, for messages (set by check)
}

type rope struct {
	Type      string  `json:"type"`
	RopeType  string  `json:"rope_type"`
	Factor    float64 `json:"factor"`
	RopeTheta float64 `json:"rope_theta"`
}

// Convert reads the Hugging Face model directory dir (config.json, model.safetensors or
// its shards with model.safetensors.index.json, tokenizer.json or tokenizer.model,
// tokenizer_config.json) and writes it as a GGUF model at out. Errors name the file.
func Convert(dir, out string, opt ConvertOptions) error {
	// Refused before the model is read, which takes a while for a large one.
	if err := atomicfile.CheckTarget(out); err != nil {
		return fmt.Errorf("%w (such as %s)", err, filepath.Join(out, filepath.Base(filepath.Clean(dir))+".gguf"))
	}
	kv, ts, srcType, err := Read(dir, opt)
	if err != nil {
		return err
	}
	name := opt.Precision
	if name == "" {
		name = map[string]string{"F32": "f32", "BF16": "bf16", "F16": "f16"}[srcType]
	}
	p, err := gguf.ParsePrecision(name)
	if err != nil {
		return err
	}
	return gguf.WriteModel(out, kv, ts, p)
}

// Read reads a Hugging Face directory as GGUF metadata and float32 tensors in ggml order,
// with the dtype of its weights. config.json is checked against the weights' shapes
// before any weight is decoded, and every weight must be finite.
func Read(dir string, opt ConvertOptions) (fsggml.KV, []gguf.Tensor, string, error) {
	d, err := openModelDir(dir)
	if err != nil {
		return nil, nil, "", err
	}
	cfgPath := filepath.Join(dir, "config.json")
	b, err := d.read("config.json")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, "", fmt.Errorf("%s: not found; a Hugging Face model directory holds config.json", cfgPath)
		}
		return nil, nil, "", err
	}
	var c hfConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", cfgPath, err)
	}
	if c.TextConfig != nil && c.HiddenSize == 0 {
		archs := c.Architectures
		c = *c.TextConfig
		if len(c.Architectures) == 0 {
			c.Architectures = archs
		}
	}
	arch, err := c.arch()
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", cfgPath, err)
	}
	if err := c.check(); err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", cfgPath, err)
	}
	kv, err := c.kv(arch)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", cfgPath, err)
	}
	if err := readTokenizer(d, kv, c, opt); err != nil {
		return nil, nil, "", err
	}
	sts, err := readWeights(d)
	if err != nil {
		return nil, nil, "", err
	}
	spec, _ := specOf(arch)
	// transformers' default for tie_word_embeddings differs by class (LlamaConfig: false,
	// PretrainedConfig: true); when config.json omits it, the weights say.
	tied := true
	for _, st := range sts {
		if st.Name == "lm_head.weight" {
			tied = false
		}
	}
	if c.TieEmbeddings != nil {
		tied = *c.TieEmbeddings
	}
	// Name every tensor and check the shapes first: a config.json that contradicts the
	// weights would otherwise be written into the GGUF and fail only when llama.cpp loads
	// it, blamed on the converted file.
	var kept []namedTensor
	hasOutput := false
	for _, st := range sts {
		if strings.HasSuffix(st.Name, "rotary_emb.inv_freq") {
			continue // recomputed from rope_theta
		}
		name, ok := GGUFName(arch, st.Name)
		if !ok {
			return nil, nil, "", fmt.Errorf("%s: tensor %s is not part of a %s model rlif knows", filepath.Join(dir, st.file), st.Name, spec.class)
		}
		if len(st.Shape) == 0 {
			return nil, nil, "", fmt.Errorf("%s: tensor %s is a scalar", filepath.Join(dir, st.file), st.Name)
		}
		if name == "output.weight" {
			if tied {
				continue // tied to the embedding: llama.cpp reuses token_embd
			}
			hasOutput = true
		}
		st.gguf = name
		kept = append(kept, st)
	}
	if !tied && !hasOutput {
		return nil, nil, "", fmt.Errorf("%s: tie_word_embeddings is false but no lm_head.weight is in the weights", cfgPath)
	}
	vocab, err := c.checkShapes(arch, cfgPath, dir, kept)
	if err != nil {
		return nil, nil, "", err
	}
	if err := padVocabulary(kv, vocab); err != nil {
		return nil, nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	kv[arch+".vocab_size"] = uint32(vocab)

	ts := make([]gguf.Tensor, 0, len(kept))
	srcType := ""
	for _, st := range kept {
		data, err := safetensors.Decode(st.Tensor)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%s: tensor %s: %w", filepath.Join(dir, st.file), st.Name, err)
		}
		// A NaN or Inf weight makes every logit it reaches NaN; left in, it surfaces
		// steps later as statistics that are not finite, far from its cause.
		if n := nonFinite(data); n > 0 {
			return nil, nil, "", fmt.Errorf("%s: tensor %s holds %d non-finite values (NaN or ±Inf) among its %d: the checkpoint is damaged", filepath.Join(dir, st.file), st.Name, n, len(data))
		}
		if spec.permuteQK && len(st.Shape) == 2 {
			cols := int(st.Shape[1])
			switch {
			case strings.HasSuffix(st.gguf, ".attn_q.weight"):
				data = permuteRows(data, c.Heads, cols, false)
			case strings.HasSuffix(st.gguf, ".attn_k.weight"):
				data = permuteRows(data, c.KVHeads, cols, false)
			}
		}
		if len(st.Shape) >= 2 && srcType == "" {
			srcType = st.DType
		}
		shape := make([]uint64, len(st.Shape))
		for i, d := range st.Shape {
			shape[len(shape)-1-i] = d
		}
		ts = append(ts, gguf.Tensor{Name: st.gguf, Shape: shape, Data: data})
	}
	want := map[string]bool{"token_embd.weight": false, "output_norm.weight": false}
	for _, t := range ts {
		if _, ok := want[t.Name]; ok {
			want[t.Name] = true
		}
	}
	for n, ok := range want {
		if !ok {
			return nil, nil, "", fmt.Errorf("%s: the weights lack %s", dir, n)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return kv, ts, srcType, nil
}

// nonFinite counts the NaN and infinite values in v.
func nonFinite(v []float32) int {
	n := 0
	for _, x := range v {
		// x-x is 0 for a finite x and NaN for NaN and ±Inf.
		if x-x != 0 {
			n++
		}
	}
	return n
}

func (c hfConfig) arch() (string, error) {
	if len(c.Architectures) > 0 {
		if a, ok := archOfClass(c.Architectures[0]); ok {
			return a, nil
		}
		return "", fmt.Errorf("architecture %q is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Olmo2ForCausalLM)", c.Architectures[0])
	}
	if _, ok := archSpecs[c.ModelType]; ok {
		return c.ModelType, nil
	}
	return "", fmt.Errorf("no architectures and model_type %q is not supported (llama, qwen2, qwen3, olmo2)", c.ModelType)
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

// namedTensor is a tensor with the shard file it came from, for messages.
type namedTensor struct {
	safetensors.Tensor
	file string
	gguf string // the GGUF name, once Read has mapped it
}

// readWeights reads model.safetensors, or the shards model.safetensors.index.json lists.
func readWeights(d *modelDir) ([]namedTensor, error) {
	var files []string
	idxPath := filepath.Join(d.dir, "model.safetensors.index.json")
	if b, err := d.read("model.safetensors.index.json"); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("%s: %w", idxPath, err)
		}
		seen := map[string]bool{}
		for _, f := range idx.WeightMap {
			if !seen[f] {
				seen[f] = true
				files = append(files, f)
			}
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: weight_map lists no files", idxPath)
		}
		for _, f := range files {
			if filepath.Base(f) != f {
				return nil, fmt.Errorf("%s: shard %q is not a file name in the directory", idxPath, f)
			}
			if p, err := d.path(f); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: missing (listed in model.safetensors.index.json)", p)
			} else if err != nil {
				return nil, err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	} else if _, err := d.path("model.safetensors"); err == nil {
		files = []string{"model.safetensors"}
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", d.dir)
	} else {
		return nil, err
	}
	var out []namedTensor
	seen := map[string]string{}
	for _, f := range files {
		p, err := d.path(f)
		if err != nil {
			return nil, err
		}
		ts, _, err := safetensors.Read(p)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if prev, ok := seen[t.Name]; ok {
				return nil, fmt.Errorf("%s: tensor %s is also in %s", p, t.Name, prev)
			}
			seen[t.Name] = f
			out = append(out, namedTensor{Tensor: t, file: f})
		}
	}
	return out, nil
}

// readTokenizer fills kv's tokenizer keys from tokenizer.model (sentencepiece) or
// tokenizer.json (BPE, see readTokenizerJSON), tokenizer_config.json and
// chat_template.jinja.
func readTokenizer(d *modelDir, kv fsggml.KV, c hfConfig, opt ConvertOptions) error {
	dir := d.dir
	var tokens []string
	if b, err := d.read("tokenizer.model"); err == nil {
		var m sentencepiece.ModelProto
		if err := proto.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: not a sentencepiece model: %w", filepath.Join(dir, "tokenizer.model"), err)
		}
		if len(m.GetPieces()) == 0 {
			return fmt.Errorf("%s: the sentencepiece model has no pieces", filepath.Join(dir, "tokenizer.model"))
		}
		types := make([]int32, len(m.GetPieces()))
		scores := make([]float32, len(m.GetPieces()))
		for i, p := range m.GetPieces() {
			tokens = append(tokens, p.GetPiece())
			scores[i] = p.GetScore()
			types[i] = int32(p.GetType())
		}
		setSentencepieceVocab(kv, tokens, scores, types, m.GetNormalizerSpec().GetAddDummyPrefix())
		for _, k := range []struct {
			key string
			id  int32
		}{{"bos", m.GetTrainerSpec().GetBosId()}, {"eos", m.GetTrainerSpec().GetEosId()}, {"unknown", m.GetTrainerSpec().GetUnkId()}, {"padding", m.GetTrainerSpec().GetPadId()}} {
			if k.id >= 0 && int(k.id) < len(tokens) {
				kv["tokenizer.ggml."+k.key+"_token_id"] = uint32(k.id)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if tokens, err = readTokenizerJSON(d, kv); err != nil {
		return err
	}
	// tokenizer_config.json: special tokens, BOS policy and the chat template.
	tcPath := filepath.Join(dir, "tokenizer_config.json")
	var tc map[string]json.RawMessage
	if b, err := d.read("tokenizer_config.json"); err == nil {
		if err := json.Unmarshal(b, &tc); err != nil {
			return fmt.Errorf("%s: %w", tcPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ids := map[string]int{}
	for i, t := range tokens {
		if _, dup := ids[t]; !dup {
			ids[t] = i
		}
	}
	for _, k := range []struct{ hf, gguf string }{{"bos_token", "bos"}, {"eos_token", "eos"}, {"unk_token", "unknown"}, {"pad_token", "padding"}} {
		s, err := tokenString(tc[k.hf])
		if err != nil {
			return fmt.Errorf("%s: %s: %w", tcPath, k.hf, err)
		}
		if s == "" {
			continue
		}
		id, ok := ids[s]
		if !ok {
			return fmt.Errorf("%s: %s %q is not in the vocabulary", tcPath, k.hf, s)
		}
		kv["tokenizer.ggml."+k.gguf+"_token_id"] = uint32(id)
	}
	// sentencepiece types its unknown piece UNKNOWN, where tokenizer.json lists it among
	// the special tokens: llama.cpp renders it by that type, and sentencepiece, reading the
	// tokenizer.model an export writes, requires one.
	if types, ok := kv["tokenizer.ggml.token_type"].([]int32); ok && kv["tokenizer.ggml.model"] == "llama" {
		if id, ok := kv["tokenizer.ggml.unknown_token_id"].(uint32); ok {
			types[id] = tokUnknown
		}
	}
	for k, key := range map[string]any{"bos": c.BOS, "eos": c.EOS} {
		if _, ok := kv["tokenizer.ggml."+k+"_token_id"]; ok {
			continue
		}
		if id, ok := firstID(key); ok && id < len(tokens) {
			kv["tokenizer.ggml."+k+"_token_id"] = uint32(id)
		}
	}
	// BOS first: as tokenizer_config.json's add_bos_token says, else as tokenizer.json's
	// post-processor does (readTokenizerJSON read it), else sentencepiece's default (yes).
	addBOS, ok := kv["tokenizer.ggml.add_bos_token"].(bool)
	if !ok {
		addBOS = kv["tokenizer.ggml.model"] == "llama"
	}
	if v, ok := tc["add_bos_token"]; ok {
		if err := json.Unmarshal(v, &addBOS); err != nil {
			return fmt.Errorf("%s: add_bos_token: %w", tcPath, err)
		}
	}
	kv["tokenizer.ggml.add_bos_token"] = addBOS
	if v, ok := tc["add_eos_token"]; ok {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("%s: add_eos_token: %w", tcPath, err)
		}
		kv["tokenizer.ggml.add_eos_token"] = b
	}
	tmpl, err := chatTemplate(d, tc["chat_template"])
	if err != nil {
		return err
	}
	if tmpl == "" && !opt.AllowNoTemplate {
		return fmt.Errorf("%s: no chat_template (nor chat_template.jinja); rlif's chat prompts need one (a base model fed raw prompts: convert with --raw)", tcPath)
	}
	if tmpl != "" {
		kv["tokenizer.chat_template"] = tmpl
	}
	return nil
}

// tokenString reads a special token as tokenizer_config.json writes it: a string, or an
// AddedToken object with its content.
func tokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("want a string or an object with content")
	}
	return o.Content, nil
}

// firstID reads a config.json token id: a number or a list of numbers (the first).
func firstID(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		return int(x), x >= 0
	case []any:
		if len(x) > 0 {
			return firstID(x[0])
		}
	}
	return 0, false
}

// chatTemplate reads the template from tokenizer_config.json (a string, or a list of
// named templates whose "default" is taken) or, as newer transformers save it, from
// chat_template.jinja.
func chatTemplate(d *modelDir, raw json.RawMessage) (string, error) {
	if len(raw) > 0 && string(raw) != "null" {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s, nil
		}
		var named []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &named); err != nil {
			return "", fmt.Errorf("%s: chat_template is neither a string nor a list of named templates", filepath.Join(d.dir, "tokenizer_config.json"))
		}
		for _, n := range named {
			if n.Name == "default" {
				return n.Template, nil
			}
		}
	}
	b, err := d.read("chat_template.jinja")
	if err == nil {
		return string(b), nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return "", err
}

// readTokenizerJSON reads a BPE tokenizer.json into kv and returns the tokens: a
// byte-level one as llama.cpp's "gpt2" vocabulary (merges and a pre-tokenizer), a
// SentencePiece-style one (spaces written "▁", byte fallback) as its "llama" vocabulary.
func readTokenizerJSON(d *modelDir, kv fsggml.KV) ([]string, error) {
	p := filepath.Join(d.dir, "tokenizer.json")
	b, err := d.read("tokenizer.json")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: not found (nor tokenizer.model); the tokenizer is required", p)
		}
		return nil, err
	}
	var tj struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Model         struct {
			Type         string          `json:"type"`
			Vocab        map[string]int  `json:"vocab"`
			Merges       json.RawMessage `json:"merges"`
			ByteFallback bool            `json:"byte_fallback"`
			UnkToken     string          `json:"unk_token"`
		} `json:"model"`
	}
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: model type %q is not supported (BPE; a Unigram sentencepiece model needs its tokenizer.model)", p, tj.Model.Type)
	}
	n := 0
	for _, id := range tj.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range tj.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > 1<<24 {
		return nil, fmt.Errorf("%s: token id %d is implausibly large", p, n-1)
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	set := make([]bool, n)
	for t, id := range tj.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("%s: token %q has id %d", p, t, id)
		}
		tokens[id], types[id], set[id] = t, tokNormal, true
	}
	for _, a := range tj.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("%s: added token %q has id %d", p, a.Content, a.ID)
		}
		tokens[a.ID], set[a.ID] = a.Content, true
		types[a.ID] = tokUserDefined
		if a.Special {
			types[a.ID] = tokControl
		}
	}
	for i, ok := range set {
		if !ok {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokUnused
		}
	}
	merges, err := bpeMerges(tj.Model.Merges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if bos, ok := bosFirst(tj.PostProcessor); ok {
		kv["tokenizer.ggml.add_bos_token"] = bos
	}
	spm, err := readSentencepieceStyle(tj.Normalizer, tj.PreTokenizer, tj.Model.ByteFallback, tokens, types, merges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; the model's sentencepiece tokenizer.model, put beside it, is read instead", p, err)
	}
	if spm != nil {
		setSentencepieceVocab(kv, tokens, spm.scores, types, spm.spacePrefix)
		// tokenizer_config.json's unk_token, read after, overrides it.
		if id, ok := tj.Model.Vocab[tj.Model.UnkToken]; ok {
			kv["tokenizer.ggml.unknown_token_id"] = uint32(id)
		}
		return tokens, nil
	}
	pre, err := preName(tj.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	kv["tokenizer.ggml.model"] = "gpt2"
	kv["tokenizer.ggml.pre"] = pre
	kv["tokenizer.ggml.tokens"] = tokens
	kv["tokenizer.ggml.token_type"] = types
	joined := make([]string, len(merges))
	for i, m := range merges {
		joined[i] = m[0] + " " + m[1]
	}
	kv["tokenizer.ggml.merges"] = joined
	return tokens, nil
}

// bpeMerges reads tokenizer.json's merges in either form tokenizers has written: "a b"
// strings (older) or [a, b] pairs (newer, which allows a space inside a token).
func bpeMerges(raw json.RawMessage) ([][2]string, error) {
	var joined []string
	if err := json.Unmarshal(raw, &joined); err != nil {
		var lists [][]string
		if err := json.Unmarshal(raw, &lists); err != nil {
			return nil, fmt.Errorf("merges are neither strings nor pairs")
		}
		pairs := make([][2]string, len(lists))
		for i, l := range lists {
			if len(l) != 2 {
				return nil, fmt.Errorf("merge %d %q is not a pair", i, l)
			}
			pairs[i] = [2]string{l[0], l[1]}
		}
		return pairs, nil
	}
	pairs := make([][2]string, len(joined))
	for i, m := range joined {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return nil, fmt.Errorf("merge %d %q is not two tokens", i, m)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// bosFirst reads whether tokenizer.json's post-processor puts a special token (BOS)
// before the text: a TemplateProcessing, alone or in a Sequence, whose single template
// begins with a SpecialToken. ok is false when it has no template.
func bosFirst(raw json.RawMessage) (bos, ok bool) {
	type processor struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken json.RawMessage `json:"SpecialToken"`
		} `json:"single"`
		Processors []processor `json:"processors"`
	}
	var p processor
	if json.Unmarshal(raw, &p) != nil {
		return false, false
	}
	for _, q := range append([]processor{p}, p.Processors...) {
		if q.Type == "TemplateProcessing" {
			return len(q.Single) > 0 && q.Single[0].SpecialToken != nil, true
		}
	}
	return false, false
}

// preName names llama.cpp's pre-tokenizer for a tokenizer.json pre_tokenizer.
func preName(raw json.RawMessage) (string, error) {
	type pt struct {
		Type    string `json:"type"`
		Pattern struct {
			Regex string `json:"Regex"`
		} `json:"pattern"`
		UseRegex         bool `json:"use_regex"`
		IndividualDigits bool `json:"individual_digits"`
		PreTokenizers    []pt `json:"pretokenizers"`
	}
	var p pt
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("pre_tokenizer: %w", err)
	}
	seq := p.PreTokenizers
	if p.Type != "Sequence" {
		seq = []pt{p}
	}
	var kinds []string
	for _, s := range seq {
		k := s.Type
		switch {
		case s.Type == "Split" && s.Pattern.Regex == qwen2Pattern:
			k = "Split(qwen2)"
		case s.Type == "Split" && s.Pattern.Regex == llama3Pattern:
			k = "Split(llama3)"
		case s.Type == "ByteLevel" && s.UseRegex:
			k = "ByteLevel(regex)"
		case s.Type == "Digits" && s.IndividualDigits:
			k = "Digits(individual)"
		}
		kinds = append(kinds, k)
	}
	switch strings.Join(kinds, ",") {
	case "ByteLevel(regex)":
		return "gpt2", nil
	case "Digits(individual),ByteLevel(regex)":
		return "smollm", nil
	case "Split(qwen2),ByteLevel":
		return "qwen2", nil
	case "Split(llama3),ByteLevel":
		return "llama-bpe", nil
	}
	return "", fmt.Errorf("pre_tokenizer %s is not one rlif maps to llama.cpp (GPT-2, SmolLM, Qwen2, Llama 3)", strings.Join(kinds, ", "))
}

// Cached returns a GGUF conversion of the Hugging Face directory dir inside cacheDir,
// converting only when no conversion of the same files exists: the file name carries a
// sha256 of every file in dir (names and contents) and of the options, so a changed
// checkpoint is converted again.
func Cached(dir, cacheDir string, opt ConvertOptions) (string, error) {
	sum, err := dirHash(dir, opt)
	if err != nil {
		return "", err
	}
	name := filepath.Base(filepath.Clean(dir))
	out := filepath.Join(cacheDir, fmt.Sprintf("%s-%s.gguf", name, sum[:16]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	// A failed conversion leaves no directory behind that it created (the cache dir sits
	// in the run directory, which a refused run must not leave behind).
	created := atomicfile.FirstMissing(cacheDir)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	if err := Convert(dir, out, opt); err != nil {
		if created != "" {
			os.RemoveAll(created)
		}
		return "", err
	}
	return out, nil
}

func dirHash(dir string, opt ConvertOptions) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "rlif hf convert v1\x00%s\x00%v\x00", opt.Precision, opt.AllowNoTemplate)
	for _, e := range ents { // ReadDir sorts by name
		// Open follows links (the Hub's cache links a snapshot's files to their blobs);
		// what is not a regular file is no part of the checkpoint.
		f, _, err := inputfile.Open(filepath.Join(dir, e.Name()))
		var notRegular *inputfile.NotRegularError
		if errors.As(err, &notRegular) || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", e.Name())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
