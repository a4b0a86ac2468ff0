package hf

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// A LoRA adapter comes out under PEFT's names and shapes, and the delta B·A it applies
// to the transformers q_proj is the GGUF delta with q's rows permuted as the base is.
func TestExportPEFT(t *testing.T) {
	kv := fsggml.KV{"general.architecture": "llama", "general.name": "tiny", "llama.attention.head_count": uint32(2), "llama.attention.head_count_kv": uint32(1)}
	const in, r, out = 3, 2, 8 // q: 2 heads of 4
	seq := func(n int, off float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = off + float32(i)
		}
		return v
	}
	ts := []gguf.Tensor{
		{Name: "blk.0.attn_q.weight.lora_a", Shape: []uint64{in, r}, Data: seq(in*r, 1)},
		{Name: "blk.0.attn_q.weight.lora_b", Shape: []uint64{r, out}, Data: seq(r*out, -5)},
		{Name: "blk.0.attn_v.weight.lora_a", Shape: []uint64{in, r}, Data: seq(in*r, 0)},
		{Name: "blk.0.attn_v.weight.lora_b", Shape: []uint64{r, 4}, Data: seq(r*4, 0)},
	}
	dir := filepath.Join(t.TempDir(), "peft")
	if err := ExportPEFT(dir, kv, ts, LoRA{Rank: r, Alpha: 4}, false); err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "adapter_config.json"))
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c["peft_type"] != "LORA" || c["r"] != 2.0 || c["lora_alpha"] != 4.0 || c["task_type"] != "CAUSAL_LM" {
		t.Errorf("adapter_config.json %v", c)
	}
	if tm, _ := c["target_modules"].([]any); len(tm) != 2 || tm[0] != "q_proj" || tm[1] != "v_proj" {
		t.Errorf("target_modules %v", c["target_modules"])
	}
	got, _, err := safetensors.Read(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]safetensors.Tensor{}
	for _, s := range got {
		byName[s.Name] = s
	}
	A, okA := byName["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
	B, okB := byName["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
	if !okA || !okB || !slices.Equal(A.Shape, []uint64{r, in}) || !slices.Equal(B.Shape, []uint64{out, r}) {
		t.Fatalf("tensors %v", got)
	}
	a, _ := safetensors.Decode(A)
	bb, _ := safetensors.Decode(B)
	// delta[o][i] = sum_k B[o][k] A[k][i]; in GGUF order the same with q's rows interleaved.
	delta := func(b, a []float32) []float32 {
		d := make([]float32, out*in)
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				for k := 0; k < r; k++ {
					d[o*in+i] += b[o*r+k] * a[k*in+i]
				}
			}
		}
		return d
	}
	want := permuteRows(delta(ts[1].Data, ts[0].Data), 2, in, true)
	for i, v := range delta(bb, a) {
		if math.Abs(float64(v-want[i])) > 1e-4 {
			t.Fatalf("delta[%d] = %g, want %g", i, v, want[i])
		}
	}
}
