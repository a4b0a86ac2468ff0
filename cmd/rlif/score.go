package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/rewards"
)

// runScore scores completions with a run's reward mix and prints each reward's scores
// and the advantages, so that a mix can be debugged without training.
func runScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("score", stderr)
	configPath := fs.String("config", "", "run config (TOML); only its [[rewards]], [advantage] and [plugins] tables are used (required)")
	completionsPath := fs.String("completions", "", "completions, one JSON object per line as `rlif sample --json` prints, plus prompt and dataset fields (required; - for stdin)")
	asJSON := fs.Bool("json", false, "print one JSON object per completion, in input order")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *configPath == "" || *completionsPath == "" {
		return usageError{"--config and --completions are required"}
	}
	cfg, err := readScoreConfig(*configPath)
	if err != nil {
		return err
	}
	groups, lines, keys, err := openCompletions(*completionsPath)
	if err != nil {
		return err
	}

	// The same check as rlif train's: a gold answer field that no completion's
	// fields hold would score every completion "not applicable".
	if err := cfg.CheckRewardFields(*completionsPath, func(field string) bool { return groupsHaveField(groups, field) }); err != nil {
		return err
	}
	cfgs, err := cfg.PluginConfigs("")
	if err != nil {
		return fmt.Errorf("config %s: %w", *configPath, err)
	}
	set, err := host.StartAll(ctx, cfgs)
	if err != nil {
		return err
	}
	defer set.Close()

	scores := make([][][]rewards.Score, len(set.Plugins))
	for k, p := range set.Plugins {
		if scores[k], err = p.Score(ctx, groups); err != nil {
			return err
		}
	}
	adv, err := advantage.Compute(cfg.RewardSpecs(), scores, cfg.Advantage)
	if err != nil {
		return fmt.Errorf("advantages: %w", err)
	}
	// EMPO's filter ([advantage] entropy_filter_max), as training applies it.
	cfg.Advantage.Filter(adv, groups)
	if *asJSON {
		return printScoresJSON(stdout, cfg.RewardSpecs(), lines, keys, scores, adv)
	}
	return printScoresText(stdout, cfg, groups, lines, scores, adv)
}

// readScoreConfig reads a run's config (unknown keys are errors naming their line) and
// checks the parts that scoring uses.
func readScoreConfig(path string) (config.Run, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return cfg, err
	}
	if err := cfg.ValidateRewards(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// groupsHaveField reports whether any group has a non-empty value of a dataset field.
func groupsHaveField(groups []rewards.Group, field string) bool {
	for _, g := range groups {
		if g.Fields[field] != "" {
			return true
		}
	}
	return false
}

func openCompletions(path string) ([]rewards.Group, []scoredLine, []string, error) {
	if path == "-" {
		return readCompletions(os.Stdin, "stdin")
	}
	if err := data.CheckRegularFile(path); err != nil {
		return nil, nil, nil, fmt.Errorf("--completions %w: give a JSONL file of completions (- reads stdin)", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("read completions: %w", err)
	}
	defer f.Close()
	return readCompletions(f, path)
}

// scoreJSON is one line of `rlif score --json`.
type scoreJSON struct {
	Line      int                 `json:"line"`
	Group     string              `json:"group"`
	Scores    map[string]*float64 `json:"scores"`
	Advantage float64             `json:"advantage"`
}

func printScoresJSON(w io.Writer, specs []rewards.Spec, lines []scoredLine, keys []string, scores [][][]rewards.Score, adv [][]float64) error {
	enc := json.NewEncoder(w)
	for _, l := range lines {
		out := scoreJSON{Line: l.line, Group: groupLabel(keys[l.group]), Scores: map[string]*float64{}, Advantage: adv[l.group][l.index]}
		for k, s := range specs {
			if sc := scores[k][l.group][l.index]; sc.Applicable {
				v := sc.Value
				out.Scores[s.Name] = &v
			} else {
				out.Scores[s.Name] = nil
			}
		}
		if err := enc.Encode(out); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// groupLabel turns a group key back into what the user wrote: the group value, or the
// prompt.
func groupLabel(key string) string {
	if s, ok := strings.CutPrefix(key, "group:"); ok {
		return s
	}
	return strings.TrimPrefix(key, "prompt:")
}

func printScoresText(w io.Writer, cfg config.Run, groups []rewards.Group, lines []scoredLine, scores [][][]rewards.Score, adv [][]float64) error {
	mix := cfg.Advantage.Mix
	if mix == "" {
		mix = advantage.MixSum
	}
	var desc []string
	for _, s := range cfg.Rewards {
		src := "built-in"
		if !s.IsBuiltin() {
			src = "plugin " + s.Plugin
		}
		desc = append(desc, fmt.Sprintf("%s (%s, weight %g, normalize %s)", s.Name, src, s.EffectiveWeight(), s.EffectiveNormalize()))
	}
	fmt.Fprintf(w, "rewards: %s; mix %s\n", strings.Join(desc, ", "), mix)
	lineOf := make([][]int, len(groups))
	for i, g := range groups {
		lineOf[i] = make([]int, len(g.Completions))
	}
	for _, l := range lines {
		lineOf[l.group][l.index] = l.line
	}
	for i, g := range groups {
		fmt.Fprintf(w, "\ngroup %d: %s (%d completions)\n", i+1, clip(g.Prompt, 70), len(g.Completions))
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		header := []string{"line"}
		for _, s := range cfg.Rewards {
			header = append(header, s.Name)
		}
		header = append(header, "advantage", "text")
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for j, c := range g.Completions {
			row := []string{strconv.Itoa(lineOf[i][j])}
			for k := range cfg.Rewards {
				if sc := scores[k][i][j]; sc.Applicable {
					row = append(row, strconv.FormatFloat(sc.Value, 'g', 6, 64))
				} else {
					row = append(row, "n/a")
				}
			}
			row = append(row, strconv.FormatFloat(adv[i][j], 'f', 4, 64), clip(c.Text, 60))
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// clip puts s on one line between quotes, shortened to at most n runes.
func clip(s string, n int) string {
	s = strings.NewReplacer("\r", "", "\n", `\n`, "\t", " ").Replace(s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return `"` + s + `"`
}
