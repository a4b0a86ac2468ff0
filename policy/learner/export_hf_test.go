package learner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/policy/hf/safetensors"
)

// A LoRA model writes its merged weights as a Hugging Face directory and its adapters in
// PEFT's format: one lora_A/lora_B pair per targeted projection of every layer.
func TestExportHFAndPEFT(t *testing.T) {
	m, err := Load(testutil.StoriesModel(t), Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.ExportPEFT(t.TempDir()); err == nil {
		t.Error("PEFT export without LoRA succeeded")
	}
	if err := m.EnableLoRA(LoRAConfig{Rank: 4, Alpha: 8, Targets: []string{"q", "v", "down"}, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := m.ExportHF(filepath.Join(dir, "hf"), "f32", false); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := hf.Read(filepath.Join(dir, "hf"), hf.ConvertOptions{AllowNoTemplate: true}); err != nil {
		t.Fatalf("the Hugging Face export does not read back: %v", err)
	}
	if err := m.ExportPEFT(filepath.Join(dir, "peft")); err != nil {
		t.Fatal(err)
	}
	ts, _, err := safetensors.Read(filepath.Join(dir, "peft", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2*3*m.Info().Layers {
		t.Errorf("%d adapter tensors, want %d", len(ts), 2*3*m.Info().Layers)
	}
	shapes := map[string][]uint64{}
	for _, s := range ts {
		shapes[s.Name] = s.Shape
	}
	for name, want := range map[string][]uint64{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": {4, 64},
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": {64, 4},
		"base_model.model.model.layers.4.mlp.down_proj.lora_A.weight":    {4, 172},
		"base_model.model.model.layers.4.mlp.down_proj.lora_B.weight":    {64, 4},
	} {
		if !slices.Equal(shapes[name], want) {
			t.Errorf("%s: shape %v, want %v", name, shapes[name], want)
		}
	}
	var c map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "peft", "adapter_config.json"))
	if err := json.Unmarshal(b, &c); err != nil || c["r"] != 4.0 || c["lora_alpha"] != 8.0 {
		t.Errorf("adapter_config.json %v (%v)", c, err)
	}
}
