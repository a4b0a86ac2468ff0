package sampler

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
)

// benchPrompts are the 8 prompts of the group-sampling benchmarks.
var benchPrompts = []string{
	"Explain why the sky is blue.", "Write a short story about a robot.", "What is 17 times 23? Think step by step.",
	"List three uses of copper.", "Describe the water cycle.", "How do vaccines work?",
	"Summarize the plot of a heist movie.", "Why do cats purr?",
}

// BenchmarkDecode measures, on the default model and in one run, tokens/s of
// (a) a plain single-sequence greedy decode loop without statistics,
// (b) the same loop with the per-token statistics,
// (c) group sampling of 8 prompts x G=8 with statistics,
// so that the cost of the statistics and the gain of group sampling are read off
// side by side: go test -run '^$' -bench Decode -benchtime 1x ./policy/sampler/
//
// It runs on the default model as shipped (Q4_1) and on the same weights at the precision
// the trainer syncs the sampler to by default on this machine (sync.precision = auto:
// FastestPrecision).
func BenchmarkDecode(b *testing.B) {
	q41 := testutil.DefaultModel(b)
	synced := FastestPrecision(0)
	syncedPath := filepath.Join(b.TempDir(), "smollm2-"+synced+".gguf")
	if err := convertModel(q41, syncedPath, synced); err != nil {
		b.Fatal(err)
	}
	reqs := make([]Request, len(benchPrompts))
	for i, p := range benchPrompts {
		reqs[i] = Request{Prompt: p}
	}
	for _, model := range []struct{ name, path string }{{"q4_1", q41}, {synced, syncedPath}} {
		m, err := Load(model.path, Options{ContextSize: 8 * (64 + 8*128), MaxSequences: 64})
		if err != nil {
			b.Fatal(err)
		}
		run := func(b *testing.B, reqs []Request, n int, p Params, noStats bool) {
			m.noStats = noStats
			defer func() { m.noStats = false }()
			sampleRate(b, m, reqs, n, p)
		}
		greedy := Params{MaxTokens: 128}
		b.Run(model.name+"/a_single_greedy_nostats", func(b *testing.B) { run(b, reqs[:1], 1, greedy, true) })
		b.Run(model.name+"/b_single_greedy_stats", func(b *testing.B) { run(b, reqs[:1], 1, greedy, false) })
		b.Run(model.name+"/c_group_8x8_stats", func(b *testing.B) {
			run(b, reqs, 8, Params{MaxTokens: 128, Temperature: 0.9, Seed: 1}, false)
		})
		m.Close()
	}
}

// BenchmarkSyncPrecision measures group sampling (BenchmarkDecode's (c): 8 prompts x G=8,
// T=0.9, statistics on) on the default model's weights exported at each precision the
// trainer can sync the sampler to, interleaved round by round so that a busy machine
// slows all of them alike: read the ratios within one run, not the absolute rates. One
// thread: on a shared machine ggml's worker threads spin in ggml_barrier waiting for each
// other (88% of the samples of a 2-thread profile here), which would measure the neighbours.
// go test -run '^$' -bench SyncPrecision -benchtime 1x ./policy/sampler/
func BenchmarkSyncPrecision(b *testing.B) {
	q41 := testutil.DefaultModel(b)
	dir := b.TempDir()
	precisions := []string{"bf16", "f16", "q8_0"}
	models := make([]*Model, len(precisions))
	for i, p := range precisions {
		path := filepath.Join(dir, "smollm2-"+p+".gguf")
		if err := convertModel(q41, path, p); err != nil {
			b.Fatal(err)
		}
		m, err := Load(path, Options{Threads: 1, ContextSize: 8 * (64 + 8*128), MaxSequences: 64})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		models[i] = m
	}
	reqs := make([]Request, len(benchPrompts))
	for i, p := range benchPrompts {
		reqs[i] = Request{Prompt: p}
	}
	for round := 1; round <= 2; round++ {
		for i, p := range precisions {
			b.Run(fmt.Sprintf("%s/round_%d", p, round), func(b *testing.B) {
				sampleRate(b, models[i], reqs, 8, Params{MaxTokens: 128, Temperature: 0.9, Seed: 1})
			})
		}
	}
}

// BenchmarkDraw compares, on the same SmolLM2 logits, llama.cpp's sampler chain at a
// temperature (which sorts all 49,152 candidates per token) with rlif's draw from the
// statistics pass (rlif_sample_token), each followed by what the sampler needs per token.
func BenchmarkDraw(b *testing.B) {
	m, err := Load(testutil.DefaultModel(b), Options{ContextSize: 512, MaxSequences: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	toks, err := m.PromptTokens(Request{Prompt: "Why do cats purr?"})
	if err != nil {
		b.Fatal(err)
	}
	idx, err := m.decodePrompt(toks, 0)
	if err != nil {
		b.Fatal(err)
	}
	p := Params{MaxTokens: 1, Temperature: 0.9}
	b.Run("llama_chain_then_stats", func(b *testing.B) {
		s := &sequence{chain: newChain(p, 1)}
		defer s.free()
		for i := 0; i < b.N; i++ {
			m.drawOnce(s, p, idx)
		}
	})
	b.Run("rlif_draw_with_stats", func(b *testing.B) {
		s := &sequence{rng: 1}
		cpu := cpuSeconds(b)
		for i := 0; i < b.N; i++ {
			m.drawOnce(s, p, idx)
		}
		b.ReportMetric((cpuSeconds(b)-cpu)*1e6/float64(b.N), "cpu-µs/op")
	})
}

// BenchmarkWaveSize samples the same 8 prompts x G=8 with 8, 16, 32 and 64 sequences
// decoded together. llama.cpp's unified KV cache makes every token attend over the cells of
// all sequences in the cache (and mask the others out), so attention grows with the wave:
// this finds the size where batching the matmuls stops paying for it.
//
// It samples from the default model exported at the trainer's default sync precision, on
// one thread (see BenchmarkSyncPrecision), and reports tokens per CPU-second too.
func BenchmarkWaveSize(b *testing.B) {
	synced := FastestPrecision(0)
	path := filepath.Join(b.TempDir(), "smollm2-"+synced+".gguf")
	if err := convertModel(testutil.DefaultModel(b), path, synced); err != nil {
		b.Fatal(err)
	}
	var reqs []Request
	for _, p := range []string{"Explain why the sky is blue.", "Write a short story about a robot.", "What is 17 times 23?", "List three uses of copper.",
		"Describe the water cycle.", "How do vaccines work?", "Summarize a heist movie.", "Why do cats purr?"} {
		reqs = append(reqs, Request{Prompt: p})
	}
	for _, seqs := range []int{8, 16, 32, 64} {
		b.Run(fmt.Sprintf("seqs_%d", seqs), func(b *testing.B) {
			m, err := Load(path, Options{Threads: 1, MaxSequences: seqs, ContextSize: seqs / 8 * (64 + 8*128)})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			sampleRate(b, m, reqs, 8, Params{MaxTokens: 128, Temperature: 0.9, Seed: 1})
		})
	}
}

// BenchmarkReload measures replacing the weights from a new GGUF file (a fresh copy of the
// default model each time, as the trainer writes after every step).
func BenchmarkReload(b *testing.B) {
	path := testutil.DefaultModel(b)
	m, err := Load(path, Options{ContextSize: 4096, MaxSequences: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	dir := b.TempDir()
	copies := make([]string, b.N)
	for i := range copies {
		copies[i] = filepath.Join(dir, fmt.Sprintf("step-%d.gguf", i))
		copyFile(b, path, copies[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := m.Reload(copies[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func copyFile(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
}

// cpuSeconds is the CPU time this process has used. On a shared machine a single-threaded
// benchmark's CPU time is what its work costs; the wall time adds the neighbours' share.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// sampleRate samples n completions per request b.N times and reports tokens/s, of wall
// time and of CPU time.
func sampleRate(b *testing.B, m *Model, reqs []Request, n int, p Params) {
	tokens := 0
	start, cpu := time.Now(), cpuSeconds(b)
	for i := 0; i < b.N; i++ {
		out, err := m.Sample(context.Background(), reqs, n, p)
		if err != nil {
			b.Fatal(err)
		}
		for _, g := range out {
			for _, c := range g {
				tokens += len(c.Tokens)
			}
		}
	}
	b.ReportMetric(float64(tokens)/time.Since(start).Seconds(), "tok/s")
	b.ReportMetric(float64(tokens)/(cpuSeconds(b)-cpu), "tok/cpu-s")
	b.ReportMetric(float64(tokens)/float64(b.N), "tokens/op")
}

// convertModel rewrites the GGUF model at src at another precision (through float32).
func convertModel(src, dst, precision string) error {
	f, err := gguf.Open(src)
	if err != nil {
		return err
	}
	p, err := gguf.ParsePrecision(precision)
	if err != nil {
		return err
	}
	ts, err := f.ReadAllF32()
	if err != nil {
		return err
	}
	return gguf.WriteModel(dst, f.KV, ts, p)
}
