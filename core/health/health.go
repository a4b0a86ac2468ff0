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
//
// Entropy says a run is sharpening, not which way: rlif's best label-free run sharpened
// as hard as the collapses did, into right answers. The echo guard reads which way, where
// the run evaluates on held-out prompts: the share of greedy answers that are a number the
// prompt itself states rose from 0.11 to 0.46–1.00 in every collapse seen and stayed at
// most 0.15 in every run that rose. When the run evaluates and the base model's held-out
// completions mostly have an answer, an evaluated step whose echo share is at least
// EchoRise above the base's is collapsed, one below it healthy, and the entropy ratios
// are only reported; a step without an evaluation is neither.
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
	// EchoRise is the echo guard's threshold: the rise of the held-out echo share over
	// the base model's at which an evaluated step is collapsed; 0 turns the guard off
	// (a task whose right answers restate numbers of the prompt).
	EchoRise float64 `toml:"echo_rise"`
}

// MinAnswered is the share of the base model's held-out completions that must have an
// answer for the echo guard to judge: the echo share of a model that rarely answers
// says nothing.
const MinAnswered = 0.5

// Default is the rule rlif uses: chosen on two 60-step runs (Intuitor and GRPO with gold
// answers, seed 1) and reported on the others in docs/experiments/label-free.md.
// The echo guard's threshold was chosen on the 16 runs of that document and written down
// before the runs that test it.
var Default = Rule{Window: 3, Start: 3, HealthyEntropy: 0.5, CollapseEntropy: 0.35, EchoRise: 0.2}

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
	}{{"healthy_length", r.HealthyLength}, {"healthy_entropy", r.HealthyEntropy}, {"collapse_length", r.CollapseLength}, {"collapse_entropy", r.CollapseEntropy}, {"echo_rise", r.EchoRise}} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > 1 {
			return fmt.Errorf("health.%s = %g: want a fraction in [0, 1]", f.name, f.v)
		}
	}
	if r.CollapseLength > r.HealthyLength || r.CollapseEntropy > r.HealthyEntropy {
		return fmt.Errorf("health: a collapse threshold above its healthy one (length %g > %g or entropy %g > %g): a step would be both", r.CollapseLength, r.HealthyLength, r.CollapseEntropy, r.HealthyEntropy)
	}
	return nil
}

// Point is what the rule reads of one step: the mean length in tokens and the mean
// per-token entropy in nats of the completions the step sampled, and, when the step
// evaluated (Evaluated), the held-out echo share and answered share (the shares of
// completions whose answer is a number of their prompt, and that have an answer). Step 0
// is the base model's evaluation, before any training step: only its echo and answered
// shares count.
type Point struct {
	Step            int
	Length, Entropy float64
	Evaluated       bool
	Echo, Answered  float64
}

// Verdict is the rule's reading of one step.
type Verdict struct {
	Step int
	// LengthRatio and EntropyRatio are the moving means over the starting values (1 when
	// the starting value is 0: nothing to fall from).
	LengthRatio, EntropyRatio float64
	// ByEcho says the echo guard judged the step (it evaluated, and the base did);
	// EchoRise is then its held-out echo share less the base's.
	ByEcho             bool
	EchoRise           float64
	Healthy, Collapsed bool
}

// Tracker applies a rule to a run's steps as they come.
type Tracker struct {
	rule   Rule
	points []Point
	// base is the base model's evaluation (step 0), when the run made one; echo says
	// whether the echo guard judges the run's evaluated steps.
	base Point
	echo bool
}

// NewTracker starts a tracker; the rule must pass Check.
func NewTracker(r Rule) *Tracker { return &Tracker{rule: r} }

// Add reads the next step. Steps come in order; a value that is not finite counts as
// the previous step's (0 for the first): a step with no completion has no mean.
func (t *Tracker) Add(p Point) Verdict {
	if p.Step == 0 {
		// The base model: the echo guard's reference, healthy by definition.
		t.base = p
		t.echo = p.Evaluated && t.rule.EchoRise > 0 && finite(p.Echo) && p.Answered >= MinAnswered
		return Verdict{Step: 0, LengthRatio: 1, EntropyRatio: 1, Healthy: true}
	}
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
	switch {
	case t.echo && p.Evaluated && finite(p.Echo):
		v.ByEcho, v.EchoRise = true, p.Echo-t.base.Echo
		v.Collapsed = v.EchoRise >= t.rule.EchoRise
		v.Healthy = !v.Collapsed
	case t.echo:
		// Between evaluations the guard has nothing to read: the step is not a pick.
	default:
		v.Healthy = v.LengthRatio >= t.rule.HealthyLength && v.EntropyRatio >= t.rule.HealthyEntropy
		v.Collapsed = v.LengthRatio < t.rule.CollapseLength || v.EntropyRatio < t.rule.CollapseEntropy
	}
	return v
}

// Judge applies a rule to a whole run's steps, in order (the base evaluation, step 0,
// first where there is one).
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
