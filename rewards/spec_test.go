package rewards

import (
	"math"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestSpecTOML(t *testing.T) {
	const doc = `
[[rewards]]
name = "self_certainty"

[[rewards]]
name = "format"
weight = 0.25
normalize = "batch"
args = { layout = "think_answer" }

[[rewards]]
name = "my_reward"
weight = 0
[rewards.args]
threshold = 0.5
words = ["a", "b"]
`
	var cfg struct {
		Rewards []Spec `toml:"rewards"`
	}
	md, err := toml.Decode(doc, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("undecoded keys: %v", und)
	}
	if err := ValidateSpecs(cfg.Rewards); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rewards) != 3 {
		t.Fatalf("%d specs", len(cfg.Rewards))
	}
	sc, f, p := cfg.Rewards[0], cfg.Rewards[1], cfg.Rewards[2]
	if sc.EffectiveWeight() != 1 || sc.EffectiveNormalize() != NormalizeGroup || sc.Args != nil {
		t.Errorf("defaults: %+v weight %v normalize %q", sc, sc.EffectiveWeight(), sc.EffectiveNormalize())
	}
	if f.EffectiveWeight() != 0.25 || f.EffectiveNormalize() != NormalizeBatch || f.Args["layout"] != "think_answer" {
		t.Errorf("format: %+v", f)
	}
	if p.EffectiveWeight() != 0 || p.Args["threshold"] != 0.5 {
		t.Errorf("plugin: %+v (weight %v)", p, p.EffectiveWeight())
	}
}

func TestSpecValidate(t *testing.T) {
	nan := math.NaN()
	inf := math.Inf(1)
	tests := []struct {
		name    string
		spec    Spec
		mention string // "" when valid
	}{
		{"minimal", Spec{Name: "accuracy"}, ""},
		{"all modes", Spec{Name: "a", Normalize: NormalizeRaw}, ""},
		{"no name", Spec{Weight: new(float64)}, "missing name"},
		{"bad name", Spec{Name: "my reward"}, `"my reward"`},
		{"NaN weight", Spec{Name: "a", Weight: &nan}, "weight"},
		{"Inf weight", Spec{Name: "a", Weight: &inf}, "weight"},
		{"bad normalize", Spec{Name: "a", Normalize: "Group"}, `normalize "Group"`},
		{"empty arg key", Spec{Name: "p", Args: map[string]any{"": 1}}, "args"},
	}
	for _, tt := range tests {
		err := tt.spec.Validate()
		switch {
		case tt.mention == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.mention != "" && err == nil:
			t.Errorf("%s: no error", tt.name)
		case err != nil && !strings.Contains(err.Error(), tt.mention):
			t.Errorf("%s: error %q does not mention %q", tt.name, err, tt.mention)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: error is not one line: %q", tt.name, err)
		}
	}
}

func TestValidateSpecs(t *testing.T) {
	if err := ValidateSpecs(nil); err == nil {
		t.Error("no specs accepted")
	}
	err := ValidateSpecs([]Spec{{Name: "accuracy"}, {Name: "format"}, {Name: "accuracy"}})
	if err == nil || !strings.Contains(err.Error(), "accuracy") || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: err = %v", err)
	}
	err = ValidateSpecs([]Spec{{Name: "accuracy"}, {Name: "f", Normalize: "x"}})
	if err == nil || !strings.Contains(err.Error(), "reward f") {
		t.Errorf("invalid member: err = %v", err)
	}
}

// A run whose rewards all have weight 0 has zero advantages everywhere: it would train on
// nothing, so it is refused; a zero weight beside a non-zero one is a reward to watch.
func TestValidateSpecsZeroWeights(t *testing.T) {
	zero, half := 0.0, 0.5
	for _, tc := range []struct {
		name  string
		specs []Spec
		want  string // "" when valid
	}{
		{"the only reward", []Spec{{Name: "self_certainty", Weight: &zero}}, "every [[rewards]] entry has weight 0 (self_certainty)"},
		{"every reward", []Spec{{Name: "accuracy", Weight: &zero}, {Name: "format", Weight: &zero}}, "(accuracy, format)"},
		{"one watched, one trained", []Spec{{Name: "accuracy", Weight: &zero}, {Name: "self_certainty", Weight: &half}}, ""},
		{"default weight", []Spec{{Name: "accuracy", Weight: &zero}, {Name: "self_certainty"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateSpecs(tc.specs)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "non-zero weight")):
				t.Fatalf("error %v, want one containing %q and saying what to do", err, tc.want)
			}
		})
	}
}
