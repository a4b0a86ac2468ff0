// Package health is rlif's label-free rule for whether a run is still sharpening its
// model or has collapsed, from what every run has without labels: the mean per-token
// entropy (and, optionally, the mean length) of the completions it samples at each step.
//
// Intrinsic rewards (self-certainty, entropy, votes) sharpen the model's own
// distribution; they help while its confidence tracks correctness and then fall
// ("No Free Lunch", arXiv 2506.17219; arXiv 2603.08660). In rlif's 60-step Intuitor run
// the fall came as the sampled entropy dropped to a third of its start, steps after the
// held-out accuracy had peaked; GRPO on gold answers, which kept improving, lost half
// of its entropy by then and no more (docs/experiments/label-free.md). The rule
// compares a short moving mean of each signal with its value over the run's first
// steps:
//
//   - a step is healthy while the entropy is at least HealthyEntropy (and the length
//     at least HealthyLength) of their starting values;
//   - a step is collapsed when the entropy is below CollapseEntropy (or the length
//     below CollapseLength) of them.
//
// Between the two a step is neither: sharpened past the point the rule trusts, not yet
// collapsed. output.keep_best = "label_free" keeps the latest healthy step before any
// collapse; output.stop_on_collapse ends the run at the first collapsed step. The
// default leaves length out (its thresholds are 0): the GRPO run that improved most
// shortened its completions by 60% as it learned to answer directly, so on a task
// whose answers may grow short, length says nothing; set them where it does.
package health

import (
	"fmt"
	"math"
)

// Rule holds the rule's thresholds: fractions of the starting values.
type Rule struct {
	// Window is the number of steps in the moving mean (per-step values of a few groups
	// are noisy); Start the number of first steps whose mean is the starting value.
	Window int `toml:"window"`
	Start  int `toml:"start"`
	// A step is healthy at or above both Healthy fractions, collapsed below either
	// Collapse fraction; a length threshold of 0 leaves length out.
	HealthyLength   float64 `toml:"healthy_length"`
	HealthyEntropy  float64 `toml:"healthy_entropy"`
	CollapseLength  float64 `toml:"collapse_length"`
	CollapseEntropy float64 `toml:"collapse_entropy"`
}

// Default is the rule rlif uses: chosen on two 60-step runs (Intuitor and GRPO with gold
// answers, seed 1) and reported on the others in docs/experiments/label-free.md.
var Default = Rule{Window: 3, Start: 3, HealthyEntropy: 0.5, CollapseEntropy: 0.35}

// Check says what is wrong with a rule, naming the field.
func (r Rule) Check() error {
	switch {
	case r.Window < 1:
		return fmt.Errorf("health.window = %d: want at least 1 step", r.Window)
	case r.Start < 1:
		return fmt.Errorf("health.start = %d: want at least 1 step", r.Start)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"healthy_length", r.HealthyLength}, {"healthy_entropy", r.HealthyEntropy}, {"collapse_length", r.CollapseLength}, {"collapse_entropy", r.CollapseEntropy}} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return fmt.Errorf("health.%s = %g: want a fraction of the starting value in [0, 1]", f.name, f.v)
		}
	}
	if r.CollapseLength > r.HealthyLength || r.CollapseEntropy > r.HealthyEntropy {
		return fmt.Errorf("health: a collapse threshold above its healthy one (length %g > %g or entropy %g > %g): a step would be both", r.CollapseLength, r.HealthyLength, r.CollapseEntropy, r.HealthyEntropy)
	}
	return nil
}

// Point is what the rule reads of one step: the mean length in tokens and the mean
// per-token entropy in nats of the completions the step sampled.
type Point struct {
	Step            int
	Length, Entropy float64
}

// Verdict is the rule's reading of one step.
type Verdict struct {
	Step int
	// LengthRatio and EntropyRatio are the moving means over the starting values (1 when
	// the starting value is 0: nothing to fall from).
	LengthRatio, EntropyRatio float64
	Healthy, Collapsed        bool
}

// Tracker applies a rule to a run's steps as they come.
type Tracker struct {
	rule   Rule
	points []Point
}

// NewTracker starts a tracker; the rule must pass Check.
func NewTracker(r Rule) *Tracker { return &Tracker{rule: r} }

// Add reads the next step. Steps come in order; a value that is not finite counts as
// the previous step's (0 for the first): a step with no completion has no mean.
func (t *Tracker) Add(p Point) Verdict {
	var prev Point
	if n := len(t.points); n > 0 {
		prev = t.points[n-1]
	}
	if !finite(p.Length) {
		p.Length = prev.Length
	}
	if !finite(p.Entropy) {
		p.Entropy = prev.Entropy
	}
	t.points = append(t.points, p)
	start := t.points[:min(len(t.points), t.rule.Start)]
	recent := t.points[max(0, len(t.points)-t.rule.Window):]
	v := Verdict{
		Step:         p.Step,
		LengthRatio:  ratio(mean(recent, length), mean(start, length)),
		EntropyRatio: ratio(mean(recent, entropy), mean(start, entropy)),
	}
	v.Healthy = v.LengthRatio >= t.rule.HealthyLength && v.EntropyRatio >= t.rule.HealthyEntropy
	v.Collapsed = v.LengthRatio < t.rule.CollapseLength || v.EntropyRatio < t.rule.CollapseEntropy
	return v
}

// Judge applies a rule to a whole run's steps, in order.
func Judge(r Rule, points []Point) []Verdict {
	t := NewTracker(r)
	out := make([]Verdict, len(points))
	for i, p := range points {
		out[i] = t.Add(p)
	}
	return out
}

// Pick is the step the rule keeps among candidates (in increasing order; step 0, the
// base model, is always one): the latest candidate whose verdict is healthy, before the
// first collapsed step. verdicts are Judge's, in step order; a candidate with no verdict
// (step 0) counts as healthy.
func Pick(verdicts []Verdict, candidates []int) int {
	byStep := make(map[int]Verdict, len(verdicts))
	collapsedAt := math.MaxInt
	for _, v := range verdicts {
		byStep[v.Step] = v
		if v.Collapsed && v.Step < collapsedAt {
			collapsedAt = v.Step
		}
	}
	pick := 0
	for _, c := range candidates {
		v, ok := byStep[c]
		if c >= collapsedAt || (ok && !v.Healthy) {
			continue
		}
		pick = c
	}
	return pick
}

func length(p Point) float64  { return p.Length }
func entropy(p Point) float64 { return p.Entropy }

func mean(ps []Point, f func(Point) float64) float64 {
	s := 0.0
	for _, p := range ps {
		s += f(p)
	}
	return s / float64(max(1, len(ps)))
}

func ratio(x, start float64) float64 {
	if start <= 0 || !finite(x) || !finite(start) {
		return 1
	}
	return x / start
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
