package advantage

import (
	"math"
	"math/rand"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// s builds scores; NaN stands for "not applicable".
func s(vs ...float64) []rewards.Score {
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

var huge = 1e308

func near(t *testing.T, label string, got, want [][]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d groups, want %d", label, len(got), len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("%s: group %d: %d values, want %d", label, i, len(got[i]), len(want[i]))
		}
		for j := range want[i] {
			if math.Abs(got[i][j]-want[i][j]) > 1e-12 {
				t.Errorf("%s: [%d][%d] = %.17g, want %.17g", label, i, j, got[i][j], want[i][j])
			}
		}
	}
}

func w(x float64) *float64 { return &x }

// The expected values below were computed by hand (and checked in a calculator):
// for [1, 2, 3, 6] the mean is 3, the unbiased variance (4+1+0+9)/3 = 14/3, the std
// √(14/3) = 2.160246899469287, and each advantage is (r − 3)/(2.160246899469287 + 1e-4).
func TestNormalize(t *testing.T) {
	tests := []struct {
		name   string
		scores [][]rewards.Score
		mode   string
		want   [][]float64
	}{
		{"group N-1 std", [][]rewards.Score{s(1, 2, 3, 6)}, rewards.NormalizeGroup,
			[][]float64{{-0.9257772446135025, -0.46288862230675126, 0, 1.3886658669202538}}},
		{"default mode is group", [][]rewards.Score{s(1, 2, 3, 6)}, "",
			[][]float64{{-0.9257772446135025, -0.46288862230675126, 0, 1.3886658669202538}}},
		// [1, n/a, 3]: mean 2, std √2, advantages ±1/(√2 + 1e-4); n/a gets 0.
		{"n/a left out", [][]rewards.Score{s(1, na, 3)}, rewards.NormalizeGroup,
			[][]float64{{-0.7070567847218314, 0, 0.7070567847218314}}},
		{"one applicable", [][]rewards.Score{s(na, 5, na)}, rewards.NormalizeGroup, [][]float64{{0, 0, 0}}},
		{"none applicable", [][]rewards.Score{s(na, na)}, rewards.NormalizeGroup, [][]float64{{0, 0}}},
		{"group of one", [][]rewards.Score{s(7)}, rewards.NormalizeGroup, [][]float64{{0}}},
		{"equal scores", [][]rewards.Score{s(2, 2, 2)}, rewards.NormalizeGroup, [][]float64{{0, 0, 0}}},
		{"groups are independent", [][]rewards.Score{s(1, 3), s(10, 10, 40)}, rewards.NormalizeGroup,
			// group 2: mean 20, std √((100+100+400)/2) = √300 = 17.320508075688775
			[][]float64{{-0.7070567847218314, 0.7070567847218314}, {-10 / (17.320508075688775 + 1e-4), -10 / (17.320508075688775 + 1e-4), 20 / (17.320508075688775 + 1e-4)}}},
		// batch: values 0,1,0,0,1,1 → std √(1.5/5) = 0.5477225575051661; group means 0.5.
		{"batch std, group mean", [][]rewards.Score{s(0, 1), s(0, 0, 1, 1)}, rewards.NormalizeBatch,
			[][]float64{{-0.9127042929320867, 0.9127042929320867}, {-0.9127042929320867, -0.9127042929320867, 0.9127042929320867, 0.9127042929320867}}},
		{"batch leaves n/a out", [][]rewards.Score{s(0, na, 1), s(na, 0, 0, 1, 1)}, rewards.NormalizeBatch,
			[][]float64{{-0.9127042929320867, 0, 0.9127042929320867}, {0, -0.9127042929320867, -0.9127042929320867, 0.9127042929320867, 0.9127042929320867}}},
		{"none centers only", [][]rewards.Score{s(1, 2, 3, 6), s(na, 4)}, rewards.NormalizeNone,
			[][]float64{{-2, -1, 0, 3}, {0, 0}}},
		{"raw", [][]rewards.Score{s(1, na, 3)}, rewards.NormalizeRaw, [][]float64{{1, 0, 3}}},
		{"empty batch", nil, rewards.NormalizeGroup, [][]float64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.scores, tt.mode, Epsilon)
			if err != nil {
				t.Fatal(err)
			}
			near(t, tt.name, got, tt.want)
		})
	}
}

func TestNormalizeErrors(t *testing.T) {
	if _, err := Normalize([][]rewards.Score{s(1, 2)}, "zscore", Epsilon); err == nil || !strings.Contains(err.Error(), `"zscore"`) {
		t.Errorf("bad mode: err = %v", err)
	}
	for _, bad := range []float64{math.Inf(1), math.Inf(-1)} {
		if _, err := Normalize([][]rewards.Score{{rewards.Of(1), rewards.Of(bad)}}, rewards.NormalizeGroup, Epsilon); err == nil || !strings.Contains(err.Error(), "group 0 completion 1") {
			t.Errorf("score %v: err = %v", bad, err)
		}
	}
	if _, err := Normalize([][]rewards.Score{{rewards.Of(math.NaN())}}, rewards.NormalizeRaw, Epsilon); err == nil {
		t.Error("NaN score accepted")
	}
	// A NaN that is marked not applicable is ignored.
	if _, err := Normalize([][]rewards.Score{{{Value: math.NaN()}}}, rewards.NormalizeGroup, Epsilon); err != nil {
		t.Errorf("n/a NaN: %v", err)
	}
}

func TestComputeSum(t *testing.T) {
	specs := []rewards.Spec{{Name: "accuracy"}, {Name: "format", Weight: w(0.5)}}
	// accuracy [0,1,1]: mean 2/3, std √(1/3); format [3,n/a,1]: mean 2, std √2.
	scores := [][][]rewards.Score{{s(0, 1, 1)}, {s(3, na, 1)}}
	got, err := Compute(specs, scores, Options{})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "sum", got, [][]float64{{-0.8009721806533531, 0.5772502865071344, 0.22372189414621868}})

	// Weight 0 switches a reward off; a negative weight flips it.
	specs[1].Weight = w(0)
	got, _ = Compute(specs, scores, Options{Mix: MixSum})
	near(t, "weight 0", got, [][]float64{{-2.0 / 3 / (0.5773502691896258 + 1e-4), 1.0 / 3 / (0.5773502691896258 + 1e-4), 1.0 / 3 / (0.5773502691896258 + 1e-4)}})
	specs[1].Weight = w(-1)
	got, _ = Compute(specs, scores, Options{})
	k := 1 / (math.Sqrt2 + 1e-4)
	near(t, "weight -1", got, [][]float64{{-2.0/3/(0.5773502691896258+1e-4) - k, 1.0 / 3 / (0.5773502691896258 + 1e-4), 1.0/3/(0.5773502691896258+1e-4) + k}})

	// Per-reward modes apply independently.
	specs = []rewards.Spec{{Name: "a", Normalize: rewards.NormalizeRaw}, {Name: "b", Normalize: rewards.NormalizeNone, Weight: w(2)}}
	got, _ = Compute(specs, [][][]rewards.Score{{s(1, 2)}, {s(1, 5)}}, Options{})
	near(t, "raw + none", got, [][]float64{{1 - 4, 2 + 4}})
}

func TestComputeEpsilonOption(t *testing.T) {
	got, err := Compute([]rewards.Spec{{Name: "r"}}, [][][]rewards.Score{{s(1, 3)}}, Options{Epsilon: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "eps 0.5", got, [][]float64{{-1 / (math.Sqrt2 + 0.5), 1 / (math.Sqrt2 + 0.5)}})
}

func TestComputeIntuitor(t *testing.T) {
	specs := []rewards.Spec{
		{Name: "self_certainty"},
		{Name: "accuracy", Weight: w(2)},
		{Name: "format"},
	}
	scores := [][][]rewards.Score{
		{s(1, 2, 3)},  // mean 2, std 1 → (r−2)/1.0001
		{s(1, 0, na)}, // weighted ×2
		{s(1, 1, 0)},  // sum of others: [3, 1, 0], mean 4/3, std √(7/3)
	}
	got, err := Compute(specs, scores, Options{Mix: MixIntuitor})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "intuitor", got, [][]float64{{0.09111801728532476, -0.21820360545686496, 0.12708558817154025}})

	// The same scores mixed as a sum differ: each reward is normalized on its own.
	sum, err := Compute(specs, scores, Options{Mix: MixSum})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sum[0][0]-got[0][0]) < 1e-3 {
		t.Errorf("sum and intuitor mixes agree (%v, %v): the test does not tell them apart", sum, got)
	}

	// Self-certainty alone: Intuitor is GRPO on self-certainty.
	only, err := Compute(specs[:1], scores[:1], Options{Mix: MixIntuitor})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "self-certainty alone", only, [][]float64{{-1 / 1.0001, 0, 1 / 1.0001}})

	// A completion to which no other reward applies is left out of the sum's statistics.
	specs2 := []rewards.Spec{{Name: "self_certainty", Weight: w(0)}, {Name: "accuracy"}}
	got2, err := Compute(specs2, [][][]rewards.Score{{s(1, 2, 3)}, {s(1, na, 3)}}, Options{Mix: MixIntuitor})
	if err != nil {
		t.Fatal(err)
	}
	near(t, "intuitor n/a", got2, [][]float64{{-0.7070567847218314, 0, 0.7070567847218314}})
}

// The intuitor mix normalizes the weighted sum of the other rewards as one, so their
// weights only set their ratios: scaling them all changes nothing, and with one other
// reward its weight only flips the sign. This is the reference implementation's rule
// (A = w_sc·z(SC) + z(Σ w·r)), kept on purpose; the sum mix, where each reward is
// normalized on its own and then weighted, is where weights set a reward's share.
func TestIntuitorMixNormalizesOtherWeightsAway(t *testing.T) {
	// ε so small that z(c·r) = z(r) for c > 0 holds to rounding.
	opt := Options{Mix: MixIntuitor, Epsilon: 1e-15}
	sc := []rewards.Score{rewards.Of(1), rewards.Of(4), rewards.Of(2), rewards.Of(3)}
	acc := []rewards.Score{rewards.Of(0), rewards.Of(1), rewards.Of(1), rewards.Of(0)}
	fmtr := []rewards.Score{rewards.Of(1), rewards.Of(1), rewards.Of(0), rewards.Of(0)}
	mix := func(o Options, weights ...float64) [][]float64 {
		t.Helper()
		specs := []rewards.Spec{{Name: "self_certainty"}, {Name: "accuracy", Weight: w(weights[0])}}
		scores := [][][]rewards.Score{{sc}, {acc}}
		if len(weights) > 1 {
			specs = append(specs, rewards.Spec{Name: "format", Weight: w(weights[1])})
			scores = append(scores, [][]rewards.Score{fmtr})
		}
		got, err := Compute(specs, scores, o)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	scOnly, err := Compute([]rewards.Spec{{Name: "self_certainty"}}, [][][]rewards.Score{{sc}}, opt)
	if err != nil {
		t.Fatal(err)
	}
	// One other reward: weights 0.1 and 10 give the same advantages, -10 flips its part.
	small, large, negative := mix(opt, 0.1), mix(opt, 10), mix(opt, -10)
	near(t, "weight 0.1 vs 10", small, large)
	for j := range small[0] {
		other := small[0][j] - scOnly[0][j]
		if flipped := negative[0][j] - scOnly[0][j]; math.Abs(flipped+other) > 1e-12 || other == 0 {
			t.Errorf("completion %d: accuracy's part %v with weight 0.1, %v with weight -10; want opposite", j, other, flipped)
		}
	}
	// Two other rewards: scaling both weights changes nothing, their ratio does.
	near(t, "weights (1, 3) vs (5, 15)", mix(opt, 1, 3), mix(opt, 5, 15))
	if a, b := mix(opt, 1, 3), mix(opt, 3, 1); math.Abs(a[0][0]-b[0][0]) < 1e-3 {
		t.Errorf("weights (1, 3) and (3, 1) agree: %v", a)
	}
	// The sum mix keeps a weight's meaning: 0.1 and 10 differ.
	sum := Options{Mix: MixSum, Epsilon: 1e-15}
	if a, b := mix(sum, 0.1), mix(sum, 10); math.Abs(a[0][0]-b[0][0]) < 1e-3 {
		t.Errorf("sum mix: weights 0.1 and 10 agree: %v", a)
	}
}

func TestComputeErrors(t *testing.T) {
	ok := [][][]rewards.Score{{s(1, 2)}}
	tests := []struct {
		name    string
		specs   []rewards.Spec
		scores  [][][]rewards.Score
		opt     Options
		mention string
	}{
		{"no rewards", nil, nil, Options{}, "no rewards"},
		{"count mismatch", []rewards.Spec{{Name: "a"}, {Name: "b"}}, ok, Options{}, "2 rewards"},
		{"group mismatch", []rewards.Spec{{Name: "a"}, {Name: "b"}}, [][][]rewards.Score{{s(1)}, {s(1), s(2)}}, Options{}, "reward b"},
		{"completion mismatch", []rewards.Spec{{Name: "a"}, {Name: "b"}}, [][][]rewards.Score{{s(1, 2)}, {s(1)}}, Options{}, "group 0"},
		{"bad score", []rewards.Spec{{Name: "acc"}}, [][][]rewards.Score{{s(1, math.Inf(1))}}, Options{}, "reward acc"},
		{"bad mode", []rewards.Spec{{Name: "a", Normalize: "minmax"}}, ok, Options{}, `"minmax"`},
		{"bad mix", []rewards.Spec{{Name: "a"}}, ok, Options{Mix: "product"}, `"product"`},
		{"intuitor without self_certainty", []rewards.Spec{{Name: "a"}}, ok, Options{Mix: MixIntuitor}, "self_certainty"},
		{"intuitor mixed modes", []rewards.Spec{{Name: "self_certainty"}, {Name: "a"}, {Name: "b", Normalize: "batch"}}, [][][]rewards.Score{{s(1)}, {s(1)}, {s(1)}}, Options{Mix: MixIntuitor}, "normalize"},
		{"intuitor bad other score", []rewards.Spec{{Name: "self_certainty"}, {Name: "acc"}}, [][][]rewards.Score{{s(1, 2)}, {s(1, math.Inf(-1))}}, Options{Mix: MixIntuitor}, "reward acc"},
		{"negative epsilon", []rewards.Spec{{Name: "a"}}, ok, Options{Epsilon: -1}, "epsilon"},
		// Finite weights whose weighted sum overflows gave ±Inf advantages without a word.
		{"weights that overflow", []rewards.Spec{{Name: "a", Weight: &huge}, {Name: "b", Weight: &huge}, {Name: "c", Weight: &huge}}, [][][]rewards.Score{{s(1, 2)}, {s(1, 2)}, {s(1, 2)}}, Options{}, "advantage -Inf is not finite: the rewards' weights (a 1e+308, b 1e+308, c 1e+308) are too large; scale them down"},
		{"weights that overflow, intuitor", []rewards.Spec{{Name: "self_certainty", Weight: &huge}, {Name: "b", Weight: &huge}}, [][][]rewards.Score{{s(1, 2)}, {s(1, 2)}}, Options{Mix: MixIntuitor}, "weighted sum of the rewards other than self_certainty +Inf is not finite: the rewards' weights (self_certainty 1e+308, b 1e+308) are too large"},
	}
	for _, tt := range tests {
		_, err := Compute(tt.specs, tt.scores, tt.opt)
		if err == nil {
			t.Errorf("%s: no error", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: error %q does not mention %q", tt.name, err, tt.mention)
		}
	}
}

// TestGroupProperties checks, on random groups with random n/a marks, what group
// normalization promises: over a group's applicable completions the advantages have
// mean 0 and unbiased std σ/(σ+ε); n/a completions get 0.
func TestGroupProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 500; trial++ {
		g := make([]rewards.Score, 1+rng.Intn(12))
		var xs []float64
		for j := range g {
			if rng.Float64() < 0.2 {
				g[j] = rewards.NA()
				continue
			}
			v := math.Round(rng.NormFloat64()*10) / 4
			g[j] = rewards.Of(v)
			xs = append(xs, v)
		}
		out, err := Normalize([][]rewards.Score{g}, rewards.NormalizeGroup, Epsilon)
		if err != nil {
			t.Fatal(err)
		}
		var as []float64
		for j, s := range g {
			if !s.Applicable {
				if out[0][j] != 0 {
					t.Fatalf("trial %d: n/a completion %d got %v", trial, j, out[0][j])
				}
				continue
			}
			as = append(as, out[0][j])
		}
		if len(xs) < 2 {
			for _, a := range as {
				if a != 0 {
					t.Fatalf("trial %d: lone score got advantage %v", trial, a)
				}
			}
			continue
		}
		_, sigma := moments.MeanStd(xs)
		m, sd := moments.MeanStd(as)
		if math.Abs(m) > 1e-9 || math.Abs(sd-sigma/(sigma+Epsilon)) > 1e-9 {
			t.Fatalf("trial %d: scores %v → advantages with mean %v, std %v; want 0, %v", trial, xs, m, sd, sigma/(sigma+Epsilon))
		}
	}
}

// group builds a group of completions with the given texts.
func group(texts ...string) rewards.Group {
	g := rewards.Group{}
	for _, t := range texts {
		g.Completions = append(g.Completions, rollout.Completion{Text: t})
	}
	return g
}

// TestFilter checks EMPO's filter: a group whose semantic-cluster entropy is at or
// above the threshold gets no advantage, the others keep theirs. The entropies were
// worked by hand: (2/4, 1/4, 1/4) gives 1.5 ln 2 = 1.0397 nats; (2/4, 2/4) ln 2 =
// 0.6931; four distinct answers ln 4 = 1.3863; unanimity 0. A filter that thresholds
// the plurality's share, compares with >, or pools the unanswered completions into
// one cluster masks other groups.
func TestFilter(t *testing.T) {
	groups := []rewards.Group{
		group(`\boxed{1}`, `\boxed{1}`, `\boxed{2}`, `\boxed{3}`), // 1.5 ln 2
		group(`\boxed{1}`, `\boxed{2}`, `\boxed{1}`, `\boxed{2}`), // ln 2
		group("a", "b", "c", "d"),                                 // ln 4: no answers, each its own cluster
		group("7", "7", "7", "7"),                                 // 0
		group(`\boxed{5}`, "none", `\boxed{5}`, "pass"),           // 1.5 ln 2, not ln 2
	}
	adv := func() [][]float64 {
		return [][]float64{{1, 1, -1, -1}, {2, -2, 2, -2}, {3, 3, -3, -3}, {0, 0, 0, 0}, {4, -4, 4, -4}}
	}
	ln2 := math.Log(2)
	tests := []struct {
		name   string
		max    float64
		masked int
		want   [][]float64
	}{
		{"off", 0, 0, adv()},
		{"EMPO's code: ln G", math.Log(4), 1, [][]float64{{1, 1, -1, -1}, {2, -2, 2, -2}, {0, 0, 0, 0}, {0, 0, 0, 0}, {4, -4, 4, -4}}},
		// At the threshold counts: 1.5 ln 2 is masked at 1.5 ln 2.
		{"at the threshold", 1.5 * ln2, 3, [][]float64{{0, 0, 0, 0}, {2, -2, 2, -2}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}},
		{"just above ln 2", ln2 + 1e-9, 3, [][]float64{{0, 0, 0, 0}, {2, -2, 2, -2}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}},
		{"ln 2", ln2, 4, [][]float64{{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := adv()
			if n := (Options{EntropyFilterMax: tt.max}).Filter(a, groups); n != tt.masked {
				t.Errorf("masked %d groups, want %d", n, tt.masked)
			}
			near(t, tt.name, a, tt.want)
		})
	}
	// The training group may be the first completions of a larger vote group: the
	// entropy is the vote group's.
	vote := []rewards.Group{group(`\boxed{1}`, `\boxed{1}`, `\boxed{2}`, `\boxed{3}`)} // 1.5 ln 2 over 4 votes
	a := [][]float64{{1, -1}}                                                          // the first two alone agree: entropy 0
	if n := (Options{EntropyFilterMax: 1}).Filter(a, vote); n != 1 || a[0][0] != 0 || a[0][1] != 0 {
		t.Errorf("vote group: masked %d, advantages %v; want 1 and zeros", n, a)
	}
}

func TestFilterOptionValidation(t *testing.T) {
	for _, x := range []float64{-1, math.NaN(), math.Inf(1)} {
		if err := (Options{EntropyFilterMax: x}).Validate(nil); err == nil || !strings.Contains(err.Error(), "entropy_filter_max") {
			t.Errorf("entropy_filter_max = %v: err = %v, want one naming it", x, err)
		}
	}
	if err := (Options{EntropyFilterMax: 0.5}).Validate(nil); err != nil {
		t.Errorf("entropy_filter_max = 0.5: %v", err)
	}
}
