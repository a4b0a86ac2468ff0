package learner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/hf"
)

// Export writes the current weights (LoRA deltas merged in) as a GGUF model at path in
// the given precision (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k; ""
// keeps the source file's). Metadata (tokenizer, chat template, hyper-parameters) is
// copied from the source file. The file appears atomically.
func (m *Model) Export(path, precision string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	p := gguf.PrecisionOf(m.src)
	if precision != "" {
		var err error
		if p, err = gguf.ParsePrecision(precision); err != nil {
			return err
		}
	}
	ts, err := m.weights()
	if err != nil {
		return err
	}
	return gguf.WriteModel(path, m.src.KV, ts, p)
}

// weights returns every tensor of the model as float32 (LoRA deltas merged in); the
// caller holds m.mu.
func (m *Model) weights() ([]gguf.Tensor, error) {
	ts := make([]gguf.Tensor, 0, len(m.tensors)+len(m.extra))
	for _, ti := range m.tensors {
		t := gguf.Tensor{Name: ti.name, Shape: ti.shape}
		t.Data = make([]float32, t.Elements())
		if err := m.t.Tensor(ti.name, t.Data, true, false); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
		ts = append(ts, t)
	}
	return append(ts, m.extra...), nil
}

// ExportHF writes the current weights (LoRA deltas merged in) as a Hugging Face model
// directory at dir: config.json, model.safetensors in dtype (bf16 or f32; "" is bf16),
// the tokenizer files with the chat template, generation_config.json. replace allows
// replacing a directory that holds files.
func (m *Model) ExportHF(dir, dtype string, replace bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	ts, err := m.weights()
	if err != nil {
		return err
	}
	return hf.Export(dir, m.src.KV, ts, hf.Options{DType: dtype, Replace: replace})
}

// ExportPEFT writes the LoRA adapters in PEFT's format (adapter_config.json,
// adapter_model.safetensors) at dir, for the Hugging Face form of the base model.
func (m *Model) ExportPEFT(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.loraTensors()
	if err != nil {
		return err
	}
	return hf.ExportPEFT(dir, m.src.KV, ts, hf.LoRA{Rank: m.lora.Rank, Alpha: m.lora.Alpha}, true)
}

// ExportLoRA writes the LoRA adapters as a llama.cpp adapter GGUF, which the sampler
// loads on top of the base model it was trained from.
func (m *Model) ExportLoRA(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.loraTensors()
	if err != nil {
		return err
	}
	return gguf.WriteLoRA(path, m.info.Arch, float32(m.lora.Alpha), ts)
}

// loraTensors returns the adapters as "<base tensor>.lora_a" ({in, rank} in ggml order)
// and ".lora_b" ({rank, out}); the caller holds m.mu.
func (m *Model) loraTensors() ([]gguf.Tensor, error) {
	if m.t == nil {
		return nil, errors.New("model is closed")
	}
	if m.lora == nil {
		return nil, errors.New("LoRA is not enabled")
	}
	suffix := map[string]bool{}
	for _, t := range m.lora.Targets {
		suffix[map[string]string{"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output",
			"gate": "ffn_gate", "up": "ffn_up", "down": "ffn_down"}[t]] = true
	}
	var ts []gguf.Tensor
	r := uint64(m.lora.Rank)
	for _, ti := range m.tensors {
		var l int
		var kind string
		if n, _ := fmt.Sscanf(ti.name, "blk.%d.%s", &l, &kind); n != 2 {
			continue
		}
		base, ok := strings.CutSuffix(kind, ".weight")
		if !ok || !suffix[base] {
			continue
		}
		in, out := ti.shape[0], ti.shape[1]
		// ggml shapes: A is {in, r} (PyTorch [r, in]); B is {r, out} (PyTorch [out, r]).
		a := gguf.Tensor{Name: ti.name + ".lora_a", Shape: []uint64{in, r}, Data: make([]float32, in*r)}
		b := gguf.Tensor{Name: ti.name + ".lora_b", Shape: []uint64{r, out}, Data: make([]float32, r*out)}
		if err := m.t.Tensor(a.Name, a.Data, false, false); err != nil {
			return nil, fmt.Errorf("export LoRA: %w", err)
		}
		if err := m.t.Tensor(b.Name, b.Data, false, false); err != nil {
			return nil, fmt.Errorf("export LoRA: %w", err)
		}
		ts = append(ts, a, b)
	}
	return ts, nil
}
