package eval

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report writes a human-readable report of one evaluation.
func Report(w io.Writer, s Summary) error {
	var b strings.Builder
	decoding := "greedy"
	if s.Temperature > 0 {
		decoding = fmt.Sprintf("temperature %g, top-p %g, seed %d", s.Temperature, s.TopP, s.Seed)
	}
	samples := "1 sample"
	if s.N != 1 {
		samples = fmt.Sprintf("%d samples", s.N)
	}
	fmt.Fprintf(&b, "%s on %s · %d items × %s · %s · max %d tokens\n", s.Label, s.DataName, s.Items, samples, decoding, s.MaxTokens)
	if s.Unlabeled {
		fmt.Fprintf(&b, "  accuracy        not measured: the prompts have no gold answers\n")
	} else {
		fmt.Fprintf(&b, "  accuracy        %5.1f%%  (%d/%d, 95%% Wilson CI %.1f–%.1f%%)\n",
			100*s.Accuracy, s.Correct, s.Completions, 100*s.AccuracyLow, 100*s.AccuracyHigh)
	}
	if len(s.PassAtK) > 0 {
		var parts []string
		for _, k := range PassKeys(s.PassAtK) {
			parts = append(parts, fmt.Sprintf("pass@%d %.1f%%", k, 100*s.PassAtK[fmt.Sprint(k)]))
		}
		if s.MajAtK != nil {
			parts = append(parts, fmt.Sprintf("maj@%d %.1f%%", s.N, 100**s.MajAtK))
		}
		fmt.Fprintf(&b, "  over samples    %s\n", strings.Join(parts, " · "))
	}
	fmt.Fprintf(&b, "  answers         %.1f%% extractable · %.1f%% in \\boxed{} · %.1f%% echo a number of the prompt · %.1f%% cut at max tokens\n",
		100*s.Extractable, 100*s.Boxed, 100*s.Echo, 100*s.Truncated)
	fmt.Fprintf(&b, "  completions     mean %.1f tokens · mean self-certainty %.4f\n", s.MeanLength, s.MeanSelfCertainty)
	c := s.Calibration
	if !s.Unlabeled { // correct and incorrect need labels
		fmt.Fprintf(&b, "  calibration     self-certainty of correct: %s · incorrect: %s\n",
			classStats(c.Correct, c.MeanCorrect, c.MedianCorrect), classStats(c.Incorrect, c.MeanIncorrect, c.MedianIncorrect))
		if t := c.Test; t != nil {
			fmt.Fprintf(&b, "                  Mann–Whitney U = %.1f, Z = %.3f, two-sided p = %.3g, r = %.3f, AUC = %.3f\n", t.U, t.Z, t.P, t.R, t.AUC)
		} else {
			fmt.Fprintf(&b, "                  no test: all completions are %s\n", map[bool]string{true: "correct", false: "incorrect"}[c.Incorrect == 0])
		}
	}
	if c := s.Consistency; c != nil {
		fmt.Fprintf(&b, "  consistency     self-certainty of completions agreeing with their item's plurality answer: %s · the others: %s\n",
			classStats(c.Correct, c.MeanCorrect, c.MedianCorrect), classStats(c.Incorrect, c.MeanIncorrect, c.MedianIncorrect))
		if t := c.Test; t != nil {
			fmt.Fprintf(&b, "                  (no labels) Mann–Whitney U = %.1f, Z = %.3f, two-sided p = %.3g, r = %.3f, AUC = %.3f\n", t.U, t.Z, t.P, t.R, t.AUC)
		}
	}
	fmt.Fprintf(&b, "  time            %.1f s · %d tokens · %.1f tok/s", s.WallSeconds, s.Tokens, s.TokensPerSecond)
	if s.Threads > 0 {
		fmt.Fprintf(&b, " · %d threads", s.Threads)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func classStats(n int, mean, median *float64) string {
	if n == 0 || mean == nil || median == nil {
		return "n = 0"
	}
	return fmt.Sprintf("n = %d, mean %.4f, median %.4f", n, *mean, *median)
}

// Table writes evaluations side by side in the row format of the Intuitor paper's
// Table 1: one row per model, one column per dataset, accuracy as a fraction (with its
// 95% Wilson interval); then the calibration of each cell (r and p of the Mann–Whitney
// test of correct against incorrect self-certainty).
func Table(w io.Writer, sums []Summary) error {
	var rows, cols []string
	cell := map[[2]string]Summary{}
	for _, s := range sums {
		if !contains(rows, s.Label) {
			rows = append(rows, s.Label)
		}
		if !contains(cols, s.DataName) {
			cols = append(cols, s.DataName)
		}
		cell[[2]string{s.Label, s.DataName}] = s
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Model\t%s\t\n", strings.Join(cols, "\t"))
	for _, r := range rows {
		fmt.Fprint(tw, r)
		for _, c := range cols {
			s, ok := cell[[2]string{r, c}]
			if !ok {
				fmt.Fprint(tw, "\t–")
				continue
			}
			if s.Unlabeled {
				fmt.Fprint(tw, "\tno labels")
				continue
			}
			fmt.Fprintf(tw, "\t%.3f [%.3f, %.3f]", s.Accuracy, s.AccuracyLow, s.AccuracyHigh)
		}
		fmt.Fprint(tw, "\t\n")
	}
	fmt.Fprintf(tw, "\nSelf-certainty calibration\t%s\t\n", strings.Join(cols, "\t"))
	for _, r := range rows {
		fmt.Fprint(tw, r)
		for _, c := range cols {
			s, ok := cell[[2]string{r, c}]
			switch {
			case !ok:
				fmt.Fprint(tw, "\t–")
			case s.Calibration.Test == nil:
				fmt.Fprint(tw, "\tno test")
			default:
				t := s.Calibration.Test
				fmt.Fprintf(tw, "\tr = %.3f, p = %.2g, AUC = %.3f", t.R, t.P, t.AUC)
			}
		}
		fmt.Fprint(tw, "\t\n")
	}
	return tw.Flush()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
