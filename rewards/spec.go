package rewards

import (
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"strings"
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

// Spec is one `[[rewards]]` table of a run's TOML: which reward, with what weight,
// arguments and scaling.
type Spec struct {
	// Name names a built-in reward (see `rlif rewards`), or labels a plugin.
	Name string `toml:"name" json:"name"`
	// Weight multiplies the reward's normalized scores in the advantage; nil means 1.
	Weight *float64 `toml:"weight" json:"weight,omitempty"`
	// Plugin is the path of a reward plugin executable; empty for a built-in.
	Plugin string `toml:"plugin" json:"plugin,omitempty"`
	// Args is the table passed to the reward's constructor (or plugin's Configure).
	Args map[string]any `toml:"args" json:"args,omitempty"`
	// SHA256 optionally pins the plugin executable's hex SHA-256.
	SHA256 string `toml:"sha256" json:"sha256,omitempty"`
	// Normalize is "group" (default), "batch", "none" or "raw".
	Normalize string `toml:"normalize" json:"normalize,omitempty"`
	// MTLS, when false, turns off the automatic mutual TLS with a plugin process (for a
	// plugin written against go-plugin's protocol by hand without TLS); nil means on.
	MTLS *bool `toml:"mtls" json:"mtls,omitempty"`
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

// IsBuiltin reports whether the spec names a built-in reward rather than a plugin.
func (s Spec) IsBuiltin() bool { return s.Plugin == "" }

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
	if w := s.EffectiveWeight(); math.IsNaN(w) || math.IsInf(w, 0) {
		return fail("weight %v is not a finite number", w)
	}
	switch s.Normalize {
	case "", NormalizeGroup, NormalizeBatch, NormalizeNone, NormalizeRaw:
	default:
		return fail("normalize %q: want %q, %q, %q or %q", s.Normalize, NormalizeGroup, NormalizeBatch, NormalizeNone, NormalizeRaw)
	}
	if s.SHA256 != "" {
		if s.Plugin == "" {
			return fail("sha256 is set but plugin is not: only a plugin executable can be pinned")
		}
		if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != 32 {
			return fail("sha256 %q is not 64 hexadecimal digits", s.SHA256)
		}
	}
	if s.Plugin != "" && strings.TrimSpace(s.Plugin) == "" {
		return fail("plugin path is blank")
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
	return nil
}
