package learner

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rlif/rlif/policy/gguf"
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
	ts := make([]gguf.Tensor, 0, len(m.tensors)+len(m.extra))
	for _, ti := range m.tensors {
		t := gguf.Tensor{Name: ti.name, Shape: ti.shape}
		t.Data = make([]float32, t.Elements())
		if err := m.t.Tensor(ti.name, t.Data, true, false); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		ts = append(ts, t)
	}
	ts = append(ts, m.extra...)
	return gguf.WriteModel(path, m.src.KV, ts, p)
}

// ExportLoRA writes the LoRA adapters as a llama.cpp adapter GGUF, which the sampler
// loads on top of the base model it was trained from.
func (m *Model) ExportLoRA(path string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	if m.lora == nil {
		return errors.New("LoRA is not enabled")
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
			return fmt.Errorf("export LoRA: %w", err)
		}
		if err := m.t.Tensor(b.Name, b.Data, false, false); err != nil {
			return fmt.Errorf("export LoRA: %w", err)
		}
		ts = append(ts, a, b)
	}
	return gguf.WriteLoRA(path, m.info.Arch, float32(m.lora.Alpha), ts)
}
