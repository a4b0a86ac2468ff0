package eval

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/rlif/rlif/core/eval/stats"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/rollout"
)

// Items come through data.Load, the loader training uses: the same fields, the same row
// numbering, and parquet files as well as JSONL (the base commit read .parquet as JSON).
func TestLoadItems(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		file    string
		text    string
		opt     DataOptions
		want    []Item
		wantErr string
	}{
		{
			name: "GSM8K rows",
			text: `{"question": "2+2?", "answer": "2+2=4\n#### 4"}` + "\n" + `{"question": "3+5?", "answer": "#### 8"}` + "\n",
			want: []Item{{0, 1, "2+2?", "4"}, {1, 2, "3+5?", "8"}},
		},
		{
			name: "MATH rows with a boxed solution, no final newline, blank lines skipped",
			text: "\n" + `{"problem": "Half of 1?", "solution": "x", "answer": "so \\boxed{\\frac{1}{2}}"}` + "\n\n",
			want: []Item{{0, 2, "Half of 1?", `\frac{1}{2}`}},
		},
		{
			name: "prompt is preferred over question, numeric answers",
			text: `{"prompt": "p", "question": "q", "answer": 12.5}`,
			want: []Item{{0, 1, "p", "12.5"}},
		},
		{
			name: "named fields and a limit",
			text: `{"q": "a", "gold": "1"}` + "\n" + `{"q": "b", "gold": "2"}` + "\n" + `{"q": "c", "gold": "3"}`,
			opt:  DataOptions{PromptField: "q", AnswerField: "gold", Limit: 2},
			want: []Item{{0, 1, "a", "1"}, {1, 2, "b", "2"}},
		},
		{
			name:    "missing answer field",
			text:    `{"question": "a", "answer": "1"}` + "\n\n" + `{"question": "b", "solution": "2"}`,
			wantErr: `line 3: no "answer" field`,
		},
		{
			name:    "missing named answer field",
			text:    `{"question": "a", "answer": "1"}`,
			opt:     DataOptions{AnswerField: "target"},
			wantErr: `line 1: no "target" field`,
		},
		{
			name:    "no prompt field",
			text:    `{"text": "a", "answer": "1"}`,
			wantErr: `none of the fields prompt, question, problem`,
		},
		{name: "empty file", text: "", wantErr: "no rows"},
		{name: "only blank lines", text: "\n  \n\n", wantErr: "no rows"},
		{name: "not JSON", text: `{"question": "a", "answer": "1"}` + "\nnope\n", wantErr: "line 2: not a JSON object"},
		{name: "empty answer", text: `{"question": "a", "answer": "  "}`, wantErr: `field "answer" holds no answer`},
		{name: "empty prompt", text: `{"question": " ", "answer": "1"}`, wantErr: `line 1 has no "question" field (or it is empty)`},
		{name: "object answer", text: `{"question": "a", "answer": "1"}` + "\n" + `{"question": "b", "answer": {"value": 2}}`, wantErr: `line 2: field "answer" (the gold answer) is an object`},
		{name: "number prompt", text: `{"question": 7, "answer": "1"}`, wantErr: `line 1: field "question" is a number, not text`},
		{name: "parquet", file: "rows.parquet", want: []Item{{0, 1, "2+2?", "4"}, {1, 2, "Half of 1?", `\frac{1}{2}`}}},
		{name: "parquet without the answer", file: "rows.parquet", opt: DataOptions{AnswerField: "solution"}, wantErr: `row 1: no "solution" field`},
	}
	type pq struct {
		Question string `parquet:"question"`
		Answer   string `parquet:"answer"`
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".jsonl")
			if tt.file != "" {
				path = filepath.Join(dir, tt.file)
				if err := parquet.WriteFile(path, []pq{{"2+2?", "#### 4"}, {"Half of 1?", `\boxed{\frac{1}{2}}`}}); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := LoadItems(path, tt.opt)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("items = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The real data files: the first rows' gold answers and the row counts.
func TestLoadItemsSharedData(t *testing.T) {
	tests := []struct {
		file      string
		limit     int
		wantN     int
		firstGold string
		prefix    string
	}{
		{"gsm8k_test.jsonl", 300, 300, "18", "Janet"},
		{"math500_test.jsonl", 0, 500, `\left( 3, \frac{\pi}{2} \right)`, "Convert the point"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			items, err := LoadItems(testutil.SharedData(t, tt.file), DataOptions{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(items) != tt.wantN || items[0].Gold != tt.firstGold || !strings.HasPrefix(items[0].Prompt, tt.prefix) {
				t.Errorf("%d items, first gold %q prompt %.30q; want %d, %q, %q…", len(items), items[0].Gold, items[0].Prompt, tt.wantN, tt.firstGold, tt.prefix)
			}
			for i, it := range items {
				if it.Index != i || it.Gold == "" {
					t.Fatalf("item %d: index %d gold %q", i, it.Index, it.Gold)
				}
			}
		})
	}
	if _, err := LoadItems(filepath.Join(t.TempDir(), "missing.jsonl"), DataOptions{}); err == nil {
		t.Error("missing file: want an error")
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		text, gold      string
		ext             string
		extractable, ok bool
	}{
		{`so the answer is \boxed{18}.`, "18", "18", true, true},
		{`\boxed{0.5}`, `\frac{1}{2}`, "0.5", true, true},
		{`\boxed{17}`, "18", "17", true, false},
		{"I do not know.", "18", "", false, false},
	}
	for _, tt := range tests {
		ext, extractable, ok := Check(tt.text, tt.gold)
		if ext != tt.ext || extractable != tt.extractable || ok != tt.ok {
			t.Errorf("Check(%q, %q) = %q, %v, %v; want %q, %v, %v", tt.text, tt.gold, ext, extractable, ok, tt.ext, tt.extractable, tt.ok)
		}
	}
}

func completion(text string, sc float64, tokens int, finish string) rollout.Completion {
	return rollout.Completion{Text: text, SelfCertaintyMean: sc, Tokens: make([]int32, tokens), FinishReason: finish}
}

func TestScoreAndSummarizeGreedy(t *testing.T) {
	items := []Item{{0, 1, "a", "1"}, {1, 2, "b", "2"}, {2, 3, "What is 5 - 2?", "3"}, {3, 4, "d", "4"}}
	groups := [][]rollout.Completion{
		{completion(`\boxed{1}`, 4.0, 10, rollout.FinishEOS)},
		{completion(`the answer is 2`, 3.0, 20, rollout.FinishEOS)},
		{completion(`\boxed{5}`, 2.0, 30, rollout.FinishEOS)}, // echoes the prompt's 5
		{completion(`blah blah`, 1.0, 40, rollout.FinishLength)},
	}
	recs, err := Score(items, groups)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(recs, 1)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := stats.Wilson(2, 4, stats.Z95)
	if s.Items != 4 || s.Correct != 2 || s.Accuracy != 0.5 || s.AccuracyLow != lo || s.AccuracyHigh != hi {
		t.Errorf("accuracy: %+v", s)
	}
	if !recs[2].Echo || recs[0].Echo || s.Echo != 0.25 {
		t.Errorf("echo: records %v %v, summary %g; want the third only, 0.25", recs[0].Echo, recs[2].Echo, s.Echo)
	}
	if s.Extractable != 0.75 || s.Boxed != 0.5 || s.Truncated != 0.25 || s.MeanLength != 25 || s.MeanSelfCertainty != 2.5 || s.Tokens != 100 {
		t.Errorf("extractable %g boxed %g truncated %g length %g sc %g tokens %d", s.Extractable, s.Boxed, s.Truncated, s.MeanLength, s.MeanSelfCertainty, s.Tokens)
	}
	c := s.Calibration
	if c.Correct != 2 || c.Incorrect != 2 || *c.MeanCorrect != 3.5 || *c.MeanIncorrect != 1.5 || c.Test == nil || c.Test.U != 4 || c.Test.AUC != 1 || c.Test.R <= 0 {
		t.Errorf("calibration: %+v test %+v", c, c.Test)
	}
	if s.PassAtK != nil || s.MajAtK != nil {
		t.Error("greedy: no pass@k or maj@k expected")
	}
	if _, err := Score(items[:3], groups); err == nil {
		t.Error("mismatched groups: want an error")
	}
}

func TestSummarizeSamples(t *testing.T) {
	// Item 0 (gold 1/2): answers 0.5, \frac{1}{2}, 3, none → 2 correct of 4; plurality
	// {0.5, 1/2} is correct. Item 1 (gold 7): answers 2, 2, 7, 7 → 2 correct; the tie
	// goes to 2, which appeared first: maj wrong.
	items := []Item{{0, 1, "a", `\frac{1}{2}`}, {1, 2, "b", "7"}}
	groups := [][]rollout.Completion{
		{completion(`\boxed{0.5}`, 1, 1, "eos"), completion(`\boxed{\frac{1}{2}}`, 1, 1, "eos"), completion(`\boxed{3}`, 1, 1, "eos"), completion(`no`, 1, 1, "eos")},
		{completion(`\boxed{2}`, 1, 1, "eos"), completion(`\boxed{2}`, 1, 1, "eos"), completion(`\boxed{7}`, 1, 1, "eos"), completion(`\boxed{7}`, 1, 1, "eos")},
	}
	recs, err := Score(items, groups)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(recs, 4)
	if err != nil {
		t.Fatal(err)
	}
	// pass@2 with n = 4, c = 2: 1 − C(2,2)/C(4,2) = 5/6 for both items.
	want := map[string]float64{"1": 0.5, "2": 5.0 / 6, "4": 1}
	for k, v := range want {
		if math.Abs(s.PassAtK[k]-v) > 1e-12 {
			t.Errorf("pass@%s = %g, want %g", k, s.PassAtK[k], v)
		}
	}
	if len(s.PassAtK) != len(want) || s.MajAtK == nil || *s.MajAtK != 0.5 {
		t.Errorf("pass@k %v, maj@k %v", s.PassAtK, s.MajAtK)
	}
	if s.Items != 2 || s.Completions != 8 || s.Accuracy != 0.5 {
		t.Errorf("items %d completions %d accuracy %g", s.Items, s.Completions, s.Accuracy)
	}
	if _, err := Summarize(recs[:7], 4); err == nil {
		t.Error("7 records in groups of 4: want an error")
	}
}

// Consistency needs no gold answer: each item's plurality cluster against the rest,
// completions without an answer among the rest. Worked by hand: item 0's plurality is
// {0.5, 1/2} (self-certainty 5, 4; the rest 1 and 2, the latter without an answer),
// item 1's the tie's first cluster {2, 2} (3, 6; the rest 4.5, 0). Agreeing
// {5, 4, 3, 6} against {1, 2, 4.5, 0}: 14 of the 16 pairs ordered, AUC 0.875.
func TestSummarizeConsistency(t *testing.T) {
	items := []Item{{0, 1, "a", ""}, {1, 2, "b", ""}}
	groups := [][]rollout.Completion{
		{completion(`\boxed{0.5}`, 5, 1, "eos"), completion(`\boxed{\frac{1}{2}}`, 4, 1, "eos"), completion(`\boxed{3}`, 1, 1, "eos"), completion(`no`, 2, 1, "eos")},
		{completion(`\boxed{2}`, 3, 1, "eos"), completion(`\boxed{2}`, 6, 1, "eos"), completion(`\boxed{7}`, 4.5, 1, "eos"), completion(`\boxed{7}`, 0, 1, "eos")},
	}
	recs, err := Score(items, groups)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(recs, 4)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Consistency
	if c == nil || c.Correct != 4 || c.Incorrect != 4 || c.Test == nil || math.Abs(c.Test.AUC-0.875) > 1e-12 {
		t.Fatalf("consistency %+v (test %+v), want 4 agreeing, 4 others, AUC 0.875", c, c.Test)
	}
	if *c.MeanCorrect != 4.5 || *c.MeanIncorrect != 1.875 {
		t.Errorf("means %g, %g; want 4.5, 1.875", *c.MeanCorrect, *c.MeanIncorrect)
	}
	if greedy, _ := Summarize(recs[:1], 1); greedy.Consistency != nil {
		t.Error("one sample per item: no consistency expected")
	}
}

func TestMajorityCorrect(t *testing.T) {
	rec := func(ext string, correct bool) Record {
		return Record{Extracted: ext, Extractable: ext != "", Correct: correct}
	}
	tests := []struct {
		name  string
		group []Record
		want  bool
	}{
		{"clear majority right", []Record{rec("3", false), rec("4", true), rec("4.0", true)}, true},
		{"clear majority wrong", []Record{rec("3", false), rec("3", false), rec("4", true)}, false},
		{"equivalent forms cluster", []Record{rec("9", false), rec(`\frac{1}{2}`, true), rec("0.5", true)}, true},
		{"tie goes to the first", []Record{rec("4", true), rec("3", false), rec("3", false), rec("4", true)}, true},
		{"no answers do not vote", []Record{rec("", false), rec("", false), rec("4", true)}, true},
		{"no answer at all", []Record{rec("", false), rec("", false)}, false},
	}
	for _, tt := range tests {
		if got := MajorityCorrect(tt.group); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func sampleResult(t *testing.T) *Result {
	t.Helper()
	items := []Item{{0, 1, "a", "1"}, {1, 2, "b", "2"}, {2, 3, "c", "3"}}
	groups := [][]rollout.Completion{
		{completion(`\boxed{1}`, 4.5, 10, "eos")},
		{completion(`\boxed{9}`, 2.5, 12, "eos")},
		{completion(`x`, 2.0, 64, "length")},
	}
	recs, err := Score(items, groups)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(recs, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Label, s.DataName, s.Settings = "model-a", "toy", Settings{N: 1, MaxTokens: 64, System: DefaultSystem}
	return &Result{Summary: s, Records: recs}
}

func TestWriteDirRoundTrip(t *testing.T) {
	res := sampleResult(t)
	dir := filepath.Join(t.TempDir(), "out", "run")
	if err := WriteDir(dir, res); err != nil {
		t.Fatal(err)
	}
	if !IsResultDir(dir) {
		t.Fatal("IsResultDir = false after WriteDir")
	}
	s, err := ReadSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, res.Summary) {
		t.Errorf("summary round trip:\n got %+v\nwant %+v", s, res.Summary)
	}
	recs, err := ReadRecords(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(recs, res.Records) {
		t.Errorf("records round trip:\n got %+v\nwant %+v", recs, res.Records)
	}
	f, err := os.Open(filepath.Join(dir, HistogramFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("calibration.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 400 {
		t.Errorf("calibration.png is %dx%d, want a readable size", b.Dx(), b.Dy())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in the output directory: %v, want the three outputs and no temporary files", names)
	}
	if _, err := ReadSummary(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an evaluation output directory") {
		t.Errorf("empty dir: err = %v", err)
	}
}

func TestReportAndTable(t *testing.T) {
	a := sampleResult(t).Summary
	b := a
	b.Label, b.Accuracy, b.AccuracyLow, b.AccuracyHigh = "model-b", 0.25, 0.1, 0.5
	c := a
	c.DataName = "other"
	var buf bytes.Buffer
	if err := Report(&buf, a); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"model-a on toy", "33.3%", "Mann–Whitney U = 2.0", "66.7% extractable", "33.3% cut at max tokens"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := Table(&buf, []Summary{a, b, c}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(buf.String(), "\n")
	if len(lines) < 3 || !strings.HasPrefix(lines[0], "Model") || !strings.Contains(lines[0], "toy") || !strings.Contains(lines[0], "other") ||
		!strings.HasPrefix(lines[1], "model-a") || !strings.Contains(lines[1], "0.333 [") ||
		!strings.HasPrefix(lines[2], "model-b") || !strings.Contains(lines[2], "0.250 [0.100, 0.500]") || !strings.Contains(lines[2], "–") {
		t.Errorf("table:\n%s", buf.String())
	}
}
