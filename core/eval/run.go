// Package eval measures what a model can do on a dataset with gold answers, with the
// sampler and the answer checking of training: accuracy with its Wilson interval,
// pass@k and maj@k, and how well the model's self-certainty separates its correct
// answers from its wrong ones (Mann–Whitney U). It writes per-item records, a summary
// and a histogram, and compares evaluations side by side (the paper's Table 1 rows).
package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/internal/liveline"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
	"github.com/rlif/rlif/policy/sampling"
)

// DefaultSystem is the system prompt of the default protocol, the one training uses by
// default (config.DefaultSystemPrompt), so that a before/after comparison runs the same
// protocol as the run.
const DefaultSystem = config.DefaultSystemPrompt

// DefaultBatch is the default number of sequences decoded together. On CPU, larger
// batches gain little: llama.cpp attends over the whole shared KV cache, whose size grows
// with the batch (measured here: 93 tok/s at 8, 85 at 16 with 256 max tokens).
const DefaultBatch = 16

// Config is how to run an evaluation.
type Config struct {
	Settings
	// Data is the data file the items came from, recorded in the summary.
	Data string
	// Threads for decoding (0: all cores); GPULayers as in sampler.Options.
	Threads   int
	GPULayers int
	// Progress, when set, receives a line after every batch of items.
	Progress io.Writer
}

// params are the sampling parameters of the settings (Seed is set per wave).
func (s Settings) params() sampling.Params {
	return sampling.Params{MaxTokens: s.MaxTokens, Temperature: s.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP}
}

func (c *Config) check() error {
	if err := c.params().Validate(); err != nil {
		return err
	}
	if err := sampling.CheckThreads("threads", c.Threads); err != nil {
		return err
	}
	switch {
	case c.N < 1:
		return fmt.Errorf("samples per item must be >= 1, got %d", c.N)
	case c.N > 1 && c.Temperature == 0:
		return fmt.Errorf("%d samples per item with greedy decoding would all be the same; set a temperature", c.N)
	case c.Batch < 0:
		return fmt.Errorf("batch must be >= 0, got %d", c.Batch)
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Batch < c.N {
		c.Batch = c.N
	}
	return nil
}

// Result is a finished evaluation: its summary and one record per completion.
type Result struct {
	Summary Summary
	Records []Record
}

// Evaluate samples cfg.N completions for every item from the GGUF model at modelPath,
// batched, checks their answers and summarizes them. The same model, items, settings
// and batch give the same completions, up to llama.cpp's batch-dependent CPU kernels
// on quantized weights (a sequence's logits move slightly with what else is in the
// batch, so greedy results can differ a little from one-at-a-time decoding).
func Evaluate(ctx context.Context, modelPath string, items []Item, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, errors.New("no items to evaluate")
	}
	// Size the KV cache to the prompts: tokenize them first with a minimal context.
	prompts, longest, maxNew, err := tokenize(modelPath, items, cfg)
	if err != nil {
		return nil, err
	}
	perWave := max(1, cfg.Batch/cfg.N)
	seqs := perWave * cfg.N
	opt := sampler.Options{
		Threads: cfg.Threads, GPULayers: cfg.GPULayers, MaxSequences: seqs,
		ContextSize: perWave*longest + seqs*maxNew,
	}
	m, err := sampler.Load(modelPath, opt)
	if err != nil {
		return nil, err
	}
	defer m.Close()

	params := cfg.params()
	groups := make([][]rollout.Completion, 0, len(items))
	start := time.Now()
	tokens, correct := 0, 0
	line := liveline.New(cfg.Progress)
	for lo := 0; lo < len(items); lo += perWave {
		hi := min(lo+perWave, len(items))
		reqs := make([]sampler.Request, hi-lo)
		for i := range reqs {
			reqs[i] = sampler.Request{Prompt: items[lo+i].Prompt, Tokens: prompts[lo+i]}
		}
		// Every wave has its own seed stream, so that no two items share one.
		params.Seed = waveSeed(cfg.Seed, lo)
		if line != nil {
			params.Progress = func(done, _, waveTokens int) {
				acc := ""
				if lo > 0 {
					acc = fmt.Sprintf(" · accuracy so far %.1f%%", 100*float64(correct)/float64(lo*cfg.N))
				}
				line.Show("eval "+filepath.Base(modelPath), lo*cfg.N+done, len(items)*cfg.N, "completions",
					fmt.Sprintf("%s · %.0f tok/s", acc, float64(tokens+waveTokens)/time.Since(start).Seconds()))
			}
		}
		out, err := m.Sample(ctx, reqs, cfg.N, params)
		line.Clear()
		if err != nil {
			return nil, fmt.Errorf("sample items %d-%d: %w", lo+1, hi, err)
		}
		groups = append(groups, out...)
		for i, g := range out {
			for _, c := range g {
				tokens += len(c.Tokens)
				if _, _, ok := Check(c.Text, items[lo+i].Gold); ok {
					correct++
				}
			}
		}
		if cfg.Progress != nil {
			el := time.Since(start)
			eta := time.Duration(float64(el) / float64(hi) * float64(len(items)-hi))
			fmt.Fprintf(cfg.Progress, "eval %s: %d/%d items · %d correct · %d tokens in %s (%.0f tok/s) · about %s left\n",
				filepath.Base(modelPath), hi, len(items), correct, tokens, el.Round(time.Second), float64(tokens)/el.Seconds(), eta.Round(time.Second))
		}
	}
	recs, err := Score(items, groups)
	if err != nil {
		return nil, err
	}
	wall := time.Since(start)
	s, err := Summarize(recs, cfg.N)
	if err != nil {
		return nil, err
	}
	s.Label = Label(modelPath)
	s.Model = modelPath
	s.Data, s.DataName = cfg.Data, Label(cfg.Data)
	s.Settings = cfg.Settings
	s.Threads = m.Options().Threads
	s.WallSeconds = wall.Seconds()
	s.TokensPerSecond = float64(s.Tokens) / wall.Seconds()
	s.Started = start.UTC().Format(time.RFC3339)
	return &Result{Summary: s, Records: recs}, nil
}

// tokenize returns the model input of every item, the longest one's length, and the most
// new tokens a completion can have (max tokens, bounded by the model's context: the
// sampler stops a sequence there, so a larger max tokens only sizes a KV cache it cannot use). It reads
// only the model's vocabulary, so that a missing chat template or a prompt longer than
// the model's context is reported, naming the data row, before the weights load.
func tokenize(modelPath string, items []Item, cfg Config) ([][]int32, int, int, error) {
	m, err := sampler.LoadVocab(modelPath)
	if err != nil {
		return nil, 0, 0, err
	}
	defer m.Close()
	if !cfg.Raw && m.Info().ChatTemplate == "" {
		return nil, 0, 0, fmt.Errorf("model %s has no chat template; evaluate it on raw prompts (--raw)", modelPath)
	}
	out := make([][]int32, len(items))
	longest := 0
	for i, it := range items {
		req := sampler.Request{Prompt: it.Prompt, System: cfg.System, Raw: cfg.Raw}
		toks, err := m.PromptTokens(req)
		if err == nil {
			err = m.CheckPromptLen(len(toks))
		}
		if err != nil {
			return nil, 0, 0, fmt.Errorf("data %s: %s: %w", cfg.Data, data.Where(cfg.Data, it.Line), err)
		}
		out[i] = toks
		longest = max(longest, len(toks))
	}
	maxNew := cfg.MaxTokens
	if n := m.Info().ContextLength; n > 0 {
		maxNew = min(maxNew, n)
	}
	return out, longest, maxNew, nil
}

// waveSeed derives the seed of the wave that starts at item lo.
func waveSeed(seed uint64, lo int) uint64 {
	return seed + uint64(lo)*0x9e3779b97f4a7c15
}

// Label names a model in tables: its file name without the extension.
func Label(path string) string {
	return strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
}
