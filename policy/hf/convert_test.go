package hf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
	"github.com/rlif/rlif/policy/sampler"
)

// exportStories writes the stories model as a Hugging Face directory (weights of dtype)
// and returns it: the fixture the tests below edit copies of.
func exportStories(t testing.TB, dtype string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "stories")
	if err := ExportFile(testutil.StoriesModel(t), dir, Options{DType: dtype}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyModel copies the model directory src to a new directory and applies change to it.
func copyModel(t *testing.T, src string, change func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	change(dir)
	return dir
}

// setJSON sets key in the JSON object file at path to v (nil deletes it).
func setJSON(t *testing.T, path, key string, v any) {
	t.Helper()
	var m map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	b, _ = json.Marshal(m)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// convertFails converts dir and checks that it fails with a one-line error holding every
// string of want, writing no GGUF.
func convertFails(t *testing.T, dir string, opt ConvertOptions, want ...string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.gguf")
	err := Convert(dir, out, opt)
	if err == nil {
		t.Fatal("converted")
	}
	msg := err.Error()
	t.Log(msg)
	if strings.Contains(msg, "\n") {
		t.Errorf("multi-line error %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a GGUF was written")
	}
}

// A directory that is not a usable checkpoint is a one-line error naming the file and
// what is wrong, and no GGUF is written.
func TestConvertBadDirectory(t *testing.T) {
	good := exportStories(t, "")
	edit := func(t *testing.T, change func(dir string)) string { return copyModel(t, good, change) }
	setJSON := func(path, key string, v any) { setJSON(t, path, key, v) }
	for _, tc := range []struct {
		name     string
		change   func(dir string)
		template bool
		want     []string
	}{
		{"no config", func(d string) { os.Remove(filepath.Join(d, "config.json")) }, false, []string{"config.json", "not found"}},
		{"unsupported architecture", func(d string) {
			setJSON(filepath.Join(d, "config.json"), "architectures", []string{"GPT2LMHeadModel"})
		}, false, []string{"config.json", `"GPT2LMHeadModel"`, "not supported"}},
		{"missing shard", func(d string) {
			os.Rename(filepath.Join(d, "model.safetensors"), filepath.Join(d, "model-00001-of-00002.safetensors"))
			idx := `{"weight_map":{"model.norm.weight":"model-00001-of-00002.safetensors","lm_head.weight":"model-00002-of-00002.safetensors"}}`
			os.WriteFile(filepath.Join(d, "model.safetensors.index.json"), []byte(idx), 0o644)
		}, false, []string{"model-00002-of-00002.safetensors", "missing"}},
		{"no weights", func(d string) { os.Remove(filepath.Join(d, "model.safetensors")) }, false, []string{"model.safetensors"}},
		{"no tokenizer", func(d string) { os.Remove(filepath.Join(d, "tokenizer.model")) }, false, []string{"tokenizer.json", "not found"}},
		{"no chat template", func(string) {}, true, []string{"tokenizer_config.json", "chat_template"}},
		{"truncated weights", func(d string) {
			p := filepath.Join(d, "model.safetensors")
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()-10)
		}, false, []string{"model.safetensors", "data_offsets"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			convertFails(t, edit(t, tc.change), ConvertOptions{AllowNoTemplate: !tc.template}, tc.want...)
		})
	}
}

// The newer config layout (dtype, rope_parameters) and a chat template in
// chat_template.jinja convert like the older one.
func TestConvertNewerLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := ExportFile(testutil.StoriesModel(t), dir, Options{}); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(b, &c)
	delete(c, "torch_dtype")
	c["dtype"] = "bfloat16"
	delete(c, "rope_theta")
	c["rope_parameters"] = map[string]any{"rope_type": "default", "rope_theta": 20000.0}
	b, _ = json.Marshal(c)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	const tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	os.WriteFile(filepath.Join(dir, "chat_template.jinja"), []byte(tmpl), 0o644)
	kv, _, dt, err := Read(dir, ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := kv["llama.rope.freq_base"]; got != float32(20000) {
		t.Errorf("rope.freq_base %v, want 20000 from rope_parameters", got)
	}
	if kv["tokenizer.chat_template"] != tmpl {
		t.Errorf("chat template %q", kv["tokenizer.chat_template"])
	}
	if dt != "BF16" {
		t.Errorf("dtype %s", dt)
	}
}

// Cached converts a directory once and again only when one of its files changes.
func TestCached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := ExportFile(testutil.StoriesModel(t), dir, Options{}); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	opt := ConvertOptions{AllowNoTemplate: true}
	p1, err := Cached(dir, cache, opt)
	if err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(p1)
	p2, err := Cached(dir, cache, opt)
	if err != nil || p2 != p1 {
		t.Fatalf("second call: %s, %v; want %s", p2, err, p1)
	}
	if st2, _ := os.Stat(p2); !st2.ModTime().Equal(st1.ModTime()) {
		t.Error("converted again with nothing changed")
	}
	os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(`{"eos_token_id": 2}`), 0o644)
	p3, err := Cached(dir, cache, opt)
	if err != nil || p3 == p1 {
		t.Fatalf("after a change: %s, %v; want a new conversion", p3, err)
	}
}

// Without tie_word_embeddings in config.json the weights decide (an lm_head means untied),
// and a MistralForCausalLM checkpoint reads as llama's layout.
func TestConvertTiesAndMistral(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := ExportFile(testutil.StoriesModel(t), dir, Options{}); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	json.Unmarshal(b, &c)
	delete(c, "tie_word_embeddings")
	c["architectures"] = []string{"MistralForCausalLM"}
	c["model_type"] = "mistral"
	b, _ = json.Marshal(c)
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	kv, ts, _, err := Read(dir, ConvertOptions{AllowNoTemplate: true})
	if err != nil {
		t.Fatal(err)
	}
	if kv["general.architecture"] != "llama" {
		t.Errorf("architecture %v", kv["general.architecture"])
	}
	found := false
	for _, tt := range ts {
		found = found || tt.Name == "output.weight"
	}
	if !found {
		t.Error("lm_head.weight was dropped although config.json does not tie it")
	}
}

// A checkpoint sharded over several files with model.safetensors.index.json converts to
// the same tensors as the single file.
func TestConvertSharded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	if err := ExportFile(testutil.StoriesModel(t), dir, Options{DType: "f32"}); err != nil {
		t.Fatal(err)
	}
	_, whole, _, err := Read(dir, ConvertOptions{AllowNoTemplate: true})
	if err != nil {
		t.Fatal(err)
	}
	ts, meta, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	weightMap := map[string]string{}
	shards := [2][]safetensors.Tensor{}
	for i, tt := range ts {
		name := fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
		shards[i%2] = append(shards[i%2], tt)
		weightMap[tt.Name] = name
	}
	for i, sh := range shards {
		if err := safetensors.Write(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)), sh, meta); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "model.safetensors"))
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": weightMap})
	os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644)
	_, sharded, _, err := Read(dir, ConvertOptions{AllowNoTemplate: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sharded) != len(whole) {
		t.Fatalf("%d tensors from the shards, %d from the file", len(sharded), len(whole))
	}
	for i := range whole {
		if sharded[i].Name != whole[i].Name || !slices.Equal(sharded[i].Data, whole[i].Data) {
			t.Fatalf("tensor %s differs between the shards and the file", whole[i].Name)
		}
	}
}

// editWeights rewrites dir's model.safetensors through edit.
func editWeights(t *testing.T, dir string, edit func(ts []safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	p := filepath.Join(dir, "model.safetensors")
	ts, meta, err := safetensors.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(p, edit(ts), meta); err != nil {
		t.Fatal(err)
	}
}

// resizeRows gives the named matrices n rows (new rows zero, removed rows dropped).
func resizeRows(n uint64, names ...string) func([]safetensors.Tensor) []safetensors.Tensor {
	return func(ts []safetensors.Tensor) []safetensors.Tensor {
		for i, tt := range ts {
			if slices.Contains(names, tt.Name) {
				row := uint64(len(tt.Data)) / tt.Shape[0]
				data := make([]byte, n*row)
				copy(data, tt.Data)
				ts[i].Data, ts[i].Shape = data, []uint64{n, tt.Shape[1]}
			}
		}
		return ts
	}
}

// A config.json that contradicts the weights (the stories model: hidden 64, 5 layers, 8
// heads of 8, 4 KV heads, FF 172, 512 tokens) or holds a value GGUF cannot store is
// refused naming the key, its value and the tensor that disagrees, before llama.cpp would
// refuse the converted file.
func TestConvertConfigContradictsWeights(t *testing.T) {
	good := exportStories(t, "")
	cfg := func(key string, v any) func(string) {
		return func(d string) { setJSON(t, filepath.Join(d, "config.json"), key, v) }
	}
	for _, tc := range []struct {
		name   string
		change func(dir string)
		want   []string
	}{
		{"hidden size", cfg("hidden_size", 128), []string{"config.json", "hidden_size = 128", "model.embed_tokens.weight has 64 columns"}},
		{"more layers", cfg("num_hidden_layers", 6), []string{"num_hidden_layers = 6", "no model.layers.5"}},
		{"fewer layers", cfg("num_hidden_layers", 4), []string{"num_hidden_layers = 4", "model.layers.4"}},
		{"head count", cfg("num_attention_heads", 4), []string{"num_attention_heads × head_dim (4 × 8) = 32", "o_proj.weight has 64 columns"}},
		{"kv head count", cfg("num_key_value_heads", 8), []string{"num_key_value_heads × head_dim (8 × 8) = 64", "k_proj.weight has 32 rows"}},
		{"negative kv heads", cfg("num_key_value_heads", -1), []string{"num_key_value_heads = -1", "positive"}},
		{"head dim", cfg("head_dim", 16), []string{"head_dim (4 × 16) = 64", "k_proj.weight has 32 rows"}},
		{"derived head dim", func(d string) {
			cfg("head_dim", nil)(d)
			cfg("num_attention_heads", 16)(d)
		}, []string{"hidden_size / num_attention_heads (4 × 4) = 16", "k_proj.weight has 32 rows"}},
		{"intermediate size", cfg("intermediate_size", 100), []string{"intermediate_size = 100", "has 172"}},
		{"vocab above the embedding", cfg("vocab_size", 600), []string{"vocab_size = 600", "model.embed_tokens.weight has 512 rows"}},
		{"context past 32 bits", cfg("max_position_embeddings", 5e9), []string{"max_position_embeddings = 5000000000", "4294967295"}},
		{"layer missing a tensor", func(d string) {
			editWeights(t, d, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return slices.DeleteFunc(ts, func(tt safetensors.Tensor) bool { return tt.Name == "model.layers.2.mlp.up_proj.weight" })
			})
		}, []string{"lack model.layers.2.mlp.up_proj.weight"}},
		{"tokenizer larger than the embedding", func(d string) {
			editWeights(t, d, resizeRows(500, "model.embed_tokens.weight", "lm_head.weight"))
			cfg("vocab_size", 500)(d)
		}, []string{"the tokenizer has 512 tokens, more than the 500 rows of model.embed_tokens.weight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			convertFails(t, copyModel(t, good, tc.change), ConvertOptions{AllowNoTemplate: true}, tc.want...)
		})
	}
}

// An embedding with more rows than the tokenizer has tokens (Qwen2.5 rounds its
// vocabulary up) converts to a GGUF llama.cpp loads: the vocabulary is padded with unused
// [PADi] tokens, as llama.cpp's own converter does.
func TestConvertPadsVocabulary(t *testing.T) {
	dir := copyModel(t, exportStories(t, ""), func(d string) {
		editWeights(t, d, resizeRows(520, "model.embed_tokens.weight", "lm_head.weight"))
		setJSON(t, filepath.Join(d, "config.json"), "vocab_size", 520)
	})
	out := filepath.Join(t.TempDir(), "padded.gguf")
	if err := Convert(dir, out, ConvertOptions{AllowNoTemplate: true}); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	tokens := f.KV.Strings("tokenizer.ggml.tokens")
	if len(tokens) != 520 || tokens[519] != "[PAD519]" || len(f.KV.Floats("tokenizer.ggml.scores")) != 520 {
		t.Fatalf("%d tokens (last %q), %d scores; want 520 ending in [PAD519]", len(tokens), tokens[len(tokens)-1], len(f.KV.Floats("tokenizer.ggml.scores")))
	}
	m, err := sampler.Load(out, sampler.Options{Threads: 1, ContextSize: 64, MaxSequences: 1})
	if err != nil {
		t.Fatalf("llama.cpp does not load the padded conversion: %v", err)
	}
	m.Close()
}

// A NaN or Inf weight is refused where it enters, naming the tensor and how many values
// are not finite, in each stored precision.
func TestConvertNonFiniteWeights(t *testing.T) {
	for _, tc := range []struct {
		dtype, tensor string
		set           func(b []byte)
	}{
		{"f32", "model.layers.3.mlp.up_proj.weight", func(b []byte) {
			binary.LittleEndian.PutUint32(b[0:], math.Float32bits(float32(math.NaN())))
			binary.LittleEndian.PutUint32(b[40:], math.Float32bits(float32(math.Inf(1))))
			binary.LittleEndian.PutUint32(b[400:], math.Float32bits(float32(math.Inf(-1))))
		}},
		{"bf16", "model.embed_tokens.weight", func(b []byte) {
			binary.LittleEndian.PutUint16(b[100:], 0x7fc0) // NaN
			binary.LittleEndian.PutUint16(b[200:], 0x7f80) // +Inf
			binary.LittleEndian.PutUint16(b[300:], 0xffc1) // a negative NaN
		}},
	} {
		t.Run(tc.dtype, func(t *testing.T) {
			dir := copyModel(t, exportStories(t, tc.dtype), func(d string) {
				editWeights(t, d, func(ts []safetensors.Tensor) []safetensors.Tensor {
					for _, tt := range ts {
						if tt.Name == tc.tensor {
							tc.set(tt.Data)
						}
					}
					return ts
				})
			})
			convertFails(t, dir, ConvertOptions{AllowNoTemplate: true}, "model.safetensors", tc.tensor, "holds 3 non-finite values")
		})
	}
}
