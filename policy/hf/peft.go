package hf

import (
	"fmt"
	"sort"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// LoRA is an adapter's hyper-parameters: its scale is Alpha/Rank, as in PEFT.
type LoRA struct {
	Rank  int
	Alpha float64
}

// ExportPEFT writes LoRA adapters, given as GGUF-named "<base>.lora_a" ({in, rank}) and
// "<base>.lora_b" ({rank, out}) tensors, in PEFT's format at dir: adapter_config.json and
// adapter_model.safetensors (f32), named for the transformers form of the base model
// (llama's q/k output rows permuted as Export permutes the base weights).
func ExportPEFT(dir string, kv fsggml.KV, tensors []gguf.Tensor, l LoRA, replace bool) error {
	arch := kv.String("general.architecture")
	spec, err := specOf(arch)
	if err != nil {
		return err
	}
	heads := int(kv.Uint("attention.head_count"))
	kvHeads := int(kv.Uint("attention.head_count_kv", uint32(heads)))
	modules := map[string]bool{}
	var st []safetensors.Tensor
	for _, t := range tensors {
		base, part, ok := cutLoRA(t.Name)
		if !ok || len(t.Shape) != 2 {
			return fmt.Errorf("LoRA tensor %s: want <base>.lora_a or .lora_b of two dimensions", t.Name)
		}
		name, ok := HFName(arch, base)
		if !ok {
			return fmt.Errorf("LoRA tensor %s: base %s has no transformers name", t.Name, base)
		}
		stem := strings.TrimSuffix(name, ".weight")
		modules[stem[strings.LastIndex(stem, ".")+1:]] = true
		shape := []uint64{t.Shape[1], t.Shape[0]}
		data := t.Data
		if part == "B" && spec.permuteQK {
			switch {
			case strings.HasSuffix(base, ".attn_q.weight"):
				data = permuteRows(data, heads, int(shape[1]), true)
			case strings.HasSuffix(base, ".attn_k.weight"):
				data = permuteRows(data, kvHeads, int(shape[1]), true)
			}
		}
		st = append(st, safetensors.Tensor{Name: "base_model.model." + stem + ".lora_" + part + ".weight", DType: "F32", Shape: shape, Data: safetensors.EncodeF32(data)})
	}
	if len(st) == 0 {
		return fmt.Errorf("no LoRA tensors to export")
	}
	targets := make([]string, 0, len(modules))
	for m := range modules {
		targets = append(targets, m)
	}
	sort.Strings(targets)
	cfg, err := jsonBytes(map[string]any{
		"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": l.Rank, "lora_alpha": l.Alpha,
		"target_modules": targets, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": false,
		"inference_mode": true, "use_rslora": false, "base_model_name_or_path": kv.String("general.name"),
	})
	if err != nil {
		return err
	}
	return writeDir(dir, []File{
		{Name: "adapter_config.json", Bytes: cfg},
		{Name: "adapter_model.safetensors", Tensors: st, Meta: map[string]string{"format": "pt"}},
	}, replace)
}

// cutLoRA splits "<base>.lora_a" into base and "A" (PEFT's name for the down matrix).
func cutLoRA(name string) (base, part string, ok bool) {
	if b, ok := strings.CutSuffix(name, ".lora_a"); ok {
		return b, "A", true
	}
	if b, ok := strings.CutSuffix(name, ".lora_b"); ok {
		return b, "B", true
	}
	return "", "", false
}
