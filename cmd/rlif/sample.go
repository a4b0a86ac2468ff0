package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/policy/sampler"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runSample(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sample", stderr)
	model := fs.String("model", config.DefaultModel, "GGUF model file")
	raw := fs.Bool("raw", false, "feed BOS + prompt as is, without the chat template")
	system := fs.String("system", "", "system message (chat template only)")
	prompt := fs.String("prompt", "", "the prompt (required)")
	n := fs.Int("n", 1, "completions to sample for the prompt (the group size G)")
	maxTokens := fs.Int("max-tokens", 256, "most tokens per completion")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 decodes greedily")
	topP := fs.Float64("top-p", 1, "nucleus sampling threshold; 1 disables")
	topK := fs.Int("top-k", 0, "top-k sampling; 0 disables")
	minP := fs.Float64("min-p", 0, "min-p sampling; 0 disables")
	seed := seedFlag(fs, "random seed, an integer `N` >= 0; the same seed gives the same completions")
	var stops stringList
	fs.Var(&stops, "stop", "stop string (repeatable)")
	threads := fs.Int("threads", 0, "CPU threads; 0 uses all cores")
	gpuLayers := fs.Int("gpu-layers", 0, "layers to offload to a GPU backend (-1: all); see README, GPU")
	asJSON := fs.Bool("json", false, "print one JSON object per completion per line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *prompt == "" {
		return usageError{"--prompt is required"}
	}
	if *n < 1 {
		return usageError{fmt.Sprintf("--n must be >= 1, got %d", *n)}
	}
	params := sampler.Params{MaxTokens: *maxTokens, Temperature: *temperature, TopP: *topP, TopK: *topK, MinP: *minP, Stop: stops, Seed: *seed}
	if err := checkSamplingFlags(params, *threads); err != nil {
		return err
	}
	path := resolveModel(*model)

	// The prompt and the request's size are checked on the vocabulary alone, before the
	// weights and the KV cache are allocated.
	req := sampler.Request{Prompt: *prompt, System: *system, Raw: *raw}
	toks, err := promptTokens(path, req, *maxTokens)
	if err != nil {
		return err
	}
	req.Tokens = toks

	// The KV cache holds the prompt once plus n continuations; size it to the request.
	opt := sampler.Options{Threads: *threads, GPULayers: *gpuLayers, MaxSequences: *n, ContextSize: len(toks) + *n**maxTokens}
	start := time.Now()
	m, err := sampler.Load(path, opt)
	if err != nil {
		return err
	}
	defer m.Close()
	loaded := time.Since(start)

	start = time.Now()
	groups, err := m.Sample(ctx, []sampler.Request{req}, *n, params)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)

	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if *asJSON {
		enc := json.NewEncoder(w)
		for _, c := range groups[0] {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	}
	info := m.Info()
	total := 0
	for i, c := range groups[0] {
		total += len(c.Tokens)
		fmt.Fprintf(w, "── completion %d/%d · %d tokens · finish %s · self-certainty %.4f\n%s\n\n", i+1, len(groups[0]), len(c.Tokens), c.FinishReason, c.SelfCertaintyMean, strings.TrimSpace(c.Text))
	}
	fmt.Fprintf(w, "%s (%s, %s params, vocab %d) · loaded in %.2fs · %d tokens in %.2fs (%.1f tok/s)\n",
		info.Arch, info.Description, humanCount(info.Params), info.VocabSize, loaded.Seconds(), total, elapsed.Seconds(), float64(total)/elapsed.Seconds())
	return nil
}

// promptTokens tokenizes the request on the model's vocabulary and checks that the prompt
// and maxTokens new tokens fit in the model's context.
func promptTokens(path string, req sampler.Request, maxTokens int) ([]int32, error) {
	v, err := sampler.LoadVocab(path)
	if err != nil {
		return nil, err
	}
	defer v.Close()
	toks, err := v.PromptTokens(req)
	if err == nil {
		err = v.CheckPromptLen(len(toks))
	}
	if err != nil {
		return nil, err
	}
	if ctx := v.Info().ContextLength; ctx > 0 && len(toks)+maxTokens > ctx {
		return nil, usageError{fmt.Sprintf("--max-tokens %d: the model's context holds %d tokens and the prompt takes %d, so a completion has at most %d", maxTokens, ctx, len(toks), ctx-len(toks))}
	}
	return toks, nil
}

// defaultModelPath is the default --model of the commands: the default model's path in
// the repository (resolveModel finds it from elsewhere).
func defaultModelPath() string { return config.DefaultModel }

// resolveModel finds the default model (models/… in the repository, where `make model`
// puts it) from the working directory or from the binary's place in bin/; other paths
// are returned as they are.
func resolveModel(path string) string {
	if path != config.DefaultModel {
		return path
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "..", path)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return path
}

func humanCount(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}
