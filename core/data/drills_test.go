package data

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

var updateDrills = flag.Bool("update-drills", false, "rewrite data/arith_*.jsonl from DrillSplits and WordProblemsTest")

// drillJSONL is the committed form of a drill split: one {"answer","prompt"} object a line.
func drillJSONL(t *testing.T, rows []Row) []byte {
	var b bytes.Buffer
	for _, r := range rows {
		line, err := json.Marshal(map[string]string{"prompt": r.Prompt, "answer": r.Fields["answer"]})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	return b.Bytes()
}

// The committed drill files are exactly what the generator makes, the splits share no
// question, and every gold answer is the arithmetic of its question.
func TestDrillFiles(t *testing.T) {
	train, test := DrillSplits()
	root := testutil.RepoRoot(t)
	for _, f := range []struct {
		name string
		rows []Row
	}{{"arith_train.jsonl", train}, {"arith_test.jsonl", test}, {"arith_words_test.jsonl", WordProblemsTest()}} {
		p := filepath.Join(root, "data", f.name)
		want := drillJSONL(t, f.rows)
		if *updateDrills {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from DrillSplits (go test ./core/data -run TestDrillFiles -update-drills rewrites it)", p)
		}
	}
	inTrain := map[string]bool{}
	for _, r := range train {
		inTrain[r.Prompt] = true
	}
	if words := WordProblemsTest(); len(words) != 300 || words[0].Fields["source"] != "rlif-arithmetic" {
		t.Errorf("arith-words-test: %d rows, first %+v", len(words), words[0])
	}
	for _, r := range append(append([]Row(nil), train...), test...) {
		var a, b int
		var op rune
		if _, err := fmt.Sscanf(r.Prompt, "What is %d %c %d?", &a, &op, &b); err != nil {
			t.Fatalf("%q: %v", r.Prompt, err)
		}
		want := map[rune]int{'+': a + b, '-': a - b, '*': a * b}[op]
		if r.Fields["answer"] != strconv.Itoa(want) || want < 0 {
			t.Errorf("%q: answer %s, want %d", r.Prompt, r.Fields["answer"], want)
		}
	}
	for _, r := range test {
		if inTrain[r.Prompt] {
			t.Errorf("test question %q is also in the train split", r.Prompt)
		}
	}
}
