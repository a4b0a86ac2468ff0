package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/BurntSushi/toml"

	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/core/report"
	"github.com/rlif/rlif/core/train"
)

// runHealth reads runs' metrics with the label-free health rule: per step its ratios and
// verdict, and which step keep_best = "label_free" would keep, beside the held-out
// metric where the run evaluated (to measure the rule on runs that have labels).
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", stderr)
	summary := fs.Bool("summary", false, "one line per run: the rule's pick against the best, last and base by the held-out metric")
	metric := fs.String("metric", "eval/accuracy", "the held-out metric the picks are shown with (higher is better)")
	echoRise := fs.Float64("echo-rise", -1, "the echo guard's threshold instead of the run's (0: the entropy rule alone)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rlif health RUN_DIR [RUN_DIR...] [--summary] [--metric eval/accuracy] [--echo-rise X]\n\nreads runs' metrics.jsonl with the label-free health rule ([output.health] of the run's config.toml, or the default)\n\n")
		fs.PrintDefaults()
	}
	dirs, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(dirs) == 0 {
		return usageError{"give at least one run directory: rlif health RUN_DIR [RUN_DIR...]"}
	}
	if *echoRise > 1 || (*echoRise < 0 && *echoRise != -1) {
		return usageError{fmt.Sprintf("--echo-rise %g: want a share in [0, 1]", *echoRise)}
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	defer tw.Flush()
	for _, dir := range dirs {
		h, err := readRunHealth(dir, *metric, *echoRise)
		if err != nil {
			return err
		}
		if *summary {
			fmt.Fprintln(tw, h.summary())
			continue
		}
		h.table(tw)
		fmt.Fprintln(tw, h.summary())
	}
	return nil
}

// runHealthRead is one run read by the rule.
type runHealthRead struct {
	dir, metric string
	rule        health.Rule
	verdicts    []health.Verdict
	held        map[int]float64 // the held-out metric by step, where evaluated
	// echo is answer/echo_ratio by step, in runs that log it: the share of sampled answers
	// that are a number of their prompt (shown beside the rule, which reads the held-out
	// share, heldEcho, where the run evaluated).
	echo, heldEcho map[int]float64
	last           int
}

// readRunHealth replays the rule on a run's metrics; echoRise, when not -1, replaces the
// echo guard's threshold of the run's rule.
func readRunHealth(dir, metric string, echoRise float64) (*runHealthRead, error) {
	lines, err := report.ReadMetrics(filepath.Join(dir, report.MetricsFile))
	if err != nil {
		return nil, err
	}
	if err := train.BackfillEcho(dir, lines); err != nil {
		return nil, err
	}
	rule, err := runRule(dir)
	if err != nil {
		return nil, err
	}
	if echoRise != -1 {
		rule.EchoRise = echoRise
	}
	h := &runHealthRead{dir: dir, metric: metric, rule: rule, held: map[int]float64{}, echo: map[int]float64{}, heldEcho: map[int]float64{}}
	h.verdicts = health.Judge(rule, train.HealthPoints(lines))
	for _, l := range lines {
		step := int(l["step"])
		if v, ok := l[metric]; ok {
			h.held[step] = v
		}
		if v, ok := l[train.EchoKey]; ok {
			h.echo[step] = v
		}
		if v, ok := l[train.EvalEchoKey]; ok {
			h.heldEcho[step] = v
		}
		h.last = max(h.last, step)
	}
	return h, nil
}

// runRule is the rule of a run's config.toml ([output.health]), the default where the
// run has none (runs from before the rule).
func runRule(dir string) (health.Rule, error) {
	var c struct {
		Output struct {
			Health health.Rule `toml:"health"`
		} `toml:"output"`
	}
	c.Output.Health = health.Default
	path := filepath.Join(dir, report.ConfigFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return health.Default, nil
	case err != nil:
		return health.Rule{}, err
	}
	if _, err := toml.Decode(string(b), &c); err != nil {
		return health.Rule{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Output.Health.Check(); err != nil {
		return health.Rule{}, fmt.Errorf("%s: output.%w", path, err)
	}
	return c.Output.Health, nil
}

func (h *runHealthRead) table(w io.Writer) {
	fmt.Fprintf(w, "%s\n", h.dir)
	echo := ""
	if len(h.echo) > 0 {
		echo = "echo\t"
	}
	fmt.Fprintf(w, "step\tlength ratio\tentropy ratio\theld-out echo\tverdict\t%s%s\t\n", echo, h.metric)
	for _, v := range h.verdicts {
		verdict := "-"
		switch {
		case v.Collapsed:
			verdict = "collapsed"
		case v.Healthy:
			verdict = "healthy"
		}
		if v.ByEcho {
			verdict += " (echo)"
		}
		held, heldEcho := "", ""
		if x, ok := h.held[v.Step]; ok {
			held = fmt.Sprintf("%.3f", x)
		}
		if x, ok := h.heldEcho[v.Step]; ok {
			heldEcho = fmt.Sprintf("%.2f", x)
		}
		if echo != "" {
			held = fmt.Sprintf("%.2f\t%s", h.echo[v.Step], held)
		}
		fmt.Fprintf(w, "%d\t%.2f\t%.2f\t%s\t%s\t%s\t\n", v.Step, v.LengthRatio, v.EntropyRatio, heldEcho, verdict, held)
	}
}

// summary is the rule's pick among the evaluated steps (every step when none was),
// against the best by the held-out metric, the last step and the base model.
func (h *runHealthRead) summary() string {
	var cands []int
	for _, v := range h.verdicts {
		if _, ok := h.held[v.Step]; ok || len(h.held) == 0 {
			cands = append(cands, v.Step)
		}
	}
	pick := health.Pick(h.verdicts, append([]int{0}, cands...))
	collapse := "none"
	for _, v := range h.verdicts {
		if v.Collapsed {
			collapse = fmt.Sprint(v.Step)
			break
		}
	}
	by := "entropy"
	for _, v := range h.verdicts {
		if v.ByEcho {
			by = "echo guard"
			break
		}
	}
	s := fmt.Sprintf("%s: label-free pick (%s) step %d%s · first collapse %s", h.dir, by, pick, h.at(pick), collapse)
	if len(h.held) == 0 {
		return s + fmt.Sprintf(" · no %s in the run to compare", h.metric)
	}
	best := -1
	for step, v := range h.held {
		if best < 0 || v > h.held[best] || (v == h.held[best] && step < best) {
			best = step
		}
	}
	return s + fmt.Sprintf(" · best step %d%s · last step %d%s · base%s", best, h.at(best), h.last, h.at(h.last), h.at(0))
}

func (h *runHealthRead) at(step int) string {
	if v, ok := h.held[step]; ok {
		return fmt.Sprintf(" (%.3f)", v)
	}
	return ""
}
