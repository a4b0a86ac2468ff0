package train

import (
	"math"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

func TestRepetitionRate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens []int32
		n      int
		want   float64
	}{
		{"empty", nil, 4, 0},
		{"shorter than n", []int32{1, 2, 3}, 4, 0},
		{"one 4-gram", []int32{1, 2, 3, 4}, 4, 0},
		{"all distinct", []int32{1, 2, 3, 4, 5, 6}, 4, 0},
		// 1 2 3 4 1 2 3 4: 5 4-grams (1234 2341 3412 4123 1234), 4 distinct.
		{"a phrase twice", []int32{1, 2, 3, 4, 1, 2, 3, 4}, 4, 1.0 / 5},
		// seven 7s: 4 4-grams, all the same.
		{"one token looping", []int32{7, 7, 7, 7, 7, 7, 7}, 4, 3.0 / 4},
		// bigrams of 1 2 1 2 1: 12 21 12 21: 2 of 4 repeat.
		{"bigrams", []int32{1, 2, 1, 2, 1}, 2, 2.0 / 4},
		{"ids beyond a byte differ", []int32{256, 1, 256, 1, 1, 1, 256, 1}, 4, 0},
		{"n = 0", []int32{1, 2}, 0, 0},
	} {
		if got := RepetitionRate(tc.tokens, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: RepetitionRate(%v, %d) = %v, want %v", tc.name, tc.tokens, tc.n, got, tc.want)
		}
	}
}

func completions(texts ...string) []rollout.Completion {
	out := make([]rollout.Completion, len(texts))
	for i, s := range texts {
		out[i] = rollout.Completion{Text: s, Tokens: make([]int32, 4)} // four equal tokens: 0 repeated 4-grams
	}
	return out
}

func score(vals ...float64) []rewards.Score {
	out := make([]rewards.Score, len(vals))
	for i, v := range vals {
		out[i] = rewards.Score{Value: v, Applicable: !math.IsNaN(v)}
	}
	return out
}

// TestDiagnose checks every diagnostic against a hand-computed step of three groups of
// three completions.
func TestDiagnose(t *testing.T) {
	groups := []rewards.Group{
		// Gold 4: answers 4, 4, 5: plurality 4 (2 of 3), correct; 2 of 3 completions correct.
		{Prompt: "a", Fields: map[string]string{"answer": "4"}, Completions: completions(`\boxed{4}`, `\boxed{4}`, `\boxed{5}`)},
		// Gold 7: answers 1, 2, none: plurality 1 (first of a tie, 1 of 3), wrong; none
		// correct. The prompt states 1 and 6: answer 1 echoes it (1 of the 9 completions).
		{Prompt: "What is 1 + 6?", Fields: map[string]string{"answer": "#### 7"}, Completions: completions(`\boxed{1}`, `\boxed{2}`, "no answer")},
		// No gold: no answers at all: majority ratio 0; not counted in the accuracies.
		{Prompt: "c", Fields: map[string]string{}, Completions: completions("x", "y", "z")},
	}
	groups[0].Completions[0].Tokens = []int32{7, 7, 7, 7, 7, 7, 7} // repetition 3/4
	specs := []rewards.Spec{{Name: "acc"}, {Name: "fmt"}}
	nan := math.NaN()
	scores := [][][]rewards.Score{
		{score(1, 1, 0), score(0, 0, 0), score(nan, nan, nan)}, // acc: groups 2 and 3 flat
		{score(1, 1, 1), score(1, nan, 0), score(nan, 1, nan)}, // fmt: groups 1 and 3 flat
	}
	adv := [][]float64{{0.5, 0.5, -1}, {0, 0, 0}, {0, 0, 0}}
	// EMPO's filter at 1 nat: groups b and c (three singleton clusters each: ln 3 =
	// 1.0986) are masked, group a (−(⅔ ln ⅔ + ⅓ ln ⅓) = 0.6365) is not.
	d, err := diagnose(specs, &scoredBatch{Groups: groups, Scores: scores, Advantages: adv}, "answer", advantage.Options{EntropyFilterMax: 1})
	if err != nil {
		t.Fatal(err)
	}
	ha := -(2.0/3*math.Log(2.0/3) + 1.0/3*math.Log(1.0/3))
	want := map[string]float64{
		"reward/acc/zero_spread":      2.0 / 3,
		"reward/fmt/zero_spread":      2.0 / 3,
		"advantage/zero_spread":       2.0 / 3,
		"answer/majority_ratio":       (2.0/3 + 1.0/3 + 0) / 3,
		"completion/repetition_4gram": (3.0 / 4) / 9,
		"answer/echo_ratio":           1.0 / 9,
		"train/accuracy":              (2.0/3 + 0) / 2,
		"train/plurality_accuracy":    1.0 / 2,
		"answer/cluster_entropy":      (ha + 2*math.Log(3)) / 3,
		"advantage/entropy_masked":    2,
	}
	got := map[string]float64{}
	d.add(got)
	if len(got) != len(want) {
		t.Errorf("keys %v, want %v", got, want)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}

	// Without gold answers there is no accuracy to report.
	d, err = diagnose(specs, &scoredBatch{Groups: groups[2:], Scores: [][][]rewards.Score{scores[0][2:], scores[1][2:]}, Advantages: adv[2:]}, "answer", advantage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got = map[string]float64{}
	d.add(got)
	for _, k := range []string{"train/accuracy", "train/plurality_accuracy", "advantage/entropy_masked"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s present without gold answers or a filter", k)
		}
	}
}

// With TTRL's vote group the answer diagnostics are over all the votes, the reward and
// advantage ones over the training group: here the first two completions agree on a
// wrong answer while the four votes' plurality is right.
func TestDiagnoseVoteGroup(t *testing.T) {
	groups := []rewards.Group{{Prompt: "a", Fields: map[string]string{"answer": "4"},
		Completions: completions(`\boxed{5}`, `\boxed{5}`, `\boxed{4}`, `\boxed{4}`, `\boxed{4}`)}}
	specs := []rewards.Spec{{Name: "plurality_vote"}}
	scores := [][][]rewards.Score{{score(0, 0)}} // the training group: the first two
	adv := [][]float64{{0, 0}}
	d, err := diagnose(specs, &scoredBatch{Groups: groups, Scores: scores, Advantages: adv}, "answer", advantage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	d.add(got)
	for k, w := range map[string]float64{
		"train/plurality_accuracy":          1,       // the label over 5 votes is 4
		"train/accuracy":                    3.0 / 5, // 3 of the 5 votes are right
		"answer/majority_ratio":             3.0 / 5,
		"reward/plurality_vote/zero_spread": 1, // the training group's scores are flat
	} {
		if g := got[k]; math.Abs(g-w) > 1e-12 {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

// TestEvalMetrics checks the eval/ keys of a summary with both calibration classes and
// several samples per item, and that output.keep_best's key list is what they are.
func TestEvalMetrics(t *testing.T) {
	recs := []eval.Record{
		{Correct: true, Extractable: true, Extracted: "1", SelfCertainty: 3, Length: 10},
		{Correct: true, Extractable: true, Extracted: "1", SelfCertainty: 2, Length: 20},
		{Correct: false, Extractable: false, SelfCertainty: 1, Length: 30},
		{Correct: false, Extractable: true, Extracted: "2", SelfCertainty: 0, Length: 40},
	}
	s, err := eval.Summarize(recs, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := evalMetrics(s, 2, true)
	want := map[string]float64{
		"eval/accuracy": 0.5, "eval/extractable": 0.75, "eval/length": 25, "eval/self_certainty": 1.5, "eval/items": 2,
		"eval/calibration/auc":                      1, // every correct completion is more certain than every wrong one
		"eval/calibration/self_certainty_correct":   2.5,
		"eval/calibration/self_certainty_incorrect": 0.5,
		"eval/pass@1": 0.5, "eval/pass@2": 0.5, "eval/maj@2": 0.5,
	}
	for k, w := range want {
		if g, ok := m[k]; !ok || math.Abs(g-w) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}
	if r := m["eval/calibration/mann_whitney_r"]; !(r > 0) {
		t.Errorf("mann_whitney_r = %v, want > 0 (correct completions are more certain)", r)
	}
	keys := evalKeys(2, true)
	for k := range m {
		if !keys[k] {
			t.Errorf("evalKeys(2) lacks %s", k)
		}
	}
	if len(keys) != len(m) {
		t.Errorf("evalKeys(2) has %d keys, the summary %d", len(keys), len(m))
	}
	if keys := evalKeys(1, true); keys["eval/maj@1"] || keys["eval/pass@1"] || !keys["eval/calibration/auc"] {
		t.Errorf("evalKeys(1) = %v", keys)
	}
	// Without labels: what needs no gold answer, and nothing that does.
	u := evalMetrics(s, 2, false)
	for _, k := range []string{"eval/extractable", "eval/echo", "eval/length", "eval/self_certainty", "eval/items"} {
		if _, ok := u[k]; !ok {
			t.Errorf("unlabeled: no %s", k)
		}
	}
	for k := range u {
		if strings.Contains(k, "accuracy") || strings.Contains(k, "calibration") || strings.Contains(k, "@") {
			t.Errorf("unlabeled: %s needs labels", k)
		}
	}
	if keys := evalKeys(2, false); len(keys) != len(u) {
		t.Errorf("evalKeys(2, false) has %d keys, the summary %d", len(keys), len(u))
	}
}
