package train

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeFinal exports the trained model as a GGUF that llama.cpp and ollama load (LoRA
// merged in), at the sync precision, and as a Hugging Face directory beside it.
func (r *run) writeFinal() (string, error) {
	dir := filepath.Join(r.out, "final")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "model.gguf")
	if err := r.lrn.Export(p, r.syncPrecision()); err != nil {
		return "", fmt.Errorf("final export: %w", err)
	}
	// The same weights as a Hugging Face directory (bf16), for transformers, vLLM and the Hub.
	if err := r.lrn.ExportHF(filepath.Join(dir, "hf"), "", true); err != nil {
		return "", fmt.Errorf("final Hugging Face export: %w", err)
	}
	if r.cfg.LoRA.Enabled {
		if err := r.lrn.ExportLoRA(filepath.Join(dir, "adapter.gguf")); err != nil {
			return "", fmt.Errorf("final adapter export: %w", err)
		}
		if err := r.lrn.ExportPEFT(filepath.Join(dir, "peft")); err != nil {
			return "", fmt.Errorf("final PEFT adapter export: %w", err)
		}
	}
	fmt.Fprintf(r.progress, "final model: %s\n", p)
	return p, nil
}
