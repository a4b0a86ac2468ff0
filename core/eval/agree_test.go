package eval

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/builtin"
)

// TestMajorityAgreesWithPluralityVote checks that maj@k and the plurality_vote reward
// pick the same answer from the same completions: the completion that opened the
// majority cluster is the first one plurality_vote scores 1, every completion before
// it scores 0, and a group without answers is not applicable to the reward and has no
// majority.
func TestMajorityAgreesWithPluralityVote(t *testing.T) {
	vote, err := builtin.New(builtin.PluralityVote, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		gold  string
		texts []string
	}{
		{"clear majority", "3", []string{`\boxed{4}`, `\boxed{3}`, `so 3.0`, `\boxed{\frac{6}{2}}`}},
		{"tie goes to the first to appear", "3", []string{`\boxed{4}`, `\boxed{3}`, `\boxed{3}`, `\boxed{4}`}},
		{"tie after missing answers", "4", []string{`no idea`, `\boxed{}`, `\boxed{4}`, `\boxed{3}`, `\boxed{3}`, `#### 4`}},
		{"all distinct", "2", []string{`\boxed{1}`, `\boxed{2}`, `\boxed{5}`}},
		{"later cluster wins", "1/2", []string{`\boxed{9}`, `\boxed{0.5}`, `the answer is $\frac12$`, `\boxed{1/2}`}},
		{"not transitive: first answers decide", "1", []string{`\boxed{1.0000000018}`, `\boxed{1}`, `\boxed{1.0000000009}`, `\boxed{1.0000000009}`}},
		{"no answers", "1", []string{`nothing`, `\boxed{}`}},
		{"one completion", "7", []string{`\boxed{7}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := rewards.Group{Prompt: "q"}
			for _, text := range tt.texts {
				g.Completions = append(g.Completions, rollout.Completion{Text: text})
			}
			recs, err := Score([]Item{{Prompt: "q", Gold: tt.gold}}, [][]rollout.Completion{g.Completions})
			if err != nil {
				t.Fatal(err)
			}
			scores, err := vote.Score(context.Background(), []rewards.Group{g})
			if err != nil {
				t.Fatal(err)
			}
			j, ok := majority(recs)
			if !ok {
				for i, s := range scores[0] {
					if s.Applicable {
						t.Errorf("no majority answer, but plurality_vote scores completion %d %v", i, s.Value)
					}
				}
				if MajorityCorrect(recs) {
					t.Error("no majority answer, but MajorityCorrect is true")
				}
				return
			}
			for i, s := range scores[0][:j+1] {
				want := 0.0
				if i == j {
					want = 1
				}
				if !s.Applicable || s.Value != want {
					t.Errorf("majority answer is completion %d's (%q); plurality_vote scores completion %d %+v, want %v", j, recs[j].Extracted, i, s, want)
				}
			}
			if got := MajorityCorrect(recs); got != recs[j].Correct {
				t.Errorf("MajorityCorrect = %v, but the majority answer %q is correct: %v", got, recs[j].Extracted, recs[j].Correct)
			}
		})
	}
}

// TestBoxedAgreesWithFormatReward checks that an evaluation's boxed fraction counts
// what the format reward's default "boxed" layout scores 1.
func TestBoxedAgreesWithFormatReward(t *testing.T) {
	format, err := builtin.New(builtin.Format, nil)
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{`so \boxed{5}.`, `\fbox{5}`, `so \boxed 5`, `\boxed{5} then \boxed{ } and {x}`, `\boxed{5`, `5`}
	const wantBoxed = 3
	g := rewards.Group{Prompt: "q"}
	var items []Item
	var groups [][]rollout.Completion
	for i, text := range texts {
		c := rollout.Completion{Text: text}
		g.Completions = append(g.Completions, c)
		items = append(items, Item{Index: i, Prompt: "q", Gold: "5"})
		groups = append(groups, []rollout.Completion{c})
	}
	recs, err := Score(items, groups)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(recs, 1)
	if err != nil {
		t.Fatal(err)
	}
	scores, err := format.Score(context.Background(), []rewards.Group{g})
	if err != nil {
		t.Fatal(err)
	}
	formatted := 0
	for _, sc := range scores[0] {
		if sc.Value == 1 {
			formatted++
		}
	}
	if want := float64(wantBoxed) / float64(len(texts)); s.Boxed != want || formatted != wantBoxed {
		t.Errorf("boxed fraction %v and format reward %d of %d, want %v and %d", s.Boxed, formatted, len(texts), want, wantBoxed)
	}
}

// TestCorrectAgreesWithAccuracyReward checks that an evaluation counts correct the
// completions the accuracy reward scores 1, gold answers read from the same field.
func TestCorrectAgreesWithAccuracyReward(t *testing.T) {
	accuracy, err := builtin.New(builtin.Accuracy, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		texts []string
	}{
		{"She sells 3 a day.\n#### 18", []string{`\boxed{18}`, `#### 18.0`, `the answer is 17`, `no idea`, `\boxed{18} no, \boxed{19}`}},
		{`so $\boxed{\frac{1}{2}}$`, []string{`\boxed{0.5}`, `1/2`, `\boxed{\dfrac12}`, `\boxed{2}`}},
		{`(3, \frac{\pi}{2})`, []string{`\boxed{\left( 3, \frac{\pi}{2} \right)}`, `\boxed{(3,\pi)}`}},
	}
	for _, tt := range tests {
		path := filepath.Join(t.TempDir(), "items.jsonl")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(`{"prompt": "q", "answer": %q}`, tt.field)), 0o644); err != nil {
			t.Fatal(err)
		}
		items, err := LoadItems(path, DataOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g := rewards.Group{Prompt: "q", Fields: map[string]string{"answer": tt.field}}
		for _, text := range tt.texts {
			g.Completions = append(g.Completions, rollout.Completion{Text: text})
		}
		recs, err := Score(items, [][]rollout.Completion{g.Completions})
		if err != nil {
			t.Fatal(err)
		}
		scores, err := accuracy.Score(context.Background(), []rewards.Group{g})
		if err != nil {
			t.Fatal(err)
		}
		for j, r := range recs {
			if s := scores[0][j]; !s.Applicable || (s.Value == 1) != r.Correct {
				t.Errorf("gold %q, %q: evaluation correct %v, accuracy reward %+v", tt.field, r.Completion, r.Correct, s)
			}
		}
	}
}
