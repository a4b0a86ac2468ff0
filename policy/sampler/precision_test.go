package sampler

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/rlif/rlif/internal/testutil"
)

// FastestPrecision picks bf16 only where this build's ggml multiplies bf16 natively (so the
// CPU must have AVX-512 BF16), f16 for GPU layers; and the model it picks loads and samples.
func TestFastestPrecision(t *testing.T) {
	for _, layers := range []int{-1, 3} {
		if got := FastestPrecision(layers); got != "f16" {
			t.Errorf("FastestPrecision(%d) = %s, want f16 (GPU layers)", layers, got)
		}
	}
	p := FastestPrecision(0)
	if p != "bf16" && p != "f16" {
		t.Fatalf("FastestPrecision(0) = %q", p)
	}
	if p == "bf16" && !cpu.X86.HasAVX512BF16 {
		t.Fatalf("bf16 chosen on a CPU without AVX-512 BF16")
	}
	path := filepath.Join(t.TempDir(), "stories-"+p+".gguf")
	if err := convertModel(testutil.StoriesModel(t), path, p); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, Options{Threads: 1, ContextSize: 256, MaxSequences: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if d := m.Info().Description; !strings.Contains(d, strings.ToUpper(p)) {
		t.Fatalf("%s export loads as %q", p, d)
	}
	got, err := m.Sample(context.Background(), []Request{{Prompt: "Once upon a time", Raw: true}}, 4, Params{MaxTokens: 16, Temperature: 0.9, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range got[0] {
		if len(c.Tokens) == 0 || len(c.LogProb) != len(c.Tokens) {
			t.Fatalf("%s export samples %d tokens, %d log-probs", p, len(c.Tokens), len(c.LogProb))
		}
	}
}

// GPU layers asked for where no GPU backend is loaded: the sampler runs on the CPU and
// says so in one line; with no GPU layers it says nothing.
func TestGPULayersWithoutGPU(t *testing.T) {
	if gpus := gpuDevices(); len(gpus) > 0 {
		t.Skipf("a GPU backend is loaded (%v): the fall-back cannot happen here", gpus)
	}
	for _, layers := range []int{0, -1} {
		m, err := Load(testutil.StoriesModel(t), Options{Threads: 1, GPULayers: layers, ContextSize: 256, MaxSequences: 1})
		if err != nil {
			t.Fatal(err)
		}
		info := m.Info()
		m.Close()
		if got := info.DeviceNote != ""; got != (layers != 0) || info.GPU != "" || strings.Contains(info.DeviceNote, "\n") {
			t.Errorf("gpu layers %d: note %q, gpu %q", layers, info.DeviceNote, info.GPU)
		}
	}
}
