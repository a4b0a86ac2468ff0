package hf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rlif/rlif/policy/gguf"
)

// archSpec is what transformers calls an architecture rlif's learner trains.
type archSpec struct {
	class     string // config.json architectures[0]
	modelType string // config.json model_type
	// permuteQK: GGUF stores llama's q and k rows interleaved per head (the rotary pairs
	// adjacent, as llama.cpp's non-NeoX RoPE wants); transformers keeps the two halves
	// of each head apart. The NeoX-RoPE architectures store them as transformers does.
	permuteQK bool
}

var archSpecs = map[string]archSpec{
	"llama": {"LlamaForCausalLM", "llama", true},
	"qwen2": {"Qwen2ForCausalLM", "qwen2", false},
	"qwen3": {"Qwen3ForCausalLM", "qwen3", false},
	"olmo2": {"Olmo2ForCausalLM", "olmo2", false},
}

func specOf(arch string) (archSpec, error) {
	s, ok := archSpecs[arch]
	if !ok {
		return s, fmt.Errorf("architecture %q has no Hugging Face mapping here (%s)", arch, strings.Join(gguf.Architectures, ", "))
	}
	return s, nil
}

// archOfClass returns the GGUF architecture of a config.json architectures entry.
// Mistral's checkpoints are llama's layout under another name (llama.cpp loads them as
// llama).
// mistralClass is Mistral's transformers class: a llama in GGUF.
const mistralClass = "MistralForCausalLM"

// supportedClasses are the transformers classes rlif converts, in gguf.Architectures'
// order, Mistral's after llama's.
func supportedClasses() []string {
	var out []string
	for _, a := range gguf.Architectures {
		out = append(out, archSpecs[a].class)
		if a == "llama" {
			out = append(out, mistralClass)
		}
	}
	return out
}

func archOfClass(class string) (string, bool) {
	if class == mistralClass {
		return "llama", true
	}
	for a, s := range archSpecs {
		if s.class == class {
			return a, true
		}
	}
	return "", false
}

// globalNames map whole-model tensors, GGUF name to transformers name.
var globalNames = [][2]string{
	{"token_embd.weight", "model.embed_tokens.weight"},
	{"output_norm.weight", "model.norm.weight"},
	{"output.weight", "lm_head.weight"},
}

// layerNames map a block's tensors, GGUF suffix after "blk.N." to the suffix after
// "model.layers.N.". olmo2 normalizes after attention and after the MLP instead of before.
func layerNames(arch string) [][2]string {
	names := [][2]string{
		{"attn_q.weight", "self_attn.q_proj.weight"},
		{"attn_k.weight", "self_attn.k_proj.weight"},
		{"attn_v.weight", "self_attn.v_proj.weight"},
		{"attn_output.weight", "self_attn.o_proj.weight"},
		{"attn_q.bias", "self_attn.q_proj.bias"},
		{"attn_k.bias", "self_attn.k_proj.bias"},
		{"attn_v.bias", "self_attn.v_proj.bias"},
		{"attn_q_norm.weight", "self_attn.q_norm.weight"},
		{"attn_k_norm.weight", "self_attn.k_norm.weight"},
		{"ffn_gate.weight", "mlp.gate_proj.weight"},
		{"ffn_up.weight", "mlp.up_proj.weight"},
		{"ffn_down.weight", "mlp.down_proj.weight"},
	}
	if arch == "olmo2" {
		return append(names,
			[2]string{"post_attention_norm.weight", "post_attention_layernorm.weight"},
			[2]string{"post_ffw_norm.weight", "post_feedforward_layernorm.weight"})
	}
	return append(names,
		[2]string{"attn_norm.weight", "input_layernorm.weight"},
		[2]string{"ffn_norm.weight", "post_attention_layernorm.weight"})
}

// HFName returns the transformers name of a GGUF tensor of arch.
func HFName(arch, name string) (string, bool) {
	return mapName(arch, name, 0, "blk.", "model.layers.")
}

// GGUFName returns the GGUF name of a transformers tensor of arch.
func GGUFName(arch, name string) (string, bool) {
	return mapName(arch, name, 1, "model.layers.", "blk.")
}

func mapName(arch, name string, from int, fromLayer, toLayer string) (string, bool) {
	for _, p := range globalNames {
		if p[from] == name {
			return p[1-from], true
		}
	}
	rest, ok := strings.CutPrefix(name, fromLayer)
	if !ok {
		return "", false
	}
	num, suffix, ok := strings.Cut(rest, ".")
	if n, err := strconv.Atoi(num); !ok || err != nil || n < 0 || strconv.Itoa(n) != num {
		return "", false
	}
	for _, p := range layerNames(arch) {
		if p[from] == suffix {
			return toLayer + num + "." + p[1-from], true
		}
	}
	return "", false
}

// permuteRows reorders the rows of a [heads*headDim, cols] matrix between GGUF's llama
// layout (rotary pairs adjacent: row 2i+j of a head) and transformers' (halves apart: row
// j*headDim/2+i). toHF picks the direction.
func permuteRows(data []float32, heads, cols int, toHF bool) []float32 {
	rows := len(data) / cols
	hd := rows / heads
	half := hd / 2
	out := make([]float32, len(data))
	for h := 0; h < heads; h++ {
		for i := 0; i < half; i++ {
			for j := 0; j < 2; j++ {
				g := h*hd + 2*i + j
				t := h*hd + j*half + i
				src, dst := g, t
				if !toHF {
					src, dst = t, g
				}
				copy(out[dst*cols:(dst+1)*cols], data[src*cols:(src+1)*cols])
			}
		}
	}
	return out
}
