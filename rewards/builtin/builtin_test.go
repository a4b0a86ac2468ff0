package builtin

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

func completion(text string, selfCertainty, entropy []float64) rollout.Completion {
	c := rollout.Completion{Text: text}
	for i := range selfCertainty {
		c.Append(int32(i), rollout.TokenStats{SelfCertainty: selfCertainty[i], Entropy: entropy[i]})
	}
	c.Finalize()
	return c
}

func texts(ts ...string) rewards.Group {
	g := rewards.Group{Prompt: "q"}
	for _, t := range ts {
		g.Completions = append(g.Completions, rollout.Completion{Text: t})
	}
	return g
}

func score(t *testing.T, name string, args map[string]any, groups ...rewards.Group) [][]rewards.Score {
	t.Helper()
	f, err := New(name, args)
	if err != nil {
		t.Fatalf("New(%q, %v): %v", name, args, err)
	}
	out, err := f.Score(context.Background(), groups)
	if err != nil {
		t.Fatalf("%s.Score: %v", name, err)
	}
	if len(out) != len(groups) {
		t.Fatalf("%s: %d score rows for %d groups", name, len(out), len(groups))
	}
	for i := range groups {
		if len(out[i]) != len(groups[i].Completions) {
			t.Fatalf("%s: group %d: %d scores for %d completions", name, i, len(out[i]), len(groups[i].Completions))
		}
	}
	return out
}

// want builds expected scores; NaN stands for "not applicable".
func want(vs ...float64) []rewards.Score {
	out := make([]rewards.Score, len(vs))
	for i, v := range vs {
		if math.IsNaN(v) {
			out[i] = rewards.NA()
		} else {
			out[i] = rewards.Of(v)
		}
	}
	return out
}

var na = math.NaN()

func assertScores(t *testing.T, label string, got, exp []rewards.Score) {
	t.Helper()
	if len(got) != len(exp) {
		t.Fatalf("%s: %d scores, want %d", label, len(got), len(exp))
	}
	for i := range got {
		if got[i].Applicable != exp[i].Applicable || math.Abs(got[i].Value-exp[i].Value) > 1e-12 {
			t.Errorf("%s: completion %d = %+v, want %+v", label, i, got[i], exp[i])
		}
	}
}

func TestTokenMeans(t *testing.T) {
	g := rewards.Group{Completions: []rollout.Completion{
		completion("a", []float64{1, 2, 6}, []float64{0.5, 1.5, 1}),
		completion("", nil, nil),
		completion("b", []float64{4}, []float64{2}),
	}}
	assertScores(t, "self_certainty", score(t, SelfCertainty, nil, g)[0], want(3, na, 4))
	assertScores(t, "entropy", score(t, Entropy, nil, g)[0], want(-1, na, -2))
}

func TestTokenMeansRejectNonFinite(t *testing.T) {
	g := rewards.Group{Completions: []rollout.Completion{completion("a", []float64{1, math.NaN()}, []float64{1, 1})}}
	f, _ := New(SelfCertainty, nil)
	if _, err := f.Score(context.Background(), []rewards.Group{g}); err == nil || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("NaN self-certainty: err = %v, want a 'not finite' error", err)
	}
}

func TestSemanticEntropy(t *testing.T) {
	tests := []struct {
		name  string
		group rewards.Group
		want  []rewards.Score
	}{
		{"clusters by equivalence",
			texts(`\boxed{\frac12}`, "The answer is 0.5.", `\boxed{2}`, `\boxed{1/2}`, "no idea", `\boxed{2.0}`),
			want(3.0/6, 3.0/6, 2.0/6, 3.0/6, 0, 2.0/6)},
		{"all distinct", texts(`\boxed{1}`, `\boxed{2}`, `\boxed{3}`), want(0, 0, 0)},
		{"all distinct with a missing answer", texts(`\boxed{1}`, "nothing", `\boxed{3}`), want(0, 0, 0)},
		{"unanimous", texts(`\boxed{7}`, "#### 7", `so 7`), want(1, 1, 1)},
		{"no answers", texts("a", "b"), want(0, 0)},
		{"missing answers count in G but are no cluster", texts("a", "b", `\boxed{5}`, `\boxed{5}`), want(0, 0, 0.5, 0.5)},
		{"empty group", texts(), want()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, tt.name, score(t, SemanticEntropy, nil, tt.group)[0], tt.want)
		})
	}
}

func TestPluralityVote(t *testing.T) {
	tests := []struct {
		name  string
		group rewards.Group
		want  []rewards.Score
	}{
		{"majority", texts(`\boxed{3}`, `\boxed{4}`, `\boxed{3.0}`, "none", `\boxed{\frac{6}{2}}`), want(1, 0, 1, 0, 1)},
		{"tie goes to the first to appear", texts(`\boxed{4}`, `\boxed{3}`, `\boxed{3}`, `\boxed{4}`), want(1, 0, 0, 1)},
		{"missing answers do not vote", texts("none", "none", `\boxed{8}`), want(0, 0, 1)},
		{"all distinct: the first is the label", texts(`\boxed{1}`, `\boxed{2}`), want(1, 0)},
		{"no answers at all", texts("a", "b"), want(na, na)},
		{"tuples", texts(`\boxed{(1,2)}`, `\boxed{(1, 2)}`, `\boxed{[1,2]}`), want(1, 1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, tt.name, score(t, PluralityVote, nil, tt.group)[0], tt.want)
		})
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name string
		args map[string]any
		text string
		want float64
	}{
		{"default boxed", nil, `so \boxed{5}.`, 1},
		{"default no boxed", nil, `so 5.`, 0},
		{"default empty boxed", nil, `\boxed{}`, 0},
		{"boxed layout", map[string]any{"layout": "boxed"}, `$\boxed{\frac{1}{2}}$`, 1},
		// The boxed layout reads boxes as the answer rewards do (answer.Boxed).
		{"boxed layout fbox", nil, `\fbox{5}`, 1},
		{"boxed layout spaced form", nil, `so \boxed 5`, 1},
		{"boxed layout no answer left", nil, `\boxed{\text{}}`, 0},
		{"boxed layout last box empty", nil, `\boxed{5} then \boxed{ } and {x}`, 0},
		{"think answer", map[string]any{"layout": "think_answer"}, "<think>\nsteps\n</think>\n<answer>\n5\n</answer>", 1},
		{"think answer missing answer", map[string]any{"layout": "think_answer"}, "<think>steps</think> 5", 0},
		{"think answer trailing text", map[string]any{"layout": "think_answer"}, "<think>s</think><answer>5</answer> more", 0},
		{"custom pattern", map[string]any{"pattern": `^Answer: \d+$`}, "Answer: 12", 1},
		{"custom pattern miss", map[string]any{"pattern": `^Answer: \d+$`}, "Answer: twelve", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertScores(t, tt.name, score(t, Format, tt.args, texts(tt.text))[0], want(tt.want))
		})
	}
}

func TestAccuracy(t *testing.T) {
	math500 := texts(`\boxed{\left( 3, \frac{\pi}{2} \right)}`, `\boxed{(3, \pi/2)}`, `The answer is $(3, \frac{\pi}{2})$.`, `\boxed{(3,\pi)}`)
	math500.Fields = map[string]string{"answer": `\left( 3, \frac{\pi}{2} \right)`}
	gsm := texts("She makes $18 every day.", `\boxed{18}`, "#### 19")
	gsm.Fields = map[string]string{"answer": "Janet sells 9 duck eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"}
	noGold := texts(`\boxed{1}`, `\boxed{2}`)
	noGold.Fields = map[string]string{"question": "?"}
	emptyGold := texts(`\boxed{1}`)
	emptyGold.Fields = map[string]string{"answer": "  "}
	out := score(t, Accuracy, nil, math500, gsm, noGold, emptyGold)
	assertScores(t, "math500", out[0], want(1, 1, 1, 0))
	assertScores(t, "gsm8k", out[1], want(1, 1, 0))
	assertScores(t, "no gold field", out[2], want(na, na))
	assertScores(t, "empty gold field", out[3], want(na))

	other := texts(`\boxed{7}`, `\boxed{8}`)
	other.Fields = map[string]string{"answer": "1", "label": "#### 8"}
	assertScores(t, "field arg", score(t, Accuracy, map[string]any{"field": "label"}, other)[0], want(0, 1))
}

func TestArgErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    map[string]any
		mention string
	}{
		{SelfCertainty, map[string]any{"temperature": 1.0}, `"temperature"`},
		{Entropy, map[string]any{"x": 1}, `"x"`},
		{SemanticEntropy, map[string]any{"field": "answer"}, `"field"`},
		{PluralityVote, map[string]any{"ties": "last"}, `"ties"`},
		{Entropy, map[string]any{"window": "middle"}, `"middle"`},
		{Entropy, map[string]any{"window": "last"}, `"k"`},
		{SelfCertainty, map[string]any{"window": "last", "k": int64(0)}, `"k"`},
		{SelfCertainty, map[string]any{"window": "last", "k": 2.5}, `"k"`},
		{SelfCertainty, map[string]any{"window": "answer", "k": int64(3)}, `"k"`},
		{SelfCertainty, map[string]any{"k": int64(3)}, `"k"`},
		{TrajectoryEntropy, map[string]any{"aggregate": "max"}, `"max"`},
		{TrajectoryEntropy, map[string]any{"window": "last"}, `"window"`},
		{SequenceProbability, map[string]any{"aggregate": "sum"}, `"aggregate"`},
		{PluralityVote, map[string]any{"vote_n": int64(1)}, `"vote_n"`},
		{PluralityVote, map[string]any{"vote_n": 8.5}, `"vote_n"`},
		{PluralityVote, map[string]any{"vote_n": "8"}, `"vote_n"`},
		{PluralityVote, map[string]any{"mode": "majority"}, `"majority"`},
		{PluralityVote, map[string]any{"field": "label"}, `"field"`},
		{PluralityVote, map[string]any{"mode": "hybrid", "field": ""}, `"field"`},
		{Format, map[string]any{"patern": "x"}, `"patern"`},
		{Format, map[string]any{"layout": "xml"}, `"xml"`},
		{Format, map[string]any{"pattern": "("}, `"pattern"`},
		{Format, map[string]any{"pattern": 3.0}, `"pattern"`},
		{Format, map[string]any{"pattern": "x", "layout": "boxed"}, `"layout"`},
		{Accuracy, map[string]any{"fields": "answer"}, `"fields"`},
		{Accuracy, map[string]any{"field": ""}, `"field"`},
		{"no_such_reward", nil, `"no_such_reward"`},
	}
	for _, tt := range tests {
		_, err := New(tt.name, tt.args)
		if err == nil {
			t.Errorf("New(%q, %v): no error", tt.name, tt.args)
			continue
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("New(%q, %v) error %q does not name %s", tt.name, tt.args, err, tt.mention)
		}
	}
}

func TestRegistry(t *testing.T) {
	bs := Builtins()
	wantNames := []string{Accuracy, Entropy, Format, PluralityVote, SelfCertainty, SemanticEntropy, SequenceProbability, TrajectoryEntropy}
	if len(bs) != len(wantNames) {
		t.Fatalf("%d built-ins, want %d", len(bs), len(wantNames))
	}
	for i, b := range bs {
		if b.Name != wantNames[i] {
			t.Errorf("built-in %d is %q, want %q", i, b.Name, wantNames[i])
		}
		if b.Summary == "" || b.New == nil {
			t.Errorf("%s: missing summary or constructor", b.Name)
		}
		for _, a := range b.Args {
			if a.Name == "" || a.Type == "" || a.Doc == "" {
				t.Errorf("%s: incomplete argument %+v", b.Name, a)
			}
		}
		if _, err := b.New(nil); err != nil {
			t.Errorf("%s with default args: %v", b.Name, err)
		}
		got, ok := Lookup(b.Name)
		if !ok || got.Name != b.Name {
			t.Errorf("Lookup(%q) = %q, %v", b.Name, got.Name, ok)
		}
	}
	if _, ok := Lookup("nope"); ok {
		t.Error(`Lookup("nope") found something`)
	}
	// The slice is fresh: changing it changes nothing for the next caller.
	bs[0].Name = "changed"
	if Builtins()[0].Name != wantNames[0] {
		t.Error("Builtins returned shared state")
	}
}

func TestCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, b := range Builtins() {
		f, err := b.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Score(ctx, []rewards.Group{texts("x")}); err == nil {
			t.Errorf("%s: no error on a canceled context", b.Name)
		}
	}
}

// benchGroup returns one group of 64 completions of 256 tokens each, with distinct
// answers (the worst case for clustering) or 4 answers repeated.
func benchGroup(distinct bool) []rewards.Group {
	g := rewards.Group{Fields: map[string]string{"answer": "#### 17"}}
	for j := 0; j < 64; j++ {
		ans := j
		if !distinct {
			ans = j % 4
		}
		sc := make([]float64, 256)
		c := completion("", sc, sc)
		c.Text = strings.Repeat("Let me think step by step about this. ", 20) +
			"So the result is $\\boxed{\\frac{" + strconv.Itoa(ans+1) + "}{2}}$."
		g.Completions = append(g.Completions, c)
	}
	return []rewards.Group{g}
}

func benchmarkReward(b *testing.B, name string, distinct bool) {
	f, err := New(name, nil)
	if err != nil {
		b.Fatal(err)
	}
	groups := benchGroup(distinct)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Score(context.Background(), groups); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSemanticEntropy64Distinct(b *testing.B) { benchmarkReward(b, SemanticEntropy, true) }
func BenchmarkSemanticEntropy64Repeated(b *testing.B) { benchmarkReward(b, SemanticEntropy, false) }
func BenchmarkPluralityVote64Distinct(b *testing.B)   { benchmarkReward(b, PluralityVote, true) }
func BenchmarkAccuracy64(b *testing.B)                { benchmarkReward(b, Accuracy, true) }
func BenchmarkSelfCertainty64(b *testing.B)           { benchmarkReward(b, SelfCertainty, true) }

func TestValidateSpec(t *testing.T) {
	tests := []struct {
		spec    rewards.Spec
		mention string
	}{
		{rewards.Spec{Name: Accuracy}, ""},
		{rewards.Spec{Name: Format, Args: map[string]any{"layout": "think_answer"}}, ""},
		{rewards.Spec{Name: "acuracy"}, `acuracy: no built-in`},
		{rewards.Spec{Name: Format, Args: map[string]any{"layout": "html"}}, `reward format: argument "layout"`},
		{rewards.Spec{Name: Accuracy, Normalize: "zscore"}, `normalize "zscore"`},
	}
	for _, tt := range tests {
		err := ValidateSpec(tt.spec)
		switch {
		case tt.mention == "" && err != nil:
			t.Errorf("%+v: %v", tt.spec, err)
		case tt.mention != "" && (err == nil || !strings.Contains(err.Error(), tt.mention)):
			t.Errorf("%+v: error %v, want one mentioning %q", tt.spec, err, tt.mention)
		}
	}
}
