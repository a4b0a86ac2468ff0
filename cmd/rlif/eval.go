package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/policy/sampling"
)

func runEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval", stderr)
	var models, datas stringList
	fs.Var(&models, "model", "GGUF model to evaluate, or the --out directory of an earlier evaluation (repeatable; default "+defaultModelPath()+")")
	fs.Var(&datas, "data", "JSONL or parquet data file with a prompt and a gold answer per row, or a named set: "+strings.Join(data.SetNames(), ", ")+" (repeatable)")
	limit := fs.Int("limit", 0, "evaluate only the first N rows; 0 evaluates all")
	promptField := fs.String("prompt-field", "", "field holding the prompt (default: the first of prompt, question, problem)")
	answerField := fs.String("answer-field", eval.DefaultAnswerField, "field holding the gold answer (GSM8K '#### N', MATH \\boxed{} or plain)")
	unlabeled := fs.Bool("unlabeled", false, "the data has no gold answers: report what needs none (answers extractable, echoing the prompt, length, self-certainty)")
	system := fs.String("system", eval.DefaultSystem, "system message of the chat template (training's default); empty for none")
	raw := fs.Bool("raw", false, "feed BOS + prompt as is, without the chat template (base models); --system is then unused")
	maxTokens := fs.Int("max-tokens", 512, "most tokens per completion")
	n := fs.Int("n", 1, "completions per item; > 1 reports pass@k and maj@k and needs --temperature")
	temperature := fs.Float64("temperature", 0, "sampling temperature; 0 decodes greedily (the paper's protocol)")
	topP := fs.Float64("top-p", 1, "nucleus sampling threshold; 1 disables")
	topK := fs.Int("top-k", 0, "top-k sampling; 0 disables")
	minP := fs.Float64("min-p", 0, "min-p sampling; 0 disables")
	seed := seedFlag(fs, "random seed, an integer `N` >= 0; the same seed and batch give the same completions")
	batch := fs.Int("batch", eval.DefaultBatch, "sequences decoded together")
	threads := fs.Int("threads", 0, "CPU threads; 0 uses all cores")
	gpuLayers := fs.Int("gpu-layers", 0, "layers to offload to a GPU backend (-1: all); see README, GPU")
	asJSON := fs.Bool("json", false, "print each evaluation's summary as one JSON line instead of the report")
	outDir := fs.String("out", "", "write items.jsonl, summary.json and calibration.png here (one subdirectory per model and data with several)")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *limit < 0:
		return usageError{fmt.Sprintf("--limit must be >= 0, got %d", *limit)}
	case *maxTokens < 1:
		return usageError{fmt.Sprintf("--max-tokens must be >= 1, got %d", *maxTokens)}
	case *n < 1:
		return usageError{fmt.Sprintf("--n must be >= 1, got %d", *n)}
	case *n > 1 && *temperature == 0:
		return usageError{"--n > 1 needs a --temperature > 0: greedy samples are all the same"}
	case *batch < 1:
		return usageError{fmt.Sprintf("--batch must be >= 1, got %d", *batch)}
	case *answerField == "":
		return usageError{"--answer-field is empty"}
	}
	settings := eval.Settings{
		System: *system, Raw: *raw, MaxTokens: *maxTokens, N: *n, Temperature: *temperature, TopP: *topP,
		TopK: *topK, MinP: *minP, Seed: *seed, Batch: *batch,
	}
	if *raw {
		settings.System = ""
	}
	if err := checkSamplingFlags(sampling.Params{MaxTokens: *maxTokens, Temperature: *temperature, TopP: *topP, TopK: *topK, MinP: *minP}, *threads); err != nil {
		return err
	}
	// The output is checked now: a bad --out found after the evaluation throws it away.
	if *outDir != "" {
		if err := checkOutDir("--out", *outDir); err != nil {
			return err
		}
	}
	if len(models) == 0 {
		models = stringList{defaultModelPath()}
	}

	// Earlier evaluations (directories) are read; model files are evaluated on every --data.
	var sums []eval.Summary
	var origins []string
	var records [][]eval.Record // per summary; nil where they could not be read
	add := func(s eval.Summary, origin string, recs []eval.Record) {
		sums = append(sums, s)
		origins = append(origins, origin)
		records = append(records, recs)
	}
	var files []string
	for _, m := range models {
		m = resolveModel(m)
		st, err := os.Stat(m)
		if err != nil {
			return fmt.Errorf("model %s: %w", m, err)
		}
		if !st.IsDir() {
			files = append(files, m)
			continue
		}
		prior, err := readResults(m)
		if err != nil {
			return err
		}
		for _, p := range prior {
			recs, err := eval.ReadRecords(p.dir)
			if err != nil {
				recs = nil // the summary alone still goes in the table
			}
			add(p.sum, p.dir, recs)
		}
	}
	if len(files) > 0 && len(datas) == 0 {
		return usageError{"--data is required to evaluate a model"}
	}

	if len(files) == 0 {
		datas = nil // only earlier evaluations to show: no data to read
	}
	items := make([][]eval.Item, len(datas))
	for i, d := range datas {
		d, err := data.Resolve(d)
		if err != nil {
			return err
		}
		datas[i] = d
		items[i], err = eval.LoadItems(d, eval.DataOptions{PromptField: *promptField, AnswerField: *answerField, Limit: *limit, Unlabeled: *unlabeled})
		if err != nil {
			return err
		}
	}
	cfg := eval.Config{Settings: settings, Threads: *threads, GPULayers: *gpuLayers}
	if !*quiet {
		cfg.Progress = stderr
	}
	several := len(files)*len(datas) > 1
	for _, m := range files {
		for i, d := range datas {
			cfg.Data = d
			res, err := eval.Evaluate(ctx, m, items[i], cfg)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", m, d, err)
			}
			res.Summary.Unlabeled = *unlabeled
			if *outDir != "" {
				dir := *outDir
				if several {
					dir = filepath.Join(dir, safeName(res.Summary.Label+"_"+res.Summary.DataName))
				}
				if err := eval.WriteDir(dir, res); err != nil {
					return err
				}
				if !*quiet {
					fmt.Fprintf(stderr, "eval: wrote %s\n", dir)
				}
			}
			if err := printSummary(stdout, res.Summary, *asJSON); err != nil {
				return err
			}
			add(res.Summary, m, res.Records)
		}
	}
	if len(files) == 0 {
		for _, s := range sums {
			if err := printSummary(stdout, s, *asJSON); err != nil {
				return err
			}
		}
	}
	if len(sums) > 1 && !*asJSON {
		disambiguate(sums, origins)
		fmt.Fprintln(stdout)
		if err := eval.Table(stdout, sums); err != nil {
			return err
		}
		return pairedTable(stdout, sums, records)
	}
	return nil
}

// pairedTable compares, per data set, every evaluation with the first one on that data,
// item by item (eval.Pair), when both have one completion per item.
func pairedTable(w io.Writer, sums []eval.Summary, records [][]eval.Record) error {
	first := map[string]int{}
	var rows []eval.Compared
	var skipped []string
	for i, s := range sums {
		if s.Unlabeled {
			continue // a paired test compares correctness
		}
		j, ok := first[s.DataName]
		if !ok {
			first[s.DataName] = i
			continue
		}
		if records[i] == nil || records[j] == nil {
			skipped = append(skipped, fmt.Sprintf("%s: no items.jsonl to pair", s.Label))
			continue
		}
		p, err := eval.Pair(records[j], records[i])
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("%s against %s: %v", s.Label, sums[j].Label, err))
			continue
		}
		rows = append(rows, eval.Compared{Label: s.Label, Reference: sums[j].Label, Data: s.DataName, Pairing: p})
	}
	if len(rows) > 0 {
		fmt.Fprintln(w)
		if err := eval.PairedTable(w, rows); err != nil {
			return err
		}
	}
	for _, s := range skipped {
		fmt.Fprintf(w, "no paired test for %s\n", s)
	}
	return nil
}

// disambiguate gives evaluations that share a label and data set distinct labels: the
// label prefixed by the nearest directory of its origin that tells them apart (the run
// of an in-training evaluation RUN/eval/step-N, the directory of a model file).
func disambiguate(sums []eval.Summary, origins []string) {
	// The trainer's evaluations are named step-N: from more than one run, every one of
	// them carries its run's name, so that a table of several runs reads by run.
	runs := map[string]bool{}
	for _, o := range origins {
		if isTrainerEval(o) {
			runs[originName(o)] = true
		}
	}
	if len(runs) > 1 {
		for i, o := range origins {
			if isTrainerEval(o) {
				sums[i].Label = originName(o) + " " + sums[i].Label
			}
		}
	}
	groups := map[[2]string][]int{}
	for i, s := range sums {
		k := [2]string{s.Label, s.DataName}
		groups[k] = append(groups[k], i)
	}
	for _, idx := range groups {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			sums[i].Label = originName(origins[i]) + " " + sums[i].Label
		}
		// Still equal (the same origin name twice): number them.
		seen := map[string]int{}
		for _, i := range idx {
			seen[sums[i].Label]++
			if n := seen[sums[i].Label]; n > 1 {
				sums[i].Label = fmt.Sprintf("%s #%d", sums[i].Label, n)
			}
		}
	}
}

// isTrainerEval reports whether an evaluation came from a training run: RUN/eval/step-N.
func isTrainerEval(origin string) bool {
	return filepath.Base(filepath.Dir(filepath.Clean(origin))) == "eval" && strings.HasPrefix(filepath.Base(origin), "step-")
}

// originName is the directory name that identifies an evaluation's origin: for RUN/eval/
// step-N (the trainer's evaluations) the run's name, for a model file its directory's,
// and for an evaluation directory of its own its parent's.
func originName(origin string) string {
	dir := filepath.Dir(filepath.Clean(origin))
	if filepath.Base(dir) == "eval" {
		dir = filepath.Dir(dir)
	}
	if filepath.Base(dir) == "final" || filepath.Base(dir) == "checkpoints" {
		dir = filepath.Dir(dir)
	}
	return filepath.Base(dir)
}

func printSummary(w io.Writer, s eval.Summary, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		return enc.Encode(s)
	}
	if err := eval.Report(w, s); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

type priorResult struct {
	dir string
	sum eval.Summary
}

// readResults reads an evaluation output directory: its own summary, or those of its
// subdirectories when it holds several evaluations.
func readResults(dir string) ([]priorResult, error) {
	if eval.IsResultDir(dir) {
		s, err := eval.ReadSummary(dir)
		if err != nil {
			return nil, err
		}
		return []priorResult{{dir, s}}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []priorResult
	for _, e := range entries {
		sub := filepath.Join(dir, e.Name())
		if !e.IsDir() || !eval.IsResultDir(sub) {
			continue
		}
		s, err := eval.ReadSummary(sub)
		if err != nil {
			return nil, err
		}
		out = append(out, priorResult{sub, s})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s is a directory without %s: give a model file or an evaluation's --out directory", dir, eval.SummaryFile)
	}
	return out, nil
}

// safeName keeps a directory name to letters, digits, '.', '-' and '_'.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}
