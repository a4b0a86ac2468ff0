package hf

import (
	"slices"
	"testing"

	"github.com/rlif/rlif/policy/gguf"
)

// permuteRows follows llama.cpp's convert_hf_to_gguf permute: HF's q/k rows, viewed as
// (head, half j, i), are stored in GGUF as (head, i, j). With one column the rows are the
// values: for a head of 4, GGUF holds HF rows 0, 2, 1, 3.
func TestPermuteRows(t *testing.T) {
	for _, tc := range []struct {
		name        string
		heads, cols int
		gguf, hf    []float32
	}{
		{"one head of 4", 1, 1, []float32{0, 2, 1, 3}, []float32{0, 1, 2, 3}},
		{"two heads of 4", 2, 1, []float32{0, 2, 1, 3, 4, 6, 5, 7}, []float32{0, 1, 2, 3, 4, 5, 6, 7}},
		{"one head of 6", 1, 1, []float32{0, 3, 1, 4, 2, 5}, []float32{0, 1, 2, 3, 4, 5}},
		{"rows of two columns", 1, 2, []float32{0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5}, []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := permuteRows(tc.gguf, tc.heads, tc.cols, true); !slices.Equal(got, tc.hf) {
				t.Errorf("to HF: %v, want %v", got, tc.hf)
			}
			if got := permuteRows(tc.hf, tc.heads, tc.cols, false); !slices.Equal(got, tc.gguf) {
				t.Errorf("to GGUF: %v, want %v", got, tc.gguf)
			}
		})
	}
}

// Tensor names follow each architecture's transformers state dict, both ways.
func TestTensorNames(t *testing.T) {
	for _, tc := range []struct {
		arch, gguf, hf string
	}{
		{"llama", "token_embd.weight", "model.embed_tokens.weight"},
		{"llama", "output.weight", "lm_head.weight"},
		{"llama", "output_norm.weight", "model.norm.weight"},
		{"llama", "blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
		{"llama", "blk.11.attn_output.weight", "model.layers.11.self_attn.o_proj.weight"},
		{"llama", "blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"},
		{"llama", "blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
		{"llama", "blk.2.ffn_gate.weight", "model.layers.2.mlp.gate_proj.weight"},
		{"qwen2", "blk.0.attn_q.bias", "model.layers.0.self_attn.q_proj.bias"},
		{"qwen2", "blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"},
		{"qwen3", "blk.5.attn_q_norm.weight", "model.layers.5.self_attn.q_norm.weight"},
		{"qwen3", "blk.5.attn_k_norm.weight", "model.layers.5.self_attn.k_norm.weight"},
		{"olmo2", "blk.1.post_attention_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
		{"olmo2", "blk.1.post_ffw_norm.weight", "model.layers.1.post_feedforward_layernorm.weight"},
		{"olmo2", "blk.1.attn_k_norm.weight", "model.layers.1.self_attn.k_norm.weight"},
	} {
		if got, ok := HFName(tc.arch, tc.gguf); !ok || got != tc.hf {
			t.Errorf("HFName(%s, %s) = %q, %v; want %s", tc.arch, tc.gguf, got, ok, tc.hf)
		}
		if got, ok := GGUFName(tc.arch, tc.hf); !ok || got != tc.gguf {
			t.Errorf("GGUFName(%s, %s) = %q, %v; want %s", tc.arch, tc.hf, got, ok, tc.gguf)
		}
	}
	for _, tc := range []struct{ arch, hf string }{
		{"olmo2", "model.layers.0.input_layernorm.weight"}, // olmo2 has no pre-norm
		{"llama", "model.layers.x.mlp.up_proj.weight"},
		{"llama", "model.layers.01.mlp.up_proj.weight"},
		{"llama", "model.layers.0.mlp.experts.0.weight"},
	} {
		if got, ok := GGUFName(tc.arch, tc.hf); ok {
			t.Errorf("GGUFName(%s, %s) = %q, want no mapping", tc.arch, tc.hf, got)
		}
	}
}

// Every architecture rlif trains has a Hugging Face mapping, and no other has one: the
// list is gguf.Architectures, and the messages name its members.
func TestArchSpecsFollowTheList(t *testing.T) {
	var keys []string
	for a := range archSpecs {
		keys = append(keys, a)
	}
	want := append([]string(nil), gguf.Architectures...)
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Fatalf("archSpecs has %v, gguf.Architectures %v", keys, want)
	}
	if got := supportedClasses(); len(got) != len(want)+1 || got[1] != mistralClass {
		t.Fatalf("supported classes %v", got)
	}
}
