package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/core/train"
)

// runProbe is the trainability check before a label-free run (train.Probe).
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	cfgPath := fs.String("config", "", "the run's TOML config (required): its model, data, sampling settings and seed")
	prompts := fs.Int("prompts", 64, "how many of the run's first prompts to sample, one group each")
	quiet := fs.Bool("quiet", false, "no progress line")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rlif probe --config RUN.toml [--prompts 64]\n\nbefore a label-free run: does the base model's self-certainty track its own consensus on the run's data?\n\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *cfgPath == "" {
		return usageError{"usage: rlif probe --config RUN.toml [--prompts 64]"}
	}
	if *prompts < 1 {
		return usageError{fmt.Sprintf("--prompts %d: want at least 1", *prompts)}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	opt := train.ProbeOptions{Prompts: *prompts}
	if !*quiet {
		opt.Progress = stderr
	}
	s, err := train.Probe(ctx, cfg, opt)
	if err != nil {
		return err
	}
	if err := eval.Report(stdout, s); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "reading: %s\n", train.ProbeReading(s))
	return nil
}
