package rewards

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/rlif/rlif/internal/num"
)

// How a reward's scores are scaled before the weighted sum (Spec.Normalize). They
// follow TRL's GRPO scale_rewards: every mode but "raw" subtracts the group mean.
const (
	// NormalizeGroup: (r − group mean) / (group std + ε), the GRPO default.
	NormalizeGroup = "group"
	// NormalizeBatch: (r − group mean) / (batch std + ε).
	NormalizeBatch = "batch"
	// NormalizeNone: r − group mean, no std scaling (Dr. GRPO).
	NormalizeNone = "none"
	// NormalizeRaw: the score itself, with no baseline.
	NormalizeRaw = "raw"
)

// Spec is what a reward is, as a run's `[[rewards]]` table gives it: which reward,
// with what weight, arguments and scaling. How it is deployed (a plugin executable,
// its checksum pin, TLS, environment, timeout) is not the reward's business: it is the
// plugin host's (host.Deployment), beside the Spec in the run's config.
type Spec struct {
	// Name names a built-in reward (see `rlif rewards`), or labels a plugin.
	Name string `toml:"name" json:"name"`
	// Weight multiplies the reward's normalized scores in the advantage; nil means 1.
	Weight *float64 `toml:"weight" json:"weight,omitempty"`
	// Args is the table passed to the reward's constructor (or plugin's Configure).
	Args map[string]any `toml:"args" json:"args,omitempty"`
	// Normalize is "group" (default), "batch", "none" or "raw".
	Normalize string `toml:"normalize" json:"normalize,omitempty"`
}

// Default weight of a reward whose Spec has none.
const DefaultWeight = 1.0

var specNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]+$`)

// EffectiveWeight returns the weight, DefaultWeight when none was given.
func (s Spec) EffectiveWeight() float64 {
	if s.Weight == nil {
		return DefaultWeight
	}
	return *s.Weight
}

// EffectiveNormalize returns the normalization mode, NormalizeGroup when none was
// given.
func (s Spec) EffectiveNormalize() string {
	if s.Normalize == "" {
		return NormalizeGroup
	}
	return s.Normalize
}

// CheckNormalize returns an error naming the modes unless mode is one of them ("" is
// NormalizeGroup): the one list of normalization modes.
func CheckNormalize(mode string) error {
	switch mode {
	case "", NormalizeGroup, NormalizeBatch, NormalizeNone, NormalizeRaw:
		return nil
	}
	return fmt.Errorf("normalize %q: want %q, %q, %q or %q", mode, NormalizeGroup, NormalizeBatch, NormalizeNone, NormalizeRaw)
}

// Validate checks the spec on its own and returns a one-line error that names the
// reward and the offending key. Whether a built-in of that name exists is checked
// where the built-ins are known.
func (s Spec) Validate() error {
	label := s.Name
	if label == "" {
		label = "(unnamed)"
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("reward %s: %s", label, fmt.Sprintf(format, a...))
	}
	switch {
	case s.Name == "":
		return fail("missing name")
	case !specNameRE.MatchString(s.Name):
		return fail("name %q: use letters, digits, '_', '.' and '-'", s.Name)
	}
	if w := s.EffectiveWeight(); !num.Finite(w) {
		return fail("weight %v is not a finite number", w)
	}
	if err := CheckNormalize(s.Normalize); err != nil {
		return fail("%v", err)
	}
	for k := range s.Args {
		if k == "" {
			return fail("args has an empty key")
		}
	}
	return nil
}

// ValidateSpecs validates every spec and checks that names are unique, since a
// reward's name keys its scores in logs and in `rlif score` output.
func ValidateSpecs(specs []Spec) error {
	if len(specs) == 0 {
		return fmt.Errorf("no [[rewards]] configured")
	}
	seen := map[string]bool{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("reward %s: configured twice; give each [[rewards]] entry a distinct name", s.Name)
		}
		seen[s.Name] = true
	}
	if zero := ZeroWeighted(specs); len(zero) == len(specs) {
		return fmt.Errorf("every [[rewards]] entry has weight 0 (%s): every advantage would be 0 and the run would learn nothing; give at least one a non-zero weight (one without a weight has %g)", strings.Join(zero, ", "), DefaultWeight)
	}
	return nil
}

// ZeroWeighted returns the names of the rewards whose weight is 0: they are scored and
// logged but move no advantage (a reward to watch, not to train on).
func ZeroWeighted(specs []Spec) []string {
	var names []string
	for _, s := range specs {
		if s.EffectiveWeight() == 0 {
			names = append(names, s.Name)
		}
	}
	return names
}
