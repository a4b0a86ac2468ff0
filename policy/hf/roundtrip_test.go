package hf

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
	"github.com/rlif/rlif/policy/sampler"
)

// GGUF → Hugging Face (f32) → GGUF gives back the same tensors bit for bit (the llama
// q/k permutation undone and redone), the same tokenization, the same greedy completion
// and the same log-probs; the stories model has no chat template, so prompts are raw.
func TestRoundTripStories(t *testing.T) {
	src := testutil.StoriesModel(t)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := ExportFile(src, dir, Options{DType: "f32"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("export lacks %s: %v", f, err)
		}
	}
	back := filepath.Join(t.TempDir(), "back.gguf")
	if err := Convert(dir, back, ConvertOptions{AllowNoTemplate: true}); err != nil {
		t.Fatal(err)
	}
	a, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := gguf.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors back, want %d", len(b.Tensors), len(a.Tensors))
	}
	for _, ta := range a.Tensors {
		tb, ok := b.Tensor(ta.Name)
		if !ok {
			t.Fatalf("tensor %s lost", ta.Name)
		}
		if !slices.Equal(ta.Shape, tb.Shape) {
			t.Fatalf("%s: shape %v back, want %v", ta.Name, tb.Shape, ta.Shape)
		}
		da, _ := a.ReadF32(ta.Name)
		db, err := b.ReadF32(ta.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(da, db) {
			t.Fatalf("%s: values differ after the round trip", ta.Name)
		}
	}
	for _, k := range []string{"tokenizer.ggml.tokens"} {
		if !slices.Equal(a.KV.Strings(k), b.KV.Strings(k)) {
			t.Errorf("%s differs", k)
		}
	}
	if !slices.Equal(a.KV.Floats("tokenizer.ggml.scores"), b.KV.Floats("tokenizer.ggml.scores")) {
		t.Error("tokenizer.ggml.scores differ")
	}

	opt := sampler.Options{Threads: 1, KVCacheF32: true, ContextSize: 512, MaxSequences: 2}
	ma, err := sampler.Load(src, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := sampler.Load(back, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	reqs := []sampler.Request{{Prompt: "Once upon a time, there was a little", Raw: true}, {Prompt: "Lily and Tom went to the park", Raw: true}}
	p := sampler.Params{MaxTokens: 40, Seed: 1}
	ga, err := ma.Sample(context.Background(), reqs, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := mb.Sample(context.Background(), reqs, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		ca, cb := ga[i][0], gb[i][0]
		if !slices.Equal(ca.PromptTokens, cb.PromptTokens) {
			t.Fatalf("prompt %d tokenizes to %v after the round trip, %v before", i, cb.PromptTokens, ca.PromptTokens)
		}
		if len(ca.Tokens) < 10 || ca.Text != cb.Text || !slices.Equal(ca.Tokens, cb.Tokens) {
			t.Fatalf("greedy completion %d: %q after, %q before", i, cb.Text, ca.Text)
		}
		toks := append(slices.Clone(ca.PromptTokens), ca.Tokens...)
		sa, err := ma.Score(toks, len(ca.PromptTokens), 1)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := mb.Score(toks, len(ca.PromptTokens), 1)
		if err != nil {
			t.Fatal(err)
		}
		for j := range sa {
			if d := math.Abs(sa[j].LogProb - sb[j].LogProb); d > 1e-5 {
				t.Fatalf("completion %d token %d: log-prob %g after, %g before", i, j, sb[j].LogProb, sa[j].LogProb)
			}
		}
	}
}

// The exported config.json and tensor names follow transformers' conventions: the keys
// LlamaConfig reads, the values of the GGUF's hyper-parameters, and the tensor names of
// LlamaForCausalLM's state dict.
func TestExportConventionsStories(t *testing.T) {
	src := testutil.StoriesModel(t)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := ExportFile(src, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"model_type": "llama", "hidden_size": 64.0, "intermediate_size": 172.0,
		"num_attention_heads": 8.0, "num_key_value_heads": 4.0, "num_hidden_layers": 5.0,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "vocab_size": 512.0,
		"max_position_embeddings": 512.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
		"bos_token_id": 1.0, "eos_token_id": 2.0,
	}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("config.json %s = %v, want %v", k, c[k], v)
		}
	}
	if a, _ := c["architectures"].([]any); len(a) != 1 || a[0] != "LlamaForCausalLM" {
		t.Errorf("architectures = %v", c["architectures"])
	}
	ts, meta, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" {
		t.Errorf("metadata %v: transformers wants format pt", meta)
	}
	names := map[string][]uint64{}
	for _, st := range ts {
		if st.DType != "BF16" {
			t.Errorf("%s: dtype %s, want BF16 by default", st.Name, st.DType)
		}
		names[st.Name] = st.Shape
	}
	wantShapes := map[string][]uint64{
		"model.embed_tokens.weight":                      {512, 64},
		"lm_head.weight":                                 {512, 64},
		"model.norm.weight":                              {64},
		"model.layers.0.self_attn.q_proj.weight":         {64, 64},
		"model.layers.0.self_attn.k_proj.weight":         {32, 64},
		"model.layers.0.self_attn.v_proj.weight":         {32, 64},
		"model.layers.0.self_attn.o_proj.weight":         {64, 64},
		"model.layers.4.mlp.gate_proj.weight":            {172, 64},
		"model.layers.4.mlp.up_proj.weight":              {172, 64},
		"model.layers.4.mlp.down_proj.weight":            {64, 172},
		"model.layers.4.input_layernorm.weight":          {64},
		"model.layers.4.post_attention_layernorm.weight": {64},
	}
	for n, s := range wantShapes {
		if !slices.Equal(names[n], s) {
			t.Errorf("%s: shape %v, want %v", n, names[n], s)
		}
	}
	if len(names) != 3+5*9 {
		t.Errorf("%d tensors, want %d", len(names), 3+5*9)
	}
	// Refusing to overwrite a directory that holds files.
	if err := ExportFile(src, dir, Options{}); err == nil {
		t.Error("export over a non-empty directory succeeded")
	}
}
