package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/train"
	"github.com/rlif/rlif/rewards"
)

func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("train", stderr)
	cfgPath := fs.String("config", "", "run configuration (TOML); without it, the embedded default run")
	rewardList := fs.String("rewards", "", "comma-separated built-in rewards, each with weight 1 (replaces the config's [[rewards]])")
	model := fs.String("model", "", "GGUF model, or Hugging Face model directory, to train (overrides the config)")
	dataPath := fs.String("data", "", "JSONL or parquet prompt set, or a named set such as math-train (overrides the config)")
	steps := fs.Int("steps", 0, "training steps (overrides the config; 0: one pass over the data)")
	seed := seedFlag(fs, "random seed, an integer `N` >= 0, of the data order, sampling and the learner (overrides the config's seed)")
	out := fs.String("out", "", "run directory (overrides the config)")
	resume := fs.String("resume", "", "continue the run in this directory from its newest checkpoint")
	overwrite := fs.Bool("overwrite", false, "clear the run directory if it holds another run (without it, a non-empty --out is refused)")
	raw := fs.Bool("raw", false, "feed BOS + prompt as is, without the chat template (base models; data.raw in a config)")
	df := addDistFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *df.nproc < 1 {
		return usageError{fmt.Sprintf("--nproc %d: want at least 1", *df.nproc)}
	}
	// A launcher of ranks (--nproc) builds and checks the run as its ranks will, so that a
	// bad run is one error before any rank starts; it is no rank itself.
	launch := *df.nproc > 1
	var dist *train.Distributed
	if launch {
		if err := checkLaunchEnv(*df.nproc); err != nil {
			return err
		}
	} else {
		var err error
		if dist, err = distFromEnv(os.Getenv, df); err != nil {
			return err
		}
	}
	// The job's notices come from one process: rank 0 (or a run alone).
	notices := stderr
	if launch || dist != nil && dist.Rank != 0 {
		notices = io.Discard
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *overwrite && *resume != "" {
		return usageError{"--overwrite and --resume exclude each other: --resume continues the run that --overwrite would delete"}
	}
	// Without a config, a run to resume or a data set, the embedded demo runs; flags
	// alone (say --data) start from the general defaults.
	cfg := config.Default()
	if *cfgPath == "" && *resume == "" && *dataPath == "" {
		cfg = config.Demo()
	}
	switch {
	case *cfgPath != "":
		c, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		cfg = c
		for _, n := range c.Notices {
			fmt.Fprintln(notices, n)
		}
	case *resume != "":
		// A resumed run repeats itself: its own resolved configuration.
		p := filepath.Join(*resume, "config.toml")
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("resume %s: not a run directory (no config.toml); give the --out of an earlier run", *resume)
		}
		c, err := config.Load(p)
		if err != nil {
			return fmt.Errorf("resume %s: %w", *resume, err)
		}
		cfg = c
	}
	if *rewardList != "" {
		cfg.Rewards = nil
		for _, name := range strings.Split(*rewardList, ",") {
			if name = strings.TrimSpace(name); name != "" {
				cfg.Rewards = append(cfg.Rewards, config.Reward{Spec: rewards.Spec{Name: name}})
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
	if given["seed"] {
		cfg.Seed = *seed
	}
	if given["raw"] {
		cfg.Data.Raw = *raw
	}
	if *out != "" {
		cfg.Out = *out
	}
	if *resume != "" {
		cfg.Out = *resume
	}
	cfg.Model = resolveModel(cfg.Model)
	if launch {
		if err := train.Check(cfg, train.Options{Dist: &train.Distributed{World: *df.nproc}}); err != nil {
			return err
		}
		return launchRanks(fs, *df.nproc, stdout, stderr)
	}

	// The first Ctrl-C finishes the current phase and writes a checkpoint; a second one
	// stops at once (checkpoints are renamed into place, so none is left half-written).
	stop := make(chan struct{})
	runDone := make(chan struct{})
	// The process-wide interrupt handler of main must not cancel the run on the first
	// Ctrl-C: the run owns its signals from here.
	ctx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// got is the signal that stopped the run, for its exit status; written before stop
	// is closed, read after the run saw it closed.
	var got os.Signal
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		got = sig
		fmt.Fprintln(stderr, "\nstopping after the current phase with a checkpoint (Ctrl-C again to stop now)")
		close(stop)
		if _, ok := <-sigs; ok {
			// Cancelling the run's context kills the reward plugins' processes and
			// removes their sockets (host.StartAll); give the run a moment to close.
			abort()
			select {
			case <-runDone:
			case <-time.After(3 * time.Second):
			}
			fmt.Fprintln(stderr, "stopped")
			os.Exit(130)
		}
	}()

	// One live progress line per job: rank 0's.
	var live io.Writer = stderr
	if dist != nil && dist.Rank != 0 {
		live = nil
	}
	res, err := train.Run(ctx, cfg, train.Options{Resume: *resume != "", Overwrite: *overwrite, Stop: stop, Progress: stdout, Live: live, Dist: dist})
	close(runDone)
	if ctx.Err() != nil {
		select {} // stopped now by the second Ctrl-C: its handler exits with status 130
	}
	if err != nil {
		return err
	}
	if res.Stopped {
		// A stopped run is not a finished one: the shell's status for the signal
		// (128 + its number: 130 for Ctrl-C), so that scripts can tell them apart.
		code := 130
		if s, ok := got.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		return exitStatus{code}
	}
	if dist != nil && dist.Rank != 0 {
		return nil // rank 0 reports the job
	}
	if res.Collapsed > 0 {
		keep := "no checkpoints/best (set output.keep_best = \"label_free\" to keep the last healthy step)"
		if res.Best >= 0 {
			keep = fmt.Sprintf("keep checkpoints/best (step %d): rlif export %s --hf DIR", res.Best, filepath.Join(cfg.Out, "checkpoints", "best"))
		}
		fmt.Fprintf(stdout, "stopped at step %d: the run collapsed by the label-free health rule (output.stop_on_collapse); no final model; %s\n", res.Collapsed, keep)
		return nil
	}
	fmt.Fprintf(stdout, "done: %d steps · metrics %s · final model %s\n", res.Steps, filepath.Join(cfg.Out, "metrics.jsonl"), res.Final)
	return nil
}
