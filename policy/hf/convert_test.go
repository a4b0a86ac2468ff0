package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// A directory that is not a usable checkpoint is a one-line error naming the file and
// what is wrong, and no GGUF is written.
func TestConvertBadDirectory(t *testing.T) {
	good := filepath.Join(t.TempDir(), "good")
	if err := ExportFile(testutil.StoriesModel(t), good, Options{}); err != nil {
		t.Fatal(err)
	}
	edit := func(t *testing.T, change func(dir string)) string {
		dir := filepath.Join(t.TempDir(), "m")
		if err := os.CopyFS(dir, os.DirFS(good)); err != nil {
			t.Fatal(err)
		}
		change(dir)
		return dir
	}
	setJSON := func(path, key string, v any) {
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
			dir := edit(t, tc.change)
			out := filepath.Join(t.TempDir(), "out.gguf")
			err := Convert(dir, out, ConvertOptions{AllowNoTemplate: !tc.template})
			if err == nil {
				t.Fatal("converted")
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("multi-line error %q", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a GGUF was written")
			}
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
