package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/policy/hf"
	"github.com/rlif/rlif/policy/learner"
)

// runExport writes a model as a Hugging Face directory: a GGUF file, a run directory
// (its final model, or its newest checkpoint when the run did not finish) or a
// checkpoint directory.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export", stderr)
	out := fs.String("hf", "", "write the Hugging Face model directory here (required; must not hold files)")
	dtype := fs.String("dtype", "bf16", "weight type of model.safetensors: bf16 or f32")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *out == "" {
		return usageError{"usage: rlif export RUN_DIR|CHECKPOINT_DIR|MODEL.gguf --hf OUT_DIR [--dtype bf16|f32]"}
	}
	if *dtype != "bf16" && *dtype != "f32" {
		return usageError{fmt.Sprintf("--dtype %q: want bf16 or f32", *dtype)}
	}
	src := pos[0]
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("export %s: %w", src, err)
	}
	if !st.IsDir() {
		if err := hf.ExportFile(src, *out, hf.Options{DType: *dtype}); err != nil {
			return err
		}
	} else if final := filepath.Join(src, "final", "model.gguf"); fileExists(final) {
		if err := hf.ExportFile(final, *out, hf.Options{DType: *dtype}); err != nil {
			return err
		}
	} else if err := exportCheckpoint(src, *out, *dtype); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", *out)
	return nil
}

// exportCheckpoint loads a checkpoint's weights into the learner (its run's model and
// LoRA settings from config.toml) and writes them as a Hugging Face directory.
func exportCheckpoint(dir, out, dtype string) error {
	run, ckpt := dir, dir
	if fileExists(filepath.Join(dir, "state.json")) {
		run = filepath.Dir(filepath.Dir(dir)) // RUN/checkpoints/step-N
	} else {
		steps, err := os.ReadDir(filepath.Join(dir, "checkpoints"))
		if err != nil {
			return fmt.Errorf("export %s: neither a run directory (final/model.gguf or checkpoints/) nor a checkpoint (state.json)", dir)
		}
		var ns []int
		for _, s := range steps {
			if n, err := strconv.Atoi(strings.TrimPrefix(s.Name(), "step-")); err == nil && fileExists(filepath.Join(dir, "checkpoints", s.Name(), "state.json")) {
				ns = append(ns, n)
			}
		}
		if len(ns) == 0 {
			return fmt.Errorf("export %s: the run has no final model and no complete checkpoint", dir)
		}
		sort.Ints(ns)
		ckpt = filepath.Join(dir, "checkpoints", fmt.Sprintf("step-%d", ns[len(ns)-1]))
	}
	cfg, err := config.Load(filepath.Join(run, "config.toml"))
	if err != nil {
		return fmt.Errorf("export %s: %w", ckpt, err)
	}
	m, err := learner.Load(resolveModel(cfg.Model), learner.Options{Threads: cfg.Learner.Threads})
	if err != nil {
		return fmt.Errorf("export %s: model %s: %w", ckpt, cfg.Model, err)
	}
	defer m.Close()
	if cfg.LoRA.Enabled {
		if err := m.EnableLoRA(learner.LoRAConfig{Rank: cfg.LoRA.Rank, Alpha: cfg.LoRA.Alpha, Targets: cfg.LoRA.Targets, Seed: cfg.Seed}); err != nil {
			return fmt.Errorf("export %s: %w", ckpt, err)
		}
	}
	tr, err := learner.NewTrainer(m, learner.TrainConfig{})
	if err != nil {
		return fmt.Errorf("export %s: %w", ckpt, err)
	}
	defer tr.Close()
	if err := tr.LoadWeights(filepath.Join(ckpt, "learner")); err != nil {
		return fmt.Errorf("export %s: %w", ckpt, err)
	}
	return m.ExportHF(out, dtype, false)
}

// runConvert converts a Hugging Face model directory to GGUF.
func runConvert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("convert", stderr)
	precision := fs.String("precision", "", "weight type of the GGUF: f32, f16, bf16, q8_0, q4_0, ... (default: the checkpoint's)")
	raw := fs.Bool("raw", false, "accept a tokenizer without a chat template (a base model fed raw prompts)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usageError{"usage: rlif convert HF_DIR OUT.gguf [--precision f16|bf16|q8_0|...] [--raw]"}
	}
	if fileExists(pos[1]) {
		return fmt.Errorf("convert: %s exists; name a new file or remove it", pos[1])
	}
	if err := hf.Convert(pos[0], pos[1], hf.ConvertOptions{Precision: *precision, AllowNoTemplate: *raw}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", pos[1])
	return nil
}

// parseInterspersed parses flags that may come before or after the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
