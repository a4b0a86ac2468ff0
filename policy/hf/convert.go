package hf

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ollama/ollama/convert/sentencepiece"
	fsggml "github.com/ollama/ollama/fs/ggml"
	"google.golang.org/protobuf/proto"

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
// with the dtype of its weights.
func Read(dir string, opt ConvertOptions) (fsggml.KV, []gguf.Tensor, string, error) {
	cfgPath := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(cfgPath)
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
	if err := readTokenizer(dir, kv, c, opt); err != nil {
		return nil, nil, "", err
	}
	sts, err := readWeights(dir)
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
	var ts []gguf.Tensor
	srcType := ""
	hasOutput := false
	for _, st := range sts {
		if strings.HasSuffix(st.Name, "rotary_emb.inv_freq") {
			continue // recomputed from rope_theta
		}
		name, ok := GGUFName(arch, st.Name)
		if !ok {
			return nil, nil, "", fmt.Errorf("%s: tensor %s is not part of a %s model rlif knows", filepath.Join(dir, st.file), st.Name, spec.class)
		}
		if name == "output.weight" {
			if tied {
				continue // tied to the embedding: llama.cpp reuses token_embd
			}
			hasOutput = true
		}
		data, err := safetensors.Decode(st.Tensor)
		if err != nil {
			return nil, nil, "", fmt.Errorf("%s: tensor %s: %w", filepath.Join(dir, st.file), st.Name, err)
		}
		if len(st.Shape) == 0 {
			return nil, nil, "", fmt.Errorf("%s: tensor %s is a scalar", filepath.Join(dir, st.file), st.Name)
		}
		if spec.permuteQK && len(st.Shape) == 2 {
			cols := int(st.Shape[1])
			switch {
			case strings.HasSuffix(name, ".attn_q.weight"):
				data = permuteRows(data, c.Heads, cols, false)
			case strings.HasSuffix(name, ".attn_k.weight"):
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
		ts = append(ts, gguf.Tensor{Name: name, Shape: shape, Data: data})
	}
	if !tied && !hasOutput {
		return nil, nil, "", fmt.Errorf("%s: tie_word_embeddings is false but no lm_head.weight is in the weights", cfgPath)
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

func (c *hfConfig) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.HiddenSize}, {"intermediate_size", c.Intermediate}, {"num_attention_heads", c.Heads}, {"num_hidden_layers", c.Layers}} {
		if f.v <= 0 {
			return fmt.Errorf("%s = %d: want a positive value", f.name, f.v)
		}
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.HeadDim == 0 {
		c.HeadDim = c.HiddenSize / c.Heads
	}
	if c.Heads%c.KVHeads != 0 || c.HeadDim%2 != 0 {
		return fmt.Errorf("num_attention_heads %d, num_key_value_heads %d, head_dim %d do not fit together", c.Heads, c.KVHeads, c.HeadDim)
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("rms_norm_eps = %g: want a positive value", c.RMSNormEps)
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
	if c.VocabSize > 0 {
		kv[arch+".vocab_size"] = uint32(c.VocabSize)
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
}

// readWeights reads model.safetensors, or the shards model.safetensors.index.json lists.
func readWeights(dir string) ([]namedTensor, error) {
	var files []string
	idxPath := filepath.Join(dir, "model.safetensors.index.json")
	if b, err := os.ReadFile(idxPath); err == nil {
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
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				return nil, fmt.Errorf("%s: missing (listed in model.safetensors.index.json)", filepath.Join(dir, f))
			}
		}
	} else if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		files = []string{"model.safetensors"}
	} else {
		return nil, fmt.Errorf("%s: no model.safetensors or model.safetensors.index.json", dir)
	}
	var out []namedTensor
	seen := map[string]string{}
	for _, f := range files {
		ts, _, err := safetensors.Read(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			if prev, ok := seen[t.Name]; ok {
				return nil, fmt.Errorf("%s: tensor %s is also in %s", filepath.Join(dir, f), t.Name, prev)
			}
			seen[t.Name] = f
			out = append(out, namedTensor{t, f})
		}
	}
	return out, nil
}

// readTokenizer fills kv's tokenizer keys from tokenizer.model (sentencepiece) or
// tokenizer.json (BPE, see readTokenizerJSON), tokenizer_config.json and
// chat_template.jinja.
func readTokenizer(dir string, kv fsggml.KV, c hfConfig, opt ConvertOptions) error {
	var tokens []string
	if b, err := os.ReadFile(filepath.Join(dir, "tokenizer.model")); err == nil {
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
	} else {
		var err error
		if tokens, err = readTokenizerJSON(dir, kv); err != nil {
			return err
		}
	}
	// tokenizer_config.json: special tokens, BOS policy and the chat template.
	tcPath := filepath.Join(dir, "tokenizer_config.json")
	var tc map[string]json.RawMessage
	if b, err := os.ReadFile(tcPath); err == nil {
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
	tmpl, err := chatTemplate(dir, tc["chat_template"])
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
func chatTemplate(dir string, raw json.RawMessage) (string, error) {
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
			return "", fmt.Errorf("%s: chat_template is neither a string nor a list of named templates", filepath.Join(dir, "tokenizer_config.json"))
		}
		for _, n := range named {
			if n.Name == "default" {
				return n.Template, nil
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja"))
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
func readTokenizerJSON(dir string, kv fsggml.KV) ([]string, error) {
	p := filepath.Join(dir, "tokenizer.json")
	b, err := os.ReadFile(p)
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
	created := firstMissing(cacheDir)
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

// firstMissing returns the outermost directory of path that does not exist yet ("" when
// path exists).
func firstMissing(path string) string {
	missing := ""
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			return missing
		}
		missing = p
		if filepath.Dir(p) == p {
			return missing
		}
	}
}

func dirHash(dir string, opt ConvertOptions) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "rlif hf convert v1\x00%s\x00%v\x00", opt.Precision, opt.AllowNoTemplate)
	for _, e := range ents { // ReadDir sorts by name
		// Stat follows links: the Hub's cache links a snapshot's files to their blobs.
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !st.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
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
