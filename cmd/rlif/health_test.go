package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/eval"
)

// rlif health replays a run's metrics with the default rule (window 3, start 3, healthy
// entropy 0.5, collapse below 0.35). Worked by hand: steps 1–3 sample 100 tokens at
// entropy 1 (the start); steps 4–6 40 tokens at 0.3. Step 5's moving means are 60 and
// 0.533 (ratios 0.6 and 0.53: healthy), step 6's 40 and 0.3 (0.4 and 0.3: collapsed).
// Of the evaluated steps (0, 3, 6) the rule keeps 3; the labels' best is 3 too.
func TestHealthCommand(t *testing.T) {
	dir := t.TempDir()
	lines := []string{`{"step":0,"eval/accuracy":0.15}`}
	for s := 1; s <= 6; s++ {
		length, ent := 100.0, 1.0
		if s > 3 {
			length, ent = 40, 0.3
		}
		l := fmt.Sprintf(`{"step":%d,"loss":0.1,"completion_length/mean":%g,"entropy/mean":%g`, s, length, ent)
		switch s {
		case 3:
			l += `,"eval/accuracy":0.2`
		case 6:
			l += `,"eval/accuracy":0.1`
		}
		lines = append(lines, l+"}")
	}
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)

	code, out, errs := runCLI(t, "health", "--summary", dir)
	want := dir + ": label-free pick (entropy) step 3 (0.200) · first collapse 6 · best step 3 (0.200) · last step 6 (0.100) · base (0.150)"
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
	code, out, _ = runCLI(t, "health", dir)
	for _, row := range []string{"5 0.60 0.53 healthy", "6 0.40 0.30 collapsed 0.100"} {
		if code != 0 || !hasRow(out, row) {
			t.Errorf("table lacks %q:\n%s", row, out)
		}
	}

	// A run's own thresholds ([output.health] of its config.toml) are the ones applied.
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[output.health]\ncollapse_entropy = 0.25\nhealthy_length = 0.7\n"), 0o644)
	if code, out, errs = runCLI(t, "health", "--summary", dir); code != 0 || !strings.Contains(out, "first collapse none") {
		t.Errorf("collapse_entropy 0.25: exit %d, %q %q; want no collapse", code, out, errs)
	}
	if code, out, _ = runCLI(t, "health", dir); !hasRow(out, "5 0.60 0.53 -") {
		t.Errorf("healthy_length 0.7: step 5 (length 0.6) is not healthy:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "config.toml"), []byte("[output.health]\nwindow = 0\n"), 0o644)
	if code, _, errs = runCLI(t, "health", dir); code != 1 || !strings.Contains(errs, "output.health.window = 0") {
		t.Errorf("window 0: exit %d, stderr %q", code, errs)
	}
	if code, _, errs = runCLI(t, "health"); code != 2 || !strings.Contains(errs, "give at least one run directory") {
		t.Errorf("no directory: exit %d, stderr %q", code, errs)
	}
}

// A run that logs the echo share (answer/echo_ratio) shows it beside the verdicts.
func TestHealthShowsEcho(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for s := 1; s <= 4; s++ {
		lines = append(lines, fmt.Sprintf(`{"step":%d,"loss":0.1,"completion_length/mean":50,"entropy/mean":1,"answer/echo_ratio":%g}`, s, 0.25*float64(s)))
	}
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	code, out, _ := runCLI(t, "health", dir)
	if code != 0 || !hasRow(out, "step length ratio entropy ratio held-out echo verdict echo eval/accuracy") || !hasRow(out, "4 1.00 1.00 healthy 1.00") {
		t.Errorf("exit %d; want an echo column with step 4's 1.00:\n%s", code, out)
	}
}

// Where the run evaluated, the echo guard judges its evaluated steps from the held-out
// echo share: read from each evaluation's items when the metrics lack it (runs from
// before rlif logged it). Steps 0 and 3 answer "What is 3 + 4?" with 7 (no echo); step 6
// with 4, a number of the question, in 2 of 3 items: a rise of 0.67 over the base's 0,
// collapsed, though the entropy never moved. --echo-rise 0 replays the entropy rule.
func TestHealthEchoGuard(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for s := 0; s <= 6; s++ {
		l := fmt.Sprintf(`{"step":%d`, s)
		if s > 0 {
			l += `,"loss":0.1,"completion_length/mean":50,"entropy/mean":1`
		}
		if s%3 == 0 {
			answers := []string{"7", "7", "7"}
			if s == 6 {
				answers = []string{"4", "7", "4"}
			}
			var recs []eval.Record
			for i, a := range answers {
				recs = append(recs, eval.Record{Index: i, Prompt: "What is 3 + 4?", Gold: "7", Completion: "It is " + a + ".", Extracted: a, Extractable: true, Correct: a == "7"})
			}
			if err := eval.WriteDir(filepath.Join(dir, "eval", fmt.Sprintf("step-%d", s)), &eval.Result{Records: recs}); err != nil {
				t.Fatal(err)
			}
			l += fmt.Sprintf(`,"eval/extractable":1,"eval/accuracy":%g`, float64(strings.Count(strings.Join(answers, ""), "7"))/3)
		}
		lines = append(lines, l+"}")
	}
	os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)

	code, out, errs := runCLI(t, "health", "--summary", dir)
	want := dir + ": label-free pick (echo guard) step 3 (1.000) · first collapse 6 · best step 0 (1.000) · last step 6 (0.333) · base (1.000)"
	if code != 0 || strings.TrimSpace(out) != want {
		t.Fatalf("exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}
	code, out, _ = runCLI(t, "health", dir)
	if code != 0 || !hasRow(out, "6 1.00 1.00 0.67 collapsed (echo) 0.333") || !hasRow(out, "3 1.00 1.00 0.00 healthy (echo) 1.000") {
		t.Errorf("exit %d; want steps 3 and 6 judged by echo:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "health", "--summary", "--echo-rise", "0", dir)
	if code != 0 || !strings.Contains(out, "pick (entropy) step 6") {
		t.Errorf("--echo-rise 0: exit %d, %q; want the entropy rule's pick, step 6", code, out)
	}
	if code, _, errs = runCLI(t, "health", "--echo-rise", "2", dir); code != 2 || !strings.Contains(errs, "--echo-rise 2") {
		t.Errorf("--echo-rise 2: exit %d, stderr %q", code, errs)
	}
}

// hasRow reports whether a line of out has the fields of row (spaces collapsed).
func hasRow(out, row string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == row {
			return true
		}
	}
	return false
}
