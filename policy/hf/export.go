package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"
	"golang.org/x/sys/unix"

	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// Options say how to write a Hugging Face directory.
type Options struct {
	// DType of the weights in model.safetensors: "bf16" (the default) or "f32".
	DType string
	// Replace lets Export replace an existing directory; otherwise a non-empty one is an
	// error, so a user's files are never overwritten.
	Replace bool
}

func (o Options) dtype() (name, torch string, err error) {
	switch strings.ToLower(o.DType) {
	case "", "bf16", "bfloat16":
		return "BF16", "bfloat16", nil
	case "f32", "float32":
		return "F32", "float32", nil
	}
	return "", "", fmt.Errorf("dtype %q: want bf16 or f32", o.DType)
}

// ExportFile converts the GGUF model at path to a Hugging Face directory at dir.
func ExportFile(path, dir string, opt Options) error {
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	ts, err := f.ReadAllF32()
	if err != nil {
		return err
	}
	if err := Export(dir, f.KV, ts, opt); err != nil {
		return fmt.Errorf("export %s: %w", path, err)
	}
	return nil
}

// Export writes a model, given as its GGUF metadata and float32 tensors (ggml order), as
// a Hugging Face directory: config.json, model.safetensors, generation_config.json and
// the tokenizer files. The directory appears whole: it is written beside dir first.
func Export(dir string, kv fsggml.KV, tensors []gguf.Tensor, opt Options) error {
	files, err := Files(kv, tensors, opt)
	if err != nil {
		return err
	}
	return writeDir(dir, files, opt.Replace)
}

// File is one file of a Hugging Face directory.
type File struct {
	Name  string
	Bytes []byte
	// Tensors, when set, make the file a safetensors file (Bytes unused).
	Tensors []safetensors.Tensor
	Meta    map[string]string
}

// Files returns the files of the Hugging Face directory of a model (see Export).
func Files(kv fsggml.KV, tensors []gguf.Tensor, opt Options) ([]File, error) {
	arch := kv.String("general.architecture")
	spec, err := specOf(arch)
	if err != nil {
		return nil, err
	}
	dt, torchDT, err := opt.dtype()
	if err != nil {
		return nil, err
	}
	c, err := configOf(arch, kv, tensors)
	if err != nil {
		return nil, err
	}
	c["torch_dtype"] = torchDT
	st := make([]safetensors.Tensor, 0, len(tensors))
	for _, t := range tensors {
		if t.Name == "rope_freqs.weight" {
			continue // llama.cpp's precomputed RoPE factors: transformers derives them
		}
		name, ok := HFName(arch, t.Name)
		if !ok {
			return nil, fmt.Errorf("tensor %s has no transformers name for %s", t.Name, arch)
		}
		shape := make([]uint64, len(t.Shape))
		for i, d := range t.Shape {
			shape[len(shape)-1-i] = d
		}
		data := t.Data
		if spec.permuteQK && len(shape) == 2 {
			switch {
			case strings.HasSuffix(t.Name, ".attn_q.weight"):
				data = permuteRows(data, c["num_attention_heads"].(int), int(shape[1]), true)
			case strings.HasSuffix(t.Name, ".attn_k.weight"):
				data = permuteRows(data, c["num_key_value_heads"].(int), int(shape[1]), true)
			}
		}
		var b []byte
		if dt == "F32" {
			b = safetensors.EncodeF32(data)
		} else {
			b = safetensors.EncodeBF16(data)
		}
		st = append(st, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: b})
	}
	tok, err := tokenizerFiles(kv)
	if err != nil {
		return nil, err
	}
	gen := map[string]any{"_from_model_config": true}
	for _, k := range []string{"bos_token_id", "eos_token_id", "pad_token_id"} {
		if v, ok := c[k]; ok {
			gen[k] = v
		}
	}
	cj, err := jsonBytes(c)
	if err != nil {
		return nil, fmt.Errorf("config.json: %w", err)
	}
	gj, err := jsonBytes(gen)
	if err != nil {
		return nil, fmt.Errorf("generation_config.json: %w", err)
	}
	files := []File{
		{Name: "config.json", Bytes: cj},
		{Name: "generation_config.json", Bytes: gj},
		{Name: "model.safetensors", Tensors: st, Meta: map[string]string{"format": "pt"}},
	}
	return append(files, tok...), nil
}

// configOf builds config.json from the GGUF hyper-parameters, with transformers' keys.
func configOf(arch string, kv fsggml.KV, tensors []gguf.Tensor) (map[string]any, error) {
	spec, err := specOf(arch)
	if err != nil {
		return nil, err
	}
	u := func(key string, def int) (int, error) {
		v, ok := kv[arch+"."+key]
		if !ok {
			if def < 0 {
				return 0, fmt.Errorf("missing %s.%s", arch, key)
			}
			return def, nil
		}
		if n, ok := gguf.IntValue(v); ok {
			return n, nil
		}
		return 0, fmt.Errorf("%s.%s has type %T, want an integer", arch, key, v)
	}
	var embd, layers, heads, ff int
	for _, p := range []struct {
		key string
		dst *int
	}{{"embedding_length", &embd}, {"block_count", &layers}, {"attention.head_count", &heads}, {"feed_forward_length", &ff}} {
		if *p.dst, err = u(p.key, -1); err != nil {
			return nil, err
		}
	}
	if heads <= 0 {
		return nil, fmt.Errorf("%s.attention.head_count = %d", arch, heads)
	}
	kvHeads, err := u("attention.head_count_kv", heads)
	if err != nil {
		return nil, err
	}
	headDim, err := u("attention.key_length", embd/heads)
	if err != nil {
		return nil, err
	}
	ctx, err := u("context_length", 2048)
	if err != nil {
		return nil, err
	}
	eps, ok := kv[arch+".attention.layer_norm_rms_epsilon"].(float32)
	if !ok {
		return nil, fmt.Errorf("missing %s.attention.layer_norm_rms_epsilon", arch)
	}
	theta := float32(10000)
	if v, ok := kv[arch+".rope.freq_base"].(float32); ok {
		theta = v
	}
	var vocab int
	hasOutput, hasBias := false, false
	for _, t := range tensors {
		switch {
		case t.Name == "token_embd.weight" && len(t.Shape) == 2:
			vocab = int(t.Shape[1])
		case t.Name == "output.weight":
			hasOutput = true
		case strings.HasSuffix(t.Name, ".attn_q.bias"):
			hasBias = true
		}
	}
	if vocab == 0 {
		return nil, errors.New("missing or malformed token_embd.weight")
	}
	c := map[string]any{
		"architectures":           []string{spec.class},
		"model_type":              spec.modelType,
		"hidden_size":             embd,
		"intermediate_size":       ff,
		"num_attention_heads":     heads,
		"num_key_value_heads":     kvHeads,
		"num_hidden_layers":       layers,
		"head_dim":                headDim,
		"hidden_act":              "silu",
		"rms_norm_eps":            decimal(eps),
		"rope_theta":              decimal(theta),
		"vocab_size":              vocab,
		"max_position_embeddings": ctx,
		"tie_word_embeddings":     !hasOutput,
		"attention_dropout":       0.0,
		"use_cache":               true,
		"initializer_range":       0.02,
	}
	switch arch {
	case "llama", "olmo2":
		c["attention_bias"] = hasBias
		if arch == "llama" {
			c["mlp_bias"] = false
			c["pretraining_tp"] = 1
		}
	case "qwen2", "qwen3":
		c["attention_bias"] = hasBias
		c["use_sliding_window"] = false
		c["sliding_window"] = ctx
		c["max_window_layers"] = layers
	}
	if f, ok := kv[arch+".rope.scaling.factor"].(float32); ok && f != 0 && f != 1 {
		st, _ := kv[arch+".rope.scaling.type"].(string)
		if st != "" && st != "linear" && st != "none" {
			return nil, fmt.Errorf("RoPE scaling %q has no mapping here (only linear)", st)
		}
		c["rope_scaling"] = map[string]any{"type": "linear", "rope_type": "linear", "factor": decimal(f)}
	}
	for _, k := range [][2]string{{"bos", "bos"}, {"eos", "eos"}, {"padding", "pad"}} {
		if id, ok := tokenID(kv, k[0]); ok {
			c[k[1]+"_token_id"] = id
		}
	}
	return c, nil
}

// decimal is the float64 whose shortest decimal form is f's, so 1e-5 stored as float32
// reads 1e-05 in config.json rather than 9.999999747378752e-06.
func decimal(f float32) float64 {
	d, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	return d
}

// tokenID reads tokenizer.ggml.<kind>_token_id (kind: bos, eos, unknown, padding).
func tokenID(kv fsggml.KV, kind string) (int, bool) {
	switch x := kv["tokenizer.ggml."+kind+"_token_id"].(type) {
	case uint32:
		return int(x), true
	case int32:
		return int(x), x >= 0
	case uint64:
		return int(x), true
	}
	return 0, false
}

// jsonBytes encodes v indented, as the Hub's files are (a NaN hyper-parameter is an error).
func jsonBytes(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// writeDir writes files as the directory dir, which must not exist, be empty, or (with
// replace, for a directory rlif wrote before) may be replaced. A new directory is written
// beside dir under a temporary name and renamed into place, so it appears whole. An
// existing empty directory is filled in place instead, since rlif did not create it and
// must not remove or replace it (it may be a mount point or carry the user's
// permissions): see fillDir.
func writeDir(dir string, files []File, replace bool) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeNewDir(dir, files, false)
	case err != nil:
		if st, serr := os.Stat(dir); serr == nil && !st.IsDir() {
			return fmt.Errorf("%s is a file; name a directory to write the model into", dir)
		}
		return err
	case len(ents) == 0:
		return fillDir(dir, files)
	case !replace:
		return fmt.Errorf("%s exists and is not empty; name a new directory or remove it", dir)
	}
	return writeNewDir(dir, files, true)
}

// writeNewDir writes files into a new directory beside dir and renames it to dir,
// removing dir first when replace is set.
func writeNewDir(dir string, files []File, replace bool) (err error) {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := checkWritable(parent); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+filepath.Base(dir)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range files {
		if err := writeFile(filepath.Join(tmp, f.Name), f); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if replace {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return os.Rename(tmp, dir)
}

// markerFiles are the files by which transformers and PEFT recognize a model or adapter
// directory; fillDir writes them last, so that a directory being filled is not taken for
// a complete one.
var markerFiles = map[string]bool{"config.json": true, "adapter_config.json": true}

// fillDir writes files into the existing empty directory dir, each through a temporary
// file renamed into place, the marker files last. On failure it removes the files it
// wrote and leaves dir itself alone.
func fillDir(dir string, files []File) (err error) {
	if err := checkWritable(dir); err != nil {
		return err
	}
	ordered := slices.Clone(files)
	slices.SortStableFunc(ordered, func(a, b File) int {
		switch {
		case markerFiles[a.Name] == markerFiles[b.Name]:
			return 0
		case markerFiles[a.Name]:
			return 1
		}
		return -1
	})
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	for _, f := range ordered {
		p := filepath.Join(dir, f.Name)
		if err := writeFile(p, f); err != nil {
			return err
		}
		written = append(written, p)
	}
	return nil
}

// writeFile writes one file of a model directory at p, atomically.
func writeFile(p string, f File) error {
	if f.Tensors != nil {
		return safetensors.Write(p, f.Tensors, f.Meta)
	}
	return atomicfile.WriteFile(p, f.Bytes)
}

// checkWritable says, before anything is written, that dir cannot be written into (a
// read-only mount, a directory without write permission), naming it; the error of the
// first failed write would name a temporary file instead.
func checkWritable(dir string) error {
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s is not writable (%v); name a directory you can write to", dir, err)
	}
	return nil
}
