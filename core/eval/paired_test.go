package eval

import (
	"math"
	"strings"
	"testing"
)

func recs(correct ...bool) []Record {
	out := make([]Record, len(correct))
	for i, c := range correct {
		out[i] = Record{Index: i, Prompt: "q" + string(rune('a'+i)), Correct: c}
	}
	return out
}

func TestPair(t *testing.T) {
	// Items 0-1 right in both, 2 only in the first, 3-5 only in the second, 6 in neither.
	a := recs(true, true, true, false, false, false, false)
	b := recs(true, true, false, true, true, true, false)
	p, err := Pair(a, b)
	if err != nil {
		t.Fatal(err)
	}
	// binom.test(1, 4) in R: p = 0.625 (2·(1+4)/16).
	if p.Items != 7 || p.FirstOnly != 1 || p.SecondOnly != 3 || math.Abs(p.Delta-2.0/7) > 1e-12 || math.Abs(p.P-0.625) > 1e-12 {
		t.Errorf("Pair = %+v, want 7 items, 1 and 3 discordant, Δ 2/7, p 0.625", p)
	}
	// Order of the records does not matter; the item key does.
	rev := append([]Record(nil), b...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if q, err := Pair(a, rev); err != nil || q != p {
		t.Errorf("reversed records: %+v, %v; want %+v", q, err, p)
	}

	multi := append(recs(true), Record{Index: 0, Sample: 1, Prompt: "qa"})
	other := recs(true, false)
	other[1].Prompt = "another question"
	for _, tc := range []struct {
		name   string
		a, b   []Record
		substr string
	}{
		{"several samples", multi, recs(true), "one"},
		{"different sizes", recs(true, false), recs(true), "2 items against 1"},
		{"different items", recs(true, false), other, "one evaluation only"},
	} {
		if _, err := Pair(tc.a, tc.b); err == nil || !strings.Contains(err.Error(), tc.substr) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.substr)
		}
	}
}
