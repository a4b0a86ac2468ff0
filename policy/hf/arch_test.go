package hf

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// For every architecture the learner trains, a small random model exports with the
// config.json keys and state-dict names transformers uses for it, and converts back to
// the same tensors bit for bit.
func TestArchitecturesRoundTrip(t *testing.T) {
	tok, err := gguf.Open(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		spec  gguf.RandomSpec
		class string
		// names that must be in the state dict, and names that must not
		have, lack []string
	}{
		{gguf.RandomSpec{Arch: "llama", Embd: 32, Layers: 2, Heads: 4, HeadsKV: 2, FF: 48}, "LlamaForCausalLM",
			[]string{"model.layers.1.input_layernorm.weight", "lm_head.weight"}, []string{"model.layers.0.self_attn.q_norm.weight"}},
		{gguf.RandomSpec{Arch: "qwen2", Embd: 32, Layers: 2, Heads: 4, HeadsKV: 2, FF: 48, RopeBase: 1e6}, "Qwen2ForCausalLM",
			[]string{"model.layers.0.self_attn.q_proj.bias", "model.layers.1.post_attention_layernorm.weight"}, nil},
		{gguf.RandomSpec{Arch: "qwen3", Embd: 32, Layers: 2, Heads: 4, HeadsKV: 2, FF: 48, Tied: true}, "Qwen3ForCausalLM",
			[]string{"model.layers.1.self_attn.q_norm.weight", "model.layers.1.self_attn.k_norm.weight"}, []string{"lm_head.weight"}},
		{gguf.RandomSpec{Arch: "olmo2", Embd: 32, Layers: 2, Heads: 4, HeadsKV: 4, FF: 48}, "Olmo2ForCausalLM",
			[]string{"model.layers.0.post_feedforward_layernorm.weight", "model.layers.0.self_attn.q_norm.weight"}, []string{"model.layers.0.input_layernorm.weight"}},
	} {
		t.Run(tc.spec.Arch, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src.gguf")
			tc.spec.Seed = 7
			if err := gguf.WriteRandomModel(src, tc.spec, tok); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "hf")
			if err := ExportFile(src, dir, Options{DType: "f32"}); err != nil {
				t.Fatal(err)
			}
			var c map[string]any
			raw, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"model_type": tc.spec.Arch, "hidden_size": float64(tc.spec.Embd), "intermediate_size": float64(tc.spec.FF),
				"num_attention_heads": float64(tc.spec.Heads), "num_key_value_heads": float64(tc.spec.HeadsKV),
				"num_hidden_layers": float64(tc.spec.Layers), "head_dim": float64(tc.spec.Embd / tc.spec.Heads),
				"tie_word_embeddings": tc.spec.Tied, "torch_dtype": "float32", "vocab_size": 512.0,
			}
			if tc.spec.RopeBase != 0 {
				want["rope_theta"] = float64(tc.spec.RopeBase)
			}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("config.json %s = %v, want %v", k, c[k], v)
				}
			}
			if a, _ := c["architectures"].([]any); len(a) != 1 || a[0] != tc.class {
				t.Errorf("architectures = %v, want [%s]", c["architectures"], tc.class)
			}
			ts, _, err := safetensors.Read(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, st := range ts {
				names = append(names, st.Name)
				if !strings.HasPrefix(st.Name, "model.") && st.Name != "lm_head.weight" {
					t.Errorf("tensor %s is outside transformers' state dict", st.Name)
				}
			}
			for _, n := range tc.have {
				if !slices.Contains(names, n) {
					t.Errorf("no %s among %v", n, names)
				}
			}
			for _, n := range tc.lack {
				if slices.Contains(names, n) {
					t.Errorf("%s should not be there", n)
				}
			}
			back := filepath.Join(t.TempDir(), "back.gguf")
			if err := Convert(dir, back, ConvertOptions{AllowNoTemplate: true}); err != nil {
				t.Fatal(err)
			}
			a, _ := gguf.Open(src)
			b, err := gguf.Open(back)
			if err != nil {
				t.Fatal(err)
			}
			if b.Arch() != tc.spec.Arch || len(a.Tensors) != len(b.Tensors) {
				t.Fatalf("back: arch %s, %d tensors; want %s, %d", b.Arch(), len(b.Tensors), tc.spec.Arch, len(a.Tensors))
			}
			for _, ta := range a.Tensors {
				da, _ := a.ReadF32(ta.Name)
				db, err := b.ReadF32(ta.Name)
				if err != nil || !slices.Equal(da, db) {
					t.Fatalf("%s differs after the round trip (%v)", ta.Name, err)
				}
			}
		})
	}
}
