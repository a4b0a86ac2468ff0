package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/sampler"
)

// checkText is scored by both bodies; ordinary prose that any tokenizer splits into
// many tokens.
const checkText = `Once upon a time, in a small village by the sea, there lived an old fisherman and his ` +
	`granddaughter. Every morning they walked to the harbour, counted the boats, and argued about the weather. ` +
	`"Seven boats today," she said, "and the wind is from the west, so the fish will be near the rocks." ` +
	`He laughed, because she was usually right. To solve 3x + 5 = 20, subtract 5 from both sides and divide ` +
	`by 3: x = 5. The train left at 9:15 and arrived at 11:45, so the journey took two and a half hours. ` +
	`In the evening they mended nets, cooked soup with potatoes and onions, and read stories about distant ` +
	`islands, brave sailors, and storms that lasted for days. Water boils at 100 degrees Celsius at sea level; ` +
	`the square root of 144 is 12; and the sum of the angles of a triangle is 180 degrees.`

type checkReport struct {
	Model          string      `json:"model"`
	Arch           string      `json:"arch"`
	Params         int64       `json:"params"`
	Vocab          int         `json:"vocab"`
	Layers         int         `json:"layers"`
	Embd           int         `json:"embedding_length"`
	Heads          int         `json:"heads"`
	HeadsKV        int         `json:"kv_heads"`
	TiedOutput     bool        `json:"tied_output"`
	SourceType     string      `json:"source_precision"`
	ComparedWith   string      `json:"compared_with"`
	Tokens         int         `json:"tokens"`
	Gap            learner.Gap `json:"gap"`
	GapAfterReload learner.Gap `json:"gap_after_export_reload"`
	// GapBF16 is the gap of a learner computing in bf16 (f32 weights, bf16 matmuls): the
	// drift that training in bf16 adds, reported, not judged by the f32 tolerance.
	GapBF16     learner.Gap `json:"gap_bf16"`
	Tolerance   float64     `json:"tolerance"`
	OK          bool        `json:"ok"`
	LoadSeconds float64     `json:"learner_load_seconds"`
	// LearnerDevice and SamplerDevice are where the two bodies ran: "cpu", the learner's
	// CUDA device (cuda:N), or the sampler's GPU.
	LearnerDevice string  `json:"learner_device"`
	SamplerDevice string  `json:"sampler_device"`
	ExportSeconds float64 `json:"export_reload_seconds"`
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	model := fs.String("model", defaultModelPath(), "GGUF model file")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	tol := fs.Float64("tolerance", 1e-3, "largest acceptable |Δ log-prob| (and |Δ| entropy, self-certainty) between learner and sampler")
	nTokens := fs.Int("tokens", 256, "tokens of the fixed text to compare over")
	threads := fs.Int("threads", 0, "CPU threads; 0 uses all cores")
	device := fs.String("device", "cpu", "the learner's device: cpu, cuda or cuda:N (learner.device)")
	gpuLayers := fs.Int("gpu-layers", 0, "layers the sampler offloads to a GPU; -1 all (sampling.gpu_layers)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *nTokens < 2 {
		return usageError{fmt.Sprintf("--tokens must be >= 2, got %d", *nTokens)}
	}
	if !(*tol > 0) {
		return usageError{fmt.Sprintf("--tolerance must be positive, got %g", *tol)}
	}
	if _, err := os.Stat(*model); err != nil {
		return fmt.Errorf("model: %w", err)
	}

	rep := checkReport{Model: *model, Tolerance: *tol}
	start := time.Now()
	lm, err := learner.Load(*model, learner.Options{Threads: *threads, Device: *device, Precision: learner.PrecisionF32})
	if err != nil {
		return err
	}
	defer lm.Close()
	rep.LearnerDevice = lm.Info().Device
	if rep.LearnerDevice == "cpu" && *device != "cpu" {
		fmt.Fprintln(stderr, lm.Info().PrecisionNote) // why it is not on the device asked for
	}
	rep.LoadSeconds = time.Since(start).Seconds()
	info := lm.Info()
	rep.Arch, rep.Params, rep.Vocab, rep.Layers, rep.Embd = info.Arch, info.Params, info.Vocab, info.Layers, info.Embd
	rep.Heads, rep.HeadsKV, rep.TiedOutput = info.Heads, info.HeadsKV, info.TiedOutput

	src, err := gguf.Open(*model)
	if err != nil {
		return err
	}
	rep.SourceType = gguf.PrecisionOf(src).Name
	allF32 := true
	for _, t := range src.Tensors {
		allF32 = allF32 && t.Type() == "F32"
	}

	tmp, err := os.MkdirTemp("", "rlif-check-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// Both bodies must hold the same numbers: a quantized file is compared against its
	// f32 re-export, so that only the implementations differ, not the weights.
	samplerPath := *model
	rep.ComparedWith = "source file"
	if !allF32 {
		samplerPath = filepath.Join(tmp, "reference-f32.gguf")
		if err := lm.Export(samplerPath, "f32"); err != nil {
			return err
		}
		rep.ComparedWith = "f32 re-export"
	}
	// An f32 KV cache: llama.cpp's default f16 cache alone moves log-probs by ~1e-3.
	sm, err := sampler.Load(samplerPath, sampler.Options{Threads: *threads, GPULayers: *gpuLayers, KVCacheF32: true, MaxSequences: 1, ContextSize: *nTokens + 64})
	if err != nil {
		return fmt.Errorf("sampler: %w", err)
	}
	defer sm.Close()
	rep.SamplerDevice = "cpu"
	if g := sm.Info().GPU; g != "" {
		rep.SamplerDevice = g
	} else if note := sm.Info().DeviceNote; note != "" {
		fmt.Fprintln(stderr, note)
	}
	toks, err := sm.Tokenize(strings.Repeat(checkText+"\n", 1+*nTokens/100), true)
	if err != nil {
		return err
	}
	if len(toks) < 2 {
		return fmt.Errorf("the check text tokenizes to %d tokens", len(toks))
	}
	n := min(*nTokens, len(toks))
	if c := sm.Info().ContextLength; c > 0 && n > c {
		n = c
	}
	toks = toks[:n]
	rep.Tokens = n - 1

	if err := ctx.Err(); err != nil {
		return err
	}
	if rep.Gap, err = learner.Parity(lm, sm, toks, 1); err != nil {
		return err
	}
	lb, err := learner.Load(*model, learner.Options{Threads: *threads, Device: *device, Precision: learner.PrecisionBF16})
	if err != nil {
		return err
	}
	rep.GapBF16, err = learner.Parity(lb, sm, toks, 1)
	lb.Close()
	if err != nil {
		return err
	}

	start = time.Now()
	exported := filepath.Join(tmp, "export-f32.gguf")
	if err := lm.Export(exported, "f32"); err != nil {
		return err
	}
	if err := sm.Reload(exported); err != nil {
		return fmt.Errorf("sampler reload of the export: %w", err)
	}
	rep.ExportSeconds = time.Since(start).Seconds()
	if rep.GapAfterReload, err = learner.Parity(lm, sm, toks, 1); err != nil {
		return err
	}
	rep.OK = rep.Gap.Max() <= *tol && rep.GapAfterReload.Max() <= *tol

	if *asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "model         %s\n", rep.Model)
		fmt.Fprintf(stdout, "architecture  %s (%d layers, embedding %d, %d heads / %d KV heads, vocabulary %d, tied output %v)\n",
			rep.Arch, rep.Layers, rep.Embd, rep.Heads, rep.HeadsKV, rep.Vocab, rep.TiedOutput)
		fmt.Fprintf(stdout, "parameters    %d (%s weights; the learner holds float32)\n", rep.Params, rep.SourceType)
		fmt.Fprintf(stdout, "devices       learner %s, sampler %s\n", rep.LearnerDevice, rep.SamplerDevice)
		fmt.Fprintf(stdout, "parity        over %d tokens, sampler on the %s: max |Δ| log-prob %.2e, entropy %.2e, self-certainty %.2e\n",
			rep.Tokens, rep.ComparedWith, rep.Gap.LogProb, rep.Gap.Entropy, rep.Gap.SelfCertainty)
		fmt.Fprintf(stdout, "bf16 learner  the same in bf16 compute (f32 weights): max |Δ| log-prob %.2e, entropy %.2e, self-certainty %.2e (not judged)\n",
			rep.GapBF16.LogProb, rep.GapBF16.Entropy, rep.GapBF16.SelfCertainty)
		fmt.Fprintf(stdout, "after export  export+reload %.1fs: max |Δ| log-prob %.2e, entropy %.2e, self-certainty %.2e\n",
			rep.ExportSeconds, rep.GapAfterReload.LogProb, rep.GapAfterReload.Entropy, rep.GapAfterReload.SelfCertainty)
		verdict := "OK: rlif can train this model"
		if !rep.OK {
			verdict = "FAIL"
		}
		fmt.Fprintf(stdout, "result        %s (tolerance %g)\n", verdict, rep.Tolerance)
	}
	if !rep.OK {
		return fmt.Errorf("learner and sampler disagree by %.3g (tolerance %g): training would optimize a different model than the one sampled",
			max(rep.Gap.Max(), rep.GapAfterReload.Max()), *tol)
	}
	return nil
}
