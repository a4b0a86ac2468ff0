package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/internal/atomicfile"
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
