// Package report turns run directories into one self-contained HTML page that a person
// opens in a browser: a chart per step of every metric in metrics.jsonl (several runs
// overlaid), the evaluations found in the run, and the sampled completions with their
// rewards and advantages. Charts are inline SVG; the page fetches nothing.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/rlif/rlif/core/eval"
)

// Files of a run directory that the report reads (written by core/train).
const (
	MetricsFile     = "metrics.jsonl"
	CompletionsFile = "completions.jsonl"
	ConfigFile      = "config.toml"
	// File is the report's name inside a run directory.
	File = "report.html"
)

// Run is what the report shows of one run directory.
type Run struct {
	Name string
	Dir  string
	// Steps are the metrics lines, one per step in step order (a step written twice, as
	// after a resume, keeps its last line). Only numeric values are kept.
	Steps []map[string]float64
	// Completions are the lines of completions.jsonl.
	Completions []Completion
	Config      string
	Evals       []Eval
	// Notes are one-line remarks about what was left out (a line cut short), for the
	// caller to show.
	Notes []string
}

// Completion is one line of completions.jsonl, as core/train writes it.
type Completion struct {
	Step   int    `json:"step"`
	Group  int    `json:"group"`
	Prompt string `json:"prompt"`
	// Fields are the data row's other fields (a plugin's inputs), when it has any.
	Fields       map[string]string   `json:"fields,omitempty"`
	Completion   string              `json:"completion"`
	Tokens       int                 `json:"tokens"`
	FinishReason string              `json:"finish_reason"`
	Scores       map[string]*float64 `json:"scores"`
	Advantage    float64             `json:"advantage"`
	SelfCert     float64             `json:"self_certainty"`
}

// Eval is an evaluation directory found inside a run directory.
type Eval struct {
	Dir     string
	Summary eval.Summary
	// Histogram is the calibration PNG, when the directory holds one.
	Histogram []byte
}

// Load reads a run directory. It needs metrics.jsonl; the completions, the
// configuration and evaluations (directories with a summary.json, up to two levels
// down) are shown when present.
func Load(dir string) (*Run, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("run directory %s is not a directory: give the --out directory of rlif train", dir)
	}
	name := filepath.Base(filepath.Clean(dir))
	if abs, err := filepath.Abs(dir); err == nil {
		name = filepath.Base(abs)
	}
	r := &Run{Name: name, Dir: dir}
	if r.Steps, err = readMetrics(filepath.Join(dir, MetricsFile), r.note); err != nil {
		return nil, err
	}
	if len(r.Steps) == 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s holds no step yet (the run has not finished its first step): the report has no curves", filepath.Join(dir, MetricsFile)))
	}
	if r.Completions, err = readCompletions(filepath.Join(dir, CompletionsFile), r.note); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(filepath.Join(dir, ConfigFile)); err == nil {
		r.Config = string(b)
	}
	if r.Evals, err = findEvals(dir); err != nil {
		return nil, err
	}
	return r, nil
}

// note records that line n of the file at path was left out because it is cut short.
func (r *Run) note(path string, n int) {
	r.Notes = append(r.Notes, fmt.Sprintf("%s line %d is cut short (the run was stopped while writing it, or is writing it now): left out", path, n))
}

// eachLine calls f with every complete line of a JSON-lines file and its number. A last
// line without its newline is left out, and cut is called with its number: the run may be
// writing it right now, or was killed while it did.
func eachLine(path string, f func(line []byte, n int) error, cut func(path string, n int)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for n := 1; len(b) > 0; n++ {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(bytes.TrimSpace(b)) > 0 {
				cut(path, n)
			}
			return nil
		}
		line := bytes.TrimSpace(b[:i])
		b = b[i+1:]
		if len(line) == 0 {
			continue
		}
		if err := f(line, n); err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
	}
	return nil
}

// ReadMetrics reads a metrics.jsonl as Load does: one map per step, in step order, the
// last line of a step written twice kept; a last line cut short is left out.
func ReadMetrics(path string) ([]map[string]float64, error) {
	return readMetrics(path, func(string, int) {})
}

func readMetrics(path string, cut func(path string, n int)) ([]map[string]float64, error) {
	byStep := map[float64]map[string]float64{}
	err := eachLine(path, func(line []byte, _ int) error {
		var raw map[string]any
		if err := json.Unmarshal(line, &raw); err != nil {
			return fmt.Errorf("not a JSON object: %w", err)
		}
		m := map[string]float64{}
		for k, v := range raw {
			if x, ok := v.(float64); ok {
				m[k] = x
			}
		}
		step, ok := m["step"]
		if !ok {
			return errors.New(`no numeric "step"`)
		}
		byStep[step] = m
		return nil
	}, cut)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s not found: give a run directory written by rlif train", path)
	}
	if err != nil {
		return nil, err
	}
	out := make([]map[string]float64, 0, len(byStep))
	for _, m := range byStep {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i]["step"] < out[j]["step"] })
	return out, nil
}

func readCompletions(path string, cut func(path string, n int)) ([]Completion, error) {
	var out []Completion
	err := eachLine(path, func(line []byte, _ int) error {
		var c Completion
		if err := json.Unmarshal(line, &c); err != nil {
			return fmt.Errorf("not a completion record: %w", err)
		}
		out = append(out, c)
		return nil
	}, cut)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return out, err
}

// findEvals returns the evaluation directories in dir and its subdirectories (two
// levels: RUN/eval and RUN/eval/MODEL_DATA), in path order.
func findEvals(dir string) ([]Eval, error) {
	var dirs []string
	var walk func(d string, depth int)
	walk = func(d string, depth int) {
		entries, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range entries {
			// checkpoints/ holds model state, never evaluations; skip its large tree.
			if !e.IsDir() || e.Name() == "checkpoints" || e.Name() == "tb" {
				continue
			}
			sub := filepath.Join(d, e.Name())
			if eval.IsResultDir(sub) {
				dirs = append(dirs, sub)
			} else if depth > 1 {
				walk(sub, depth-1)
			}
		}
	}
	walk(dir, 2)
	var out []Eval
	for _, d := range dirs {
		s, err := eval.ReadSummary(d)
		if err != nil {
			return nil, err
		}
		ev := Eval{Dir: d, Summary: s}
		if b, err := os.ReadFile(filepath.Join(d, eval.HistogramFile)); err == nil {
			ev.Histogram = b
		}
		out = append(out, ev)
	}
	return out, nil
}
