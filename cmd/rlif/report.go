package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/rlif/rlif/core/report"
)

func runReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("report", stderr)
	out := fs.String("out", "", "HTML file to write (default: RUN_DIR/"+report.File+" for one run, "+report.File+" for several)")
	maxRows := fs.Int("max-completions", report.DefaultMaxCompletions, "most completions in the table (whole steps, spread over the run); -1 for all")
	svgDir := fs.String("svg", "", "also write each chart as a standalone SVG file in this directory (for papers, Markdown pages)")
	chartKeys := fs.String("charts", "", "with --svg: comma-separated metric keys to draw (e.g. eval/accuracy,self_certainty/mean); default all")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: rlif report RUN_DIR [RUN_DIR...] [--out report.html] [--svg DIR [--charts KEY,...]]\n\nwrites one self-contained HTML page with the runs' curves (overlaid), evaluations and completions\n\n")
		fs.PrintDefaults()
	}
	// Run directories and flags may come in any order.
	var dirs []string
	for {
		if err := parseFlagsOnly(fs, args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		dirs = append(dirs, rest[0])
		args = rest[1:]
	}
	if len(dirs) == 0 {
		return usageError{"give at least one run directory: rlif report RUN_DIR [RUN_DIR...]"}
	}
	if *maxRows == 0 || *maxRows < -1 {
		return usageError{fmt.Sprintf("--max-completions must be > 0 or -1 (all), got %d", *maxRows)}
	}
	runs := make([]*report.Run, len(dirs))
	for i, d := range dirs {
		r, err := report.Load(d)
		if err != nil {
			return err
		}
		for _, n := range r.Notes {
			fmt.Fprintln(stderr, "note: "+n)
		}
		runs[i] = r
	}
	// Runs with the same base name (runs/a/x and runs/b/x) are told apart by their path.
	seen := map[string]int{}
	for _, r := range runs {
		seen[r.Name]++
	}
	for _, r := range runs {
		if seen[r.Name] > 1 {
			r.Name = filepath.Clean(r.Dir)
		}
	}
	path := *out
	if path == "" {
		path = report.File
		if len(dirs) == 1 {
			path = filepath.Join(dirs[0], report.File)
		}
	}
	if strings.HasSuffix(path, string(filepath.Separator)) {
		return usageError{fmt.Sprintf("--out %s names a directory: give a file name such as %s", path, filepath.Join(path, report.File))}
	}
	if *chartKeys != "" && *svgDir == "" {
		return usageError{"--charts selects the charts of --svg: give --svg DIR too"}
	}
	if err := report.Write(path, runs, report.Options{MaxCompletions: *maxRows}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	if *svgDir != "" {
		var keys []string
		for _, k := range strings.Split(*chartKeys, ",") {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
		paths, err := report.WriteCharts(*svgDir, runs, keys)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %d charts in %s\n", len(paths), *svgDir)
	}
	return nil
}

// parseFlagsOnly parses the flags at the start of args, leaving the rest in fs.Args;
// flag errors other than -h become usage errors.
func parseFlagsOnly(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}
