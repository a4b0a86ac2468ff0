package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards/answer"
)

// The default model on the first 20 rows of GSM8K's test set, end to end: greedy,
// batched, the chat template and the \boxed{} system prompt. max-tokens is kept
// moderate so that the test runs in a few minutes on two CPU cores; accuracy is not
// what it checks (a 135M model solves few GSM8K problems), the bookkeeping is.
func TestEvalGSM8KEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("evaluates 20 problems with the default model")
	}
	model := testutil.DefaultModel(t)
	data := testutil.SharedData(t, "gsm8k_test.jsonl")
	out := filepath.Join(t.TempDir(), "eval")
	code, stdout, stderr := runCLI(t, "eval", "--model", model, "--data", data, "--limit", "20", "--max-tokens", "64",
		"--threads", "1", "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "20/20 items") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}

	// The data file's own gold answers, to check the records against.
	rows := readJSONL(t, data, 20)
	recs, err := eval.ReadRecords(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 20 {
		t.Fatalf("%d records, want 20", len(recs))
	}
	correct := 0
	for i, r := range recs {
		if r.Index != i || r.Sample != 0 || r.Prompt != rows[i]["question"] {
			t.Errorf("record %d: index %d sample %d prompt %.40q", i, r.Index, r.Sample, r.Prompt)
		}
		if want := answer.Gold(rows[i]["answer"]); r.Gold != want {
			t.Errorf("record %d: gold %q, want %q", i, r.Gold, want)
		}
		// Re-check: the extracted answer is the completion's, and correct agrees with it.
		ext, ok := answer.Extract(r.Completion)
		if ext != r.Extracted || ok != r.Extractable {
			t.Errorf("record %d: extracted %q (%v), re-extraction gives %q (%v)", i, r.Extracted, r.Extractable, ext, ok)
		}
		if want := ok && answer.Equivalent(r.Extracted, r.Gold); r.Correct != want {
			t.Errorf("record %d: correct = %v, but %q vs gold %q re-checks as %v", i, r.Correct, r.Extracted, r.Gold, want)
		}
		if r.Correct {
			correct++
		}
		if r.Length < 1 || r.Length > 64 || (r.FinishReason != rollout.FinishEOS && r.FinishReason != rollout.FinishLength) {
			t.Errorf("record %d: length %d finish %q", i, r.Length, r.FinishReason)
		}
		if r.FinishReason == rollout.FinishLength && r.Length != 64 {
			t.Errorf("record %d: cut at %d tokens, not at max tokens", i, r.Length)
		}
		if !(r.SelfCertainty > 0) || math.IsInf(r.SelfCertainty, 0) {
			t.Errorf("record %d: self-certainty %g", i, r.SelfCertainty)
		}
	}

	s, err := eval.ReadSummary(out)
	if err != nil {
		t.Fatal(err)
	}
	if s.Accuracy != float64(correct)/20 || s.Correct != correct || s.Items != 20 || s.Completions != 20 {
		t.Errorf("summary accuracy %g (%d correct of %d), records say %d of 20", s.Accuracy, s.Correct, s.Completions, correct)
	}
	if !(s.AccuracyLow <= s.Accuracy && s.Accuracy <= s.AccuracyHigh) || s.AccuracyHigh <= 0 {
		t.Errorf("Wilson interval [%g, %g] around %g", s.AccuracyLow, s.AccuracyHigh, s.Accuracy)
	}
	if s.Calibration.Correct != correct || s.Calibration.Incorrect != 20-correct {
		t.Errorf("calibration classes %d/%d, want %d/%d", s.Calibration.Correct, s.Calibration.Incorrect, correct, 20-correct)
	}
	if (s.Calibration.Test != nil) != (correct > 0 && correct < 20) {
		t.Errorf("Mann–Whitney test present = %v with %d correct", s.Calibration.Test != nil, correct)
	}
	if s.Tokens <= 0 || s.WallSeconds <= 0 || s.TokensPerSecond <= 0 || s.MaxTokens != 64 || s.System != config.DefaultSystemPrompt || s.N != 1 || s.Temperature != 0 {
		t.Errorf("summary settings/timing: %+v", s)
	}
	if s.Label != "SmolLM2-135M-Instruct.Q4_1" || s.DataName != "gsm8k_test" {
		t.Errorf("label %q data %q", s.Label, s.DataName)
	}
	// --json printed the same summary.
	var printed eval.Summary
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &printed); err != nil {
		t.Fatalf("stdout is not one JSON summary: %v\n%s", err, stdout)
	}
	if printed.Accuracy != s.Accuracy || printed.Tokens != s.Tokens {
		t.Errorf("printed summary differs from summary.json")
	}
	f, err := os.Open(filepath.Join(out, eval.HistogramFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("calibration.png: %v", err)
	}

	// The output directory as a --model: the report and no new evaluation.
	code, stdout, stderr = runCLI(t, "eval", "--model", out)
	if code != 0 || !strings.Contains(stdout, "SmolLM2-135M-Instruct.Q4_1 on gsm8k_test · 20 items") {
		t.Errorf("reading back %s: exit %d\n%s%s", out, code, stdout, stderr)
	}
}

func readJSONL(t *testing.T, path string, n int) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(rows) < n {
		var row map[string]string
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	return rows
}

// Side by side: two earlier evaluations' output directories give the Table 1 rows.
func TestEvalCompareDirs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, label, data string, correct []bool) string {
		var items []eval.Item
		var groups [][]rollout.Completion
		for i, ok := range correct {
			text := `\boxed{0}`
			if ok {
				text = `\boxed{1}`
			}
			items = append(items, eval.Item{Index: i, Prompt: "p", Gold: "1"})
			groups = append(groups, []rollout.Completion{{Text: text, SelfCertaintyMean: float64(i), Tokens: make([]int32, 5), FinishReason: "eos"}})
		}
		recs, err := eval.Score(items, groups)
		if err != nil {
			t.Fatal(err)
		}
		s, err := eval.Summarize(recs, 1)
		if err != nil {
			t.Fatal(err)
		}
		s.Label, s.DataName, s.N = label, data, 1
		out := filepath.Join(dir, name)
		if err := eval.WriteDir(out, &eval.Result{Summary: s, Records: recs}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	base := write("base", "base", "gsm8k_test", []bool{true, false, false, false})
	tuned := write("tuned", "intuitor", "gsm8k_test", []bool{true, true, false, true})
	// A directory of several evaluations, as --out writes for several models or data.
	multi := filepath.Join(dir, "multi")
	write(filepath.Join("multi", "a"), "base", "math500_test", []bool{false, true})
	write(filepath.Join("multi", "b"), "intuitor", "math500_test", []bool{true, true})

	code, stdout, stderr := runCLI(t, "eval", "--model", base, "--model", tuned, "--model", multi)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var header, baseRow, tunedRow string
	for _, line := range strings.Split(stdout, "\n") {
		switch {
		case strings.HasPrefix(line, "Model ") && header == "":
			header = line
		case strings.HasPrefix(line, "base ") && baseRow == "" && header != "":
			baseRow = line
		case strings.HasPrefix(line, "intuitor ") && tunedRow == "" && header != "":
			tunedRow = line
		}
	}
	if !strings.Contains(header, "gsm8k_test") || !strings.Contains(header, "math500_test") ||
		!strings.Contains(baseRow, "0.250 [") || !strings.Contains(baseRow, "0.500 [") ||
		!strings.Contains(tunedRow, "0.750 [") || !strings.Contains(tunedRow, "1.000 [") {
		t.Errorf("table rows:\n%s\n%s\n%s\nfull output:\n%s", header, baseRow, tunedRow, stdout)
	}
	t.Logf("rlif eval output:\n%s", stdout)
	if !strings.Contains(stdout, "Self-certainty calibration") {
		t.Errorf("no calibration table:\n%s", stdout)
	}
}

func TestEvalBadInput(t *testing.T) {
	dir := t.TempDir()
	file := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noAnswer := file("no_answer.jsonl", `{"question": "What is 2+2?", "solution": "4"}`+"\n")
	empty := file("empty.jsonl", "")
	blank := file("blank.jsonl", "\n\n")
	good := file("good.jsonl", `{"question": "What is 2+2?", "answer": "#### 4"}`+"\n")
	notEval := t.TempDir()
	// The model must exist, but bad data is refused before it is loaded.
	model := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(model, []byte("GGUF"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no answer field", []string{"--data", noAnswer}, 1, `line 1: no "answer" field`},
		{"named answer field missing", []string{"--data", good, "--answer-field", "target"}, 1, `no "target" field`},
		{"empty file", []string{"--data", empty}, 1, "empty.jsonl: the file has no rows"},
		{"blank file", []string{"--data", blank}, 1, "the file has no rows"},
		{"missing file", []string{"--data", filepath.Join(dir, "nope.jsonl")}, 1, "no such file"},
		{"no data", nil, 2, "--data is required"},
		{"n without temperature", []string{"--data", good, "--n", "4"}, 2, "needs a --temperature"},
		{"bad max tokens", []string{"--data", good, "--max-tokens", "0"}, 2, "--max-tokens must be >= 1"},
		{"stray argument", []string{"--data", good, "extra"}, 2, `unexpected argument "extra"`},
		{"model directory without a summary", []string{"--model", notEval}, 1, "without summary.json"},
		{"missing model", []string{"--model", filepath.Join(dir, "none.gguf"), "--data", good}, 1, "none.gguf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"eval", "--quiet"}
			if !contains(tt.args, "--model") {
				args = append(args, "--model", model)
			}
			code, _, stderr := runCLI(t, append(args, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 && tt.code == 1 {
				t.Errorf("error is not one line: %q", stderr)
			}
		})
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Earlier evaluations of one item set, as the trainer writes them (RUN/eval/step-N), are
// shown side by side with distinct labels and compared item by item.
func TestEvalPairsEarlierEvaluations(t *testing.T) {
	root := t.TempDir()
	write := func(run, step string, correct []bool) string {
		dir := filepath.Join(root, run, "eval", step)
		res := &eval.Result{Summary: eval.Summary{Label: step, DataName: "arith_test", Items: len(correct)}}
		for i, c := range correct {
			res.Records = append(res.Records, eval.Record{Index: i, Prompt: fmt.Sprintf("What is %d + 1?", i), Correct: c})
			if c {
				res.Summary.Correct++
			}
		}
		res.Summary.Accuracy = float64(res.Summary.Correct) / float64(len(correct))
		if err := eval.WriteDir(dir, res); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	base := write("grpo", "step-0", []bool{true, false, false, false, false, false})
	grpo := write("grpo", "step-8", []bool{true, true, true, true, true, false})
	intu := write("intuitor", "step-8", []bool{false, false, false, false, false, false})
	code, stdout, stderr := runCLI(t, "eval", "--model", base, "--model", grpo, "--model", intu)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"grpo step-0", "grpo step-8", "intuitor step-8", // labelled by their runs
		"grpo step-8 grpo step-0 arith_test +66.7 pts 4 / 0 / 6 0.125", // binom.test(0, 4): p = 0.125
		"intuitor step-8 grpo step-0 arith_test -16.7 pts 0 / 1 / 6 1",
	} {
		if !strings.Contains(strings.Join(strings.Fields(stdout), " "), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

// rlif eval --out never writes over anything: an earlier evaluation in the directory, or
// a user's files, survive, and the refusal comes before any model is loaded.
func TestEvalOutRefusesNonEmpty(t *testing.T) {
	model := testutil.StoriesModel(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte("{\"prompt\": \"Once upon a time\", \"answer\": \"1\"}\n"), 0o644)
	out := filepath.Join(dir, "eval")
	args := []string{"eval", "--model", model, "--data", data, "--raw", "--max-tokens", "4", "--threads", "1", "--out", out}
	if code, _, stderr := runCLI(t, args...); code != 0 {
		t.Fatalf("first evaluation: exit %d: %s", code, stderr)
	}
	first, err := os.ReadFile(filepath.Join(out, eval.SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, "mine")
	os.MkdirAll(mine, 0o755)
	os.WriteFile(filepath.Join(mine, "notes.md"), []byte("mine"), 0o644)
	for _, o := range []string{out, mine} {
		args[len(args)-1] = o
		code, _, stderr := runCLI(t, args...)
		if code == 0 || !strings.Contains(stderr, "exists and is not empty") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Fatalf("--out %s: exit %d: %s", o, code, stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, eval.SummaryFile)); !bytes.Equal(b, first) {
		t.Error("the earlier evaluation was replaced")
	}
	if b, _ := os.ReadFile(filepath.Join(mine, "notes.md")); string(b) != "mine" {
		t.Error("the user's file was touched")
	}
}

// Prompts without answers: refused with a line that names --unlabeled, evaluated with it,
// and reported without accuracy or calibration; the summary says so, and an earlier
// unlabeled evaluation shown beside it gets no paired test.
func TestEvalUnlabeled(t *testing.T) {
	model := testutil.StoriesModel(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "prompts.jsonl")
	os.WriteFile(data, []byte("{\"prompt\": \"Lily had 3 cats\"}\n{\"prompt\": \"Once upon a time\"}\n"), 0o644)
	args := []string{"eval", "--model", model, "--data", data, "--raw", "--max-tokens", "4", "--threads", "1", "--quiet"}
	if code, _, stderr := runCLI(t, args...); code == 0 || !strings.Contains(stderr, "rlif eval --unlabeled") {
		t.Fatalf("prompts without answers, labelled: exit %d: %s", code, stderr)
	}
	out := filepath.Join(dir, "eval")
	code, stdout, stderr := runCLI(t, append(args, "--unlabeled", "--out", out)...)
	if code != 0 || !strings.Contains(stdout, "not measured: the prompts have no gold answers") || strings.Contains(stdout, "calibration") || !strings.Contains(stdout, "echo a number of the prompt") {
		t.Fatalf("--unlabeled: exit %d\n%s\n%s", code, stdout, stderr)
	}
	sum, err := eval.ReadSummary(out)
	if err != nil || !sum.Unlabeled || sum.Items != 2 {
		t.Fatalf("summary %+v (%v)", sum, err)
	}
	if _, err := os.Stat(filepath.Join(out, eval.HistogramFile)); !os.IsNotExist(err) {
		t.Errorf("a calibration plot for unlabeled prompts (%v)", err)
	}
	code, stdout, stderr = runCLI(t, append(args, "--unlabeled", "--model", out)...)
	if code != 0 || !strings.Contains(stdout, "no labels") || strings.Contains(stdout, "Paired on the same items") || strings.Contains(stdout, "no paired test") {
		t.Errorf("beside an earlier unlabeled evaluation: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
