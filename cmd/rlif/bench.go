package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/train"
	"github.com/rlif/rlif/internal/meminfo"
)

// benchConfig is the work `rlif bench` times without --config: the Intuitor example's step.
const benchConfig = "examples/intuitor.toml"

// benchSchema marks the machine-readable row a build prints with `rlif bench --row`; a
// build that answers with another schema is timed through its metrics.jsonl instead.
const benchSchema = "rlif-bench-row/1"

// phaseSeconds are the seconds of a step's phases, averaged over the timed steps, and
// their sum.
type phaseSeconds struct {
	Sample float64 `json:"sample"`
	Score  float64 `json:"score"`
	Learn  float64 `json:"learn"`
	Sync   float64 `json:"sync"`
	Step   float64 `json:"step"`
}

// benchRow is one build's timed steps: the JSON of `rlif bench --row` and a row of the table.
type benchRow struct {
	Schema string `json:"schema,omitempty"`
	Binary string `json:"binary"`
	// Via says how the row was measured: "bench" (the build's own `bench --row`) or
	// "train" (a build without it: `train --steps N` and its metrics.jsonl).
	Via              string       `json:"via"`
	Steps            int          `json:"steps"`
	CompletionTokens float64      `json:"completion_tokens"` // per step
	Seconds          phaseSeconds `json:"seconds"`           // per step
	// TokensPerSecond is completion tokens over each phase's time (the step's: over the
	// sum of the phases), so that phases and builds compare on one unit.
	TokensPerSecond phaseSeconds `json:"completion_tokens_per_second"`
	// PeakRSSBytes is the trainer process's resident-set high-water mark (VmHWM): models,
	// learner state and the step's activations; the reward plugin processes are not in it.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// PeakGiB is the largest peak of each phase over the steps (memory/peak_*_gib of
	// metrics.jsonl), where the build logs them.
	PeakGiB     *phasePeaks `json:"peak_gib,omitempty"`
	WallSeconds float64     `json:"wall_seconds"` // the whole process: loading, steps, final export
	// Error is why a build's step could not be timed; the other builds' rows still stand.
	Error string `json:"error,omitempty"`
}

// phasePeaks are a step's peak memory per phase, in GiB.
type phasePeaks struct {
	Sample float64 `json:"sample"`
	Learn  float64 `json:"learn"`
	Sync   float64 `json:"sync"`
}

// benchReport is what `rlif bench --json` prints.
type benchReport struct {
	Config string     `json:"config"`
	Steps  int        `json:"steps"`
	Rows   []benchRow `json:"rows"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	cfgPath := fs.String("config", "", "run configuration (TOML) whose training step is timed (default "+benchConfig+")")
	steps := fs.Int("steps", 1, "training steps to time (their times are averaged)")
	asJSON := fs.Bool("json", false, "print the table as JSON")
	var compare stringList
	fs.Var(&compare, "compare", "another rlif binary whose step goes on the same table (repeatable)")
	row := fs.Bool("row", false, "machine-readable mode: run the steps in this process and print one JSON row (what --compare runs)")
	out := fs.String("out", "", "with --row: the run directory (default: a temporary one, removed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *steps < 1 {
		return usageError{fmt.Sprintf("--steps %d: want at least 1", *steps)}
	}
	path, err := benchConfigPath(*cfgPath)
	if err != nil {
		return err
	}
	if *row {
		r, err := benchInProcess(ctx, path, *steps, *out, stderr)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(r)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: this build's executable: %w", err)
	}
	bins := append([]string{self}, compare...)
	for _, b := range compare {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("--compare %s: %w", b, err)
		}
	}
	rep := benchReport{Config: path, Steps: *steps}
	failed := 0
	for i, b := range bins {
		fmt.Fprintf(stderr, "bench: timing %d step(s) of %s with %s\n", *steps, path, b)
		r, err := benchBinary(ctx, b, path, *steps, stderr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			// One build that cannot run this config (an older one without a key, say) must
			// not throw away the minutes the other rows took: its row says why, and the
			// exit status says that a row is missing.
			fmt.Fprintf(stderr, "bench: %v\n", err)
			r = benchRow{Binary: b, Error: err.Error()}
			failed++
		}
		if i == 0 {
			r.Binary = b + " (this build)"
		}
		rep.Rows = append(rep.Rows, r)
	}
	if err := writeBenchReport(stdout, rep, *asJSON); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("bench: %d of %d builds could not be timed (their rows say why)", failed, len(bins))
	}
	return nil
}

// writeBenchReport prints the report as the table or, with asJSON, as indented JSON.
func writeBenchReport(w io.Writer, rep benchReport, asJSON bool) error {
	if !asJSON {
		return writeBenchTable(w, rep)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// benchConfigPath returns the configuration to time: the given one, or the Intuitor
// example from the working directory or from beside the binary's directory.
func benchConfigPath(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("config %s: %w", given, err)
		}
		return filepath.Abs(given)
	}
	cands := []string{benchConfig}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(exe), "..", benchConfig))
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", usageError{fmt.Sprintf("no %s here or beside the binary; name the run to time with --config", benchConfig)}
}

// benchInProcess runs the steps of the configuration at path in this process and
// measures them.
func benchInProcess(ctx context.Context, path string, steps int, out string, progress io.Writer) (benchRow, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return benchRow{}, err
	}
	if out == "" {
		if out, err = os.MkdirTemp("", "rlif-bench-"); err != nil {
			return benchRow{}, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(out)
	}
	cfg.Steps, cfg.Out, cfg.Model = steps, out, resolveModel(cfg.Model)
	// The training step is timed: a config's evaluation during training ([eval]) would
	// add its own time and the step-0 line, so it is off.
	cfg.Eval.Every, cfg.Output.KeepBest = 0, ""
	start := time.Now()
	if _, err := train.Run(ctx, cfg, train.Options{Progress: progress}); err != nil {
		return benchRow{}, err
	}
	r, err := benchMetrics(filepath.Join(out, "metrics.jsonl"), steps)
	if err != nil {
		return benchRow{}, err
	}
	r.Schema, r.Via, r.WallSeconds = benchSchema, "bench", time.Since(start).Seconds()
	if r.Binary, err = os.Executable(); err != nil {
		r.Binary = "rlif"
	}
	if r.PeakRSSBytes, err = peakRSS(r.phasesPeak()); err != nil {
		return benchRow{}, err
	}
	return r, nil
}

// benchBinary times the steps with another rlif process: its `bench --row`, or, for a
// build older than `rlif bench`, its `train --steps N` and the metrics.jsonl it writes.
func benchBinary(ctx context.Context, bin, cfgPath string, steps int, progress io.Writer) (benchRow, error) {
	var out, errs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "bench", "--row", "--config", cfgPath, "--steps", strconv.Itoa(steps))
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(progress, &errs)
	err := cmd.Run()
	if err == nil {
		var r benchRow
		if jerr := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &r); jerr == nil && r.Schema == benchSchema {
			r.Binary = bin
			return r, nil
		}
		return benchRow{}, fmt.Errorf("%s bench --row printed %.200q, not a %s row", bin, out.String(), benchSchema)
	}
	if !strings.Contains(errs.String(), `unknown command "bench"`) {
		return benchRow{}, fmt.Errorf("%s bench: %v: %s", bin, err, lastLine(errs.String()))
	}
	fmt.Fprintf(progress, "bench: %s has no bench command; timing its `train --steps %d` from metrics.jsonl\n", bin, steps)
	dir, err := os.MkdirTemp("", "rlif-bench-")
	if err != nil {
		return benchRow{}, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	errs.Reset()
	cmd = exec.CommandContext(ctx, bin, "train", "--config", cfgPath, "--steps", strconv.Itoa(steps), "--out", dir)
	cmd.Stdout, cmd.Stderr = progress, io.MultiWriter(progress, &errs)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return benchRow{}, fmt.Errorf("%s train: %v: %s", bin, err, lastLine(errs.String()))
	}
	r, err := benchMetrics(filepath.Join(dir, "metrics.jsonl"), steps)
	if err != nil {
		return benchRow{}, fmt.Errorf("%s train: %w", bin, err)
	}
	r.Binary, r.Via, r.WallSeconds = bin, "train", time.Since(start).Seconds()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSBytes = max(ru.Maxrss*1024, r.phasesPeak()) // Linux reports kilobytes
	}
	return r, nil
}

// benchMetrics reads the timed steps from a run's metrics.jsonl: the time/sample,
// time/score, time/learn, time/sync and tokens keys, which every rlif build writes.
func benchMetrics(path string, steps int) (benchRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return benchRow{}, fmt.Errorf("metrics: %w", err)
	}
	defer f.Close()
	var r benchRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		var m map[string]float64
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return benchRow{}, fmt.Errorf("metrics %s line %d: %w", path, r.Steps+1, err)
		}
		for _, k := range []string{"time/sample", "time/score", "time/learn", "time/sync", "tokens"} {
			if _, ok := m[k]; !ok {
				return benchRow{}, fmt.Errorf("metrics %s line %d has no %q", path, r.Steps+1, k)
			}
		}
		r.Steps++
		r.CompletionTokens += m["tokens"]
		r.Seconds.Sample += m["time/sample"]
		r.Seconds.Score += m["time/score"]
		r.Seconds.Learn += m["time/learn"]
		r.Seconds.Sync += m["time/sync"]
		if _, ok := m[train.PeakLearnKey]; ok {
			if r.PeakGiB == nil {
				r.PeakGiB = &phasePeaks{}
			}
			p := r.PeakGiB
			p.Sample, p.Learn, p.Sync = max(p.Sample, m[train.PeakSampleKey]), max(p.Learn, m[train.PeakLearnKey]), max(p.Sync, m[train.PeakSyncKey])
		}
	}
	if err := sc.Err(); err != nil {
		return benchRow{}, fmt.Errorf("metrics %s: %w", path, err)
	}
	if r.Steps != steps {
		return benchRow{}, fmt.Errorf("metrics %s: %d steps, want %d", path, r.Steps, steps)
	}
	s := &r.Seconds
	s.Step = s.Sample + s.Score + s.Learn + s.Sync
	rate := func(t float64) float64 {
		if t <= 0 {
			return 0
		}
		return r.CompletionTokens / t
	}
	r.TokensPerSecond = phaseSeconds{Sample: rate(s.Sample), Score: rate(s.Score), Learn: rate(s.Learn), Sync: rate(s.Sync), Step: rate(s.Step)}
	n := float64(r.Steps)
	r.CompletionTokens /= n
	*s = phaseSeconds{Sample: s.Sample / n, Score: s.Score / n, Learn: s.Learn / n, Sync: s.Sync / n, Step: s.Step / n}
	return r, nil
}

// phasesPeak is the largest of the phases' peaks in bytes, 0 without them.
func (r benchRow) phasesPeak() int64 {
	if p := r.PeakGiB; p != nil {
		return int64(max(p.Sample, p.Learn, p.Sync) * (1 << 30))
	}
	return 0
}

// peakRSS returns this process's resident-set high-water mark over the whole run: the
// training steps reset VmHWM at each phase (their memory/peak_* metrics), so the run's
// peak is the largest of those and what VmHWM holds now.
func peakRSS(phases int64) (int64, error) {
	n, err := meminfo.PeakRSS()
	if err != nil {
		// Not Linux: getrusage's maxrss (bytes on macOS, where /proc is absent).
		var ru syscall.Rusage
		if rerr := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); rerr != nil {
			return 0, fmt.Errorf("peak memory: %w", errors.Join(err, rerr))
		}
		n = ru.Maxrss
	}
	return max(n, phases), nil
}

func writeBenchTable(w io.Writer, rep benchReport) error {
	fmt.Fprintf(w, "%s, %d step(s); seconds and completion tokens per step, tok/s = completion tokens / phase time\n\n", rep.Config, rep.Steps)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "build\tvia\ttokens\tsample s\tscore s\tlearn s\tsync s\tstep s\tsample tok/s\tscore tok/s\tlearn tok/s\tsync tok/s\tstep tok/s\tpeak RSS MiB\tpeak GiB sample/learn/sync\t")
	for _, r := range rep.Rows {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\n", r.Binary, lastLine(r.Error))
			continue
		}
		s, t := r.Seconds, r.TokensPerSecond
		phases := "-"
		if p := r.PeakGiB; p != nil {
			phases = fmt.Sprintf("%.2f / %.2f / %.2f", p.Sample, p.Learn, p.Sync)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t\n",
			r.Binary, r.Via, r.CompletionTokens, s.Sample, s.Score, s.Learn, s.Sync, s.Step,
			t.Sample, t.Score, t.Learn, t.Sync, t.Step, float64(r.PeakRSSBytes)/(1<<20), phases)
	}
	return tw.Flush()
}

// lastLine is the last non-empty line of a process's stderr, for an error message.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
