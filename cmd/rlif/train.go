package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/train"
	"github.com/rlif/rlif/rewards"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr)
	cfgPath := fs.String("config", "", "run configuration (TOML); without it, the embedded default run")
	rewardList := fs.String("rewards", "", "comma-separated built-in rewards, each with weight 1 (replaces the config's [[rewards]])")
	model := fs.String("model", "", "GGUF model to train (overrides the config)")
	dataPath := fs.String("data", "", "JSONL or parquet prompt set (overrides the config)")
	steps := fs.Int("steps", 0, "training steps (overrides the config; 0: one pass over the data)")
	out := fs.String("out", "", "run directory (overrides the config)")
	resume := fs.String("resume", "", "continue the run in this directory from its newest checkpoint")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	// Without a config, a run to resume or a data set, the embedded demo runs; flags
	// alone (say --data) start from the general defaults.
	cfg := config.Default()
	if *cfgPath == "" && *resume == "" && *dataPath == "" {
		cfg = config.Demo()
	}
	configDir := ""
	switch {
	case *cfgPath != "":
		c, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		cfg, configDir = c, filepath.Dir(*cfgPath)
		for _, n := range c.Notices {
			fmt.Fprintln(stderr, n)
		}
	case *resume != "":
		// A resumed run repeats itself: its own resolved configuration.
		p := filepath.Join(*resume, "config.toml")
		c, err := config.Load(p)
		if err != nil {
			return fmt.Errorf("resume %s: %w", *resume, err)
		}
		cfg, configDir = c, *resume
	}
	if *rewardList != "" {
		cfg.Rewards = nil
		for _, name := range strings.Split(*rewardList, ",") {
			if name = strings.TrimSpace(name); name != "" {
				cfg.Rewards = append(cfg.Rewards, rewards.Spec{Name: name})
			}
		}
	}
	if *model != "" {
		cfg.Model = *model
	}
	if *dataPath != "" {
		cfg.Data.Path = *dataPath
	}
	if given["steps"] {
		cfg.Steps = *steps
	}
	if *out != "" {
		cfg.Out = *out
	}
	if *resume != "" {
		cfg.Out = *resume
	}
	cfg.Model = resolveModel(cfg.Model)

	// The first Ctrl-C finishes the current phase and writes a checkpoint; a second one
	// stops at once (checkpoints are renamed into place, so none is left half-written).
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintln(stderr, "\nstopping after the current phase with a checkpoint (Ctrl-C again to stop now)")
		close(stop)
		if _, ok := <-sigs; ok {
			fmt.Fprintln(stderr, "stopped")
			os.Exit(130)
		}
	}()
	// The process-wide interrupt handler of main must not cancel the run on the first
	// Ctrl-C: the run owns its signals from here.
	ctx = context.WithoutCancel(ctx)

	res, err := train.Run(ctx, cfg, train.Options{ConfigDir: configDir, Resume: *resume != "", Stop: stop, Progress: stdout})
	if err != nil {
		return err
	}
	if !res.Stopped {
		fmt.Fprintf(stdout, "done: %d steps · metrics %s · final model %s\n", res.Steps, filepath.Join(cfg.Out, "metrics.jsonl"), res.Final)
	}
	return nil
}
