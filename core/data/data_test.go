package data

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/rewards/answer"
)

func TestLoadSharedData(t *testing.T) {
	for _, tc := range []struct {
		file, prompt string
		rows         int
	}{
		{"gsm8k_test.jsonl", "Janet", 1319},
		{"math500_test.jsonl", "", 500},
		{"math_train.jsonl", "", 7500},
	} {
		t.Run(tc.file, func(t *testing.T) {
			rows, err := Load(testutil.SharedData(t, tc.file), "")
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.rows {
				t.Fatalf("%d rows, want %d", len(rows), tc.rows)
			}
			if !strings.Contains(rows[0].Prompt, tc.prompt) || rows[0].Fields["answer"] == "" {
				t.Fatalf("row 1: %q fields %v", rows[0].Prompt, FieldNames(rows[0]))
			}
			if _, ok := rows[0].Fields["question"]; ok {
				t.Fatal("the prompt field is still among the other fields")
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	fifo := filepath.Join(dir, "pipe.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, field, want string
	}{
		{"missing file", filepath.Join(dir, "none.jsonl"), "", "no such file"},
		{"empty", write("empty.jsonl", "\n\n"), "", "no rows"},
		{"no prompt field", write("np.jsonl", `{"text": "hi", "answer": 1}`+"\n"), "", "none of the fields prompt, question, problem"},
		{"row without the field", write("row3.jsonl", `{"question": "a"}`+"\n"+`{"question": "b"}`+"\n"+`{"answer": "3"}`+"\n"), "", `row3.jsonl: line 3 has no "question"`},
		{"bad json", write("bad.jsonl", `{"question": "a"}`+"\n"+`{"question": `+"\n"), "", "line 2"},
		{"unknown format", write("d.csv", "a,b\n"), "", ".csv"},
		{"named field absent", write("nf.jsonl", `{"question": "a"}`+"\n"), "query", `line 1 has no "query"`},
		{"not parquet", write("x.parquet", "PAR1 but not really"), "", "parquet"},
		// A prompt is text: anything else would be trained on as its JSON spelling.
		{"number prompt", write("num.jsonl", `{"prompt": "a"}`+"\n"+`{"prompt": 12345, "answer": "4"}`+"\n"), "", `num.jsonl: line 2: field "prompt" is a number, not text`},
		{"null prompt", write("null.jsonl", `{"prompt": null, "answer": "4"}`+"\n"), "", `line 1: field "prompt" is null`},
		{"object prompt", write("obj.jsonl", `{"question": {"text": "hi"}}`+"\n"), "", `field "question" is an object`},
		{"array prompt", write("arr.jsonl", `{"prompt": ["hi"]}`+"\n"), "question", `line 1 has no "question"`},
		{"array prompt named", write("arr2.jsonl", `{"prompt": ["hi"]}`+"\n"), "prompt", `field "prompt" is an array`},
		{"boolean prompt", write("bool.jsonl", `{"prompt": true}`+"\n"), "", `field "prompt" is a boolean`},
		{"directory", dir, "", dir + " is a directory: give a JSONL or parquet file, or a named set (arith-test"},
		{"named pipe", fifo, "", fifo + " is a named pipe, not a regular file"},
		// Go's "cannot unmarshal array into Go value of type map[string]json.RawMessage"
		// and "unexpected end of JSON input" said neither what nor why.
		{"array line", write("arrline.jsonl", `{"prompt": "a"}`+"\n"+`["b", "c"]`+"\n"), "", "line 2: a JSON array, not an object: a JSONL file holds one JSON object per line"},
		{"one JSON array", write("all.json", `[{"prompt": "a"},`+"\n"+`{"prompt": "b"}]`+"\n"), "", "line 1: a JSON array, not an object"},
		{"string line", write("str.jsonl", `"just text"`+"\n"), "", `line 1: not a JSON object: "just text"`},
		{"null line", write("nl.jsonl", "null\n"), "", "line 1: not a JSON object: null"},
		// Bytes that are not UTF-8 became U+FFFD without a word.
		{"UTF-16", write("u16.jsonl", "\xff\xfe{\x00\"\x00"), "", "line 1: the file is UTF-16 text"},
		{"Latin-1", write("l1.jsonl", `{"prompt": "caf`+"\xe9"+`"}`+"\n"), "", "line 1 is not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path, tc.field)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A UTF-8 byte-order mark (Notepad, Excel) at the start of a JSONL file is not part of the
// first row ("invalid character 'ï'"); line numbers are unchanged.
func TestLoadSkipsByteOrderMark(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bom.jsonl")
	if err := os.WriteFile(p, []byte("\xef\xbb\xbf"+`{"prompt": "a", "answer": 4}`+"\n"+`{"prompt": "b"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := Load(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Prompt != "a" || rows[0].Fields["answer"] != "4" || rows[0].Line != 1 || rows[1].Line != 2 {
		t.Fatalf("rows %+v", rows)
	}
	// Only at the start: further in, it is a character of the row (here, a bad one).
	if err := os.WriteFile(p, []byte(`{"prompt": "a"}`+"\n\xef\xbb\xbf"+`{"prompt": "b"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, ""); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a mark on line 2: error %v, want one naming line 2", err)
	}
}

// A gold answer may be text or a number (read as written); an object or an array is
// refused, naming the file, the row and the field. Other fields may hold anything (a
// plugin may read structured fields as JSON text).
func TestCheckAnswerField(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.jsonl")
	body := `{"prompt": "a", "answer": 4, "tests": [1, 2]}` + "\n" + `{"prompt": "b", "answer": "x", "meta": {"k": 1}}` + "\n" + `{"prompt": "c", "answer": {"value": 3}}` + "\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := Load(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Fields["answer"] != "4" || rows[0].Fields["tests"] != "[1, 2]" || rows[1].Fields["meta"] != `{"k": 1}` {
		t.Fatalf("fields %v %v", rows[0].Fields, rows[1].Fields)
	}
	if err := CheckAnswerField(p, rows[:2], "answer"); err != nil {
		t.Fatalf("text and number answers: %v", err)
	}
	if err := CheckAnswerField(p, rows[:2], "tests"); err == nil {
		t.Fatal("an array as the gold answer accepted")
	}
	want := p + `: line 3: field "answer" (the gold answer) is an object`
	if err := CheckAnswerField(p, rows, "answer"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}

// Rows remember their line (blank lines counted) so that later checks can name it; a line
// longer than any reader buffer (70 MB here; bufio.Scanner stopped at 64 MB with "token
// too long") is read whole.
func TestLoadLinesOfAnyLength(t *testing.T) {
	long := strings.Repeat("x", 70<<20)
	p := filepath.Join(t.TempDir(), "long.jsonl")
	body := "\n" + `{"question": "short", "answer": "1"}` + "\n\n" + `{"question": "` + long + `", "answer": "2"}` + "\n" + `{"question": "last"}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, err := Load(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1].Prompt != long || rows[1].Fields["answer"] != "2" || rows[2].Prompt != "last" {
		t.Fatalf("%d rows; row 2 prompt of %d bytes, answer %q", len(rows), len(rows[1].Prompt), rows[1].Fields["answer"])
	}
	for i, want := range []int{2, 4, 5} {
		if rows[i].Line != want {
			t.Errorf("row %d: line %d, want %d", i+1, rows[i].Line, want)
		}
	}
	for _, tc := range []struct {
		path string
		line int
		want string
	}{{p, 4, "line 4"}, {"x.PARQUET", 4, "row 4"}, {"", 4, "problem 4"}} {
		if got := Where(tc.path, tc.line); got != tc.want {
			t.Errorf("Where(%q, %d) = %q, want %q", tc.path, tc.line, got, tc.want)
		}
	}
}

// A parquet file with the same rows as a JSONL file loads to the same rows.
func TestParquetMatchesJSONL(t *testing.T) {
	jsonl := testutil.SharedData(t, "math500_test.jsonl")
	want, err := Load(jsonl, "problem")
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		Problem string `parquet:"problem"`
		Answer  string `parquet:"answer"`
		Level   int64  `parquet:"level"`
	}
	recs := make([]rec, len(want))
	for i, r := range want {
		lvl, _ := strconv.ParseInt(r.Fields["level"], 10, 64)
		recs[i] = rec{Problem: r.Prompt, Answer: r.Fields["answer"], Level: lvl}
	}
	p := filepath.Join(t.TempDir(), "math500.parquet")
	f, _ := os.Create(p)
	if err := parquet.Write(f, recs); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := Load(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Prompt != want[i].Prompt || got[i].Fields["answer"] != want[i].Fields["answer"] || got[i].Fields["level"] != want[i].Fields["level"] || got[i].Line != i+1 {
			t.Fatalf("row %d differs: %+v vs %+v", i+1, got[i], want[i])
		}
	}
}

func TestOrderIsSeededAndResumable(t *testing.T) {
	o := NewOrder(10, 7, true)
	var first [][]int
	for i := 0; i < 7; i++ {
		first = append(first, o.Next(3)) // 21 rows: crosses two epoch boundaries
	}
	// The first epoch is a permutation: rows 0..9 each once among the first 10 picks.
	flat := append(append(append([]int{}, first[0]...), first[1]...), first[2]...)
	flat = append(flat, first[3][0])
	count := map[int]int{}
	for _, i := range flat {
		count[i]++
	}
	if len(count) != 10 {
		t.Fatalf("first epoch %v is not a permutation of 10 rows", flat)
	}
	// Same seed, same order; resuming from a stored position continues identically.
	o2 := NewOrder(10, 7, true)
	for i := 0; i < 4; i++ {
		o2.Next(3)
	}
	o3 := NewOrder(10, 7, true)
	o3.Seek(o2.Pos)
	for i := 4; i < 7; i++ {
		if got := o3.Next(3); !reflect.DeepEqual(got, first[i]) {
			t.Fatalf("batch %d after resume %v, want %v", i, got, first[i])
		}
	}
	if reflect.DeepEqual(NewOrder(10, 8, true).Next(10), NewOrder(10, 7, true).Next(10)) {
		t.Fatal("seeds 7 and 8 give the same order")
	}
	if got := NewOrder(4, 1, false).Next(6); !reflect.DeepEqual(got, []int{0, 1, 2, 3, 0, 1}) {
		t.Fatalf("unshuffled order %v", got)
	}
	if StepsFor(10, 3, 2) != 7 {
		t.Fatal("StepsFor")
	}
	// n*epochs overflowed into a negative step count.
	if got := StepsFor(2, 1, 9_000_000_000_000_000_000); got != 1<<53 {
		t.Fatalf("StepsFor of 9e18 epochs = %d, want 2^53", got)
	}
}

func TestArithmetic(t *testing.T) {
	a, b := Arithmetic(200, 3), Arithmetic(200, 3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different problems")
	}
	if reflect.DeepEqual(a, Arithmetic(200, 4)) {
		t.Fatal("different seeds, same problems")
	}
	distinct := map[string]bool{}
	for _, r := range a {
		distinct[r.Prompt] = true
		n, err := strconv.Atoi(r.Fields["answer"])
		if err != nil || n < 0 || !strings.HasSuffix(r.Prompt, "?") {
			t.Fatalf("problem %q answer %q", r.Prompt, r.Fields["answer"])
		}
		// The gold answer goes through the same checking as the accuracy reward.
		got, ok := answer.Extract("So the total is \\boxed{" + r.Fields["answer"] + "}.")
		if !ok || !answer.Equivalent(got, answer.Gold(r.Fields["answer"])) {
			t.Fatalf("gold %q does not check against itself", r.Fields["answer"])
		}
	}
	if len(distinct) < 190 {
		t.Fatalf("only %d distinct problems of 200", len(distinct))
	}
}

// A parquet column that is not a string is no prompt either.
func TestParquetNumberPrompt(t *testing.T) {
	type rec struct {
		Prompt int64  `parquet:"prompt"`
		Answer string `parquet:"answer"`
	}
	p := filepath.Join(t.TempDir(), "n.parquet")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := parquet.Write(f, []rec{{12345, "4"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want := `row 1: field "prompt" is a number, not text`
	if _, err := Load(p, ""); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}
