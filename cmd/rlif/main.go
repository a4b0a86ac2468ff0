// Command rlif fine-tunes language models with reinforcement learning from the model's
// own signals (Intuitor, GRPO, and mixes of intrinsic and external rewards).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// command is one subcommand of rlif. run parses its own flags from args.
type command struct {
	name    string
	summary string
	hidden  bool
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands, in the order `rlif help` shows them.
func commands() []command {
	return []command{
		{name: "train", summary: "train with GRPO / Intuitor (the embedded default without flags)", run: runTrain},
		{name: "sample", summary: "sample completions with per-token logit statistics", run: runSample},
		{name: "rewards", summary: "list the built-in rewards and their arguments", run: runRewards},
		{name: "score", summary: "score completions with a run's reward mix and print the advantages", run: runScore},
		{name: "eval", summary: "evaluate a model on a dataset: accuracy, pass@k, maj@k and self-certainty calibration", run: runEval},
		{name: "bench", summary: "time a training step per phase (tokens/s, peak memory), against other rlif builds with --compare", run: runBench},
		{name: "export", summary: "write a run's model (or a checkpoint, or a GGUF) as a Hugging Face directory", run: runExport},
		{name: "convert", summary: "convert a Hugging Face model directory to GGUF", run: runConvert},
		{name: "report", summary: "write an HTML report of runs: curves per step, evaluations, completions", run: runReport},
		{name: "probe", summary: "before a label-free run: does the model's self-certainty track its own consensus on the data?", run: runProbe},
		{name: "health", summary: "read runs with the label-free health rule: sharpening or collapsed, and the step it keeps", run: runHealth},
		{name: "check", summary: "check that the learner reproduces the sampler on a model (parity, export, reload)", run: runCheck},
		{name: "plugin", summary: "serve a built-in reward as a plugin (run by rlif itself)", hidden: true, run: runPlugin},
	}
}

// usageError marks a mistake in the command line: it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// exitStatus ends a command with its code and no message (the command has said what
// happened).
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// Libraries underneath (ollama's ggml loader, go-plugin) log through slog; a user
	// wants rlif's own output, not their start-up chatter.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		var es exitStatus
		if errors.As(err, &es) {
			return es.code
		}
		fmt.Fprintf(stderr, "rlif %s: %s\n", c.name, oneLine(err.Error()))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "rlif: unknown command %q; run 'rlif help' for the list\n", args[0])
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: rlif <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nrun 'rlif <command> -h' for a command's flags")
}

// oneLine keeps a user-facing error on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// newFlagSet returns a flag set that reports errors as values (not exits) and writes its
// usage to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("rlif "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag errors (other than -h) into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
