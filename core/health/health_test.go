package health

import (
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// pt is a training step without an evaluation.
func pt(step int, length, entropy float64) Point {
	return Point{Step: step, Length: length, Entropy: entropy}
}

func vd(step int, lengthRatio, entropyRatio float64, healthy, collapsed bool) Verdict {
	return Verdict{Step: step, LengthRatio: lengthRatio, EntropyRatio: entropyRatio, Healthy: healthy, Collapsed: collapsed}
}

// A rule small enough to work by hand: the start is the mean of the first 2 steps, the
// moving mean is over 2 steps.
var small = Rule{Window: 2, Start: 2, HealthyLength: 0.6, HealthyEntropy: 0.5, CollapseLength: 0.4, CollapseEntropy: 0.25}

func TestJudgeByHand(t *testing.T) {
	points := []Point{
		pt(1, 100, 2.0), // start so far 100, 2.0: ratios 1, 1
		pt(2, 80, 1.0),  // start 90, 1.5; recent 90, 1.5: 1, 1
		pt(3, 60, 1.0),  // recent 70, 1.0: 70/90 = 0.7778, 1/1.5 = 0.6667: healthy
		pt(4, 40, 0.5),  // recent 50, 0.75: 0.5556 (< 0.6), 0.5: neither
		pt(5, 30, 0.3),  // recent 35, 0.4: 0.3889 (< 0.4), 0.2667: collapsed
		pt(6, 100, 2.0), // recent 65, 1.15: 0.7222, 0.7667: healthy again
	}
	want := []Verdict{
		vd(1, 1, 1, true, false),
		vd(2, 1, 1, true, false),
		vd(3, 70.0/90, 1/1.5, true, false),
		vd(4, 50.0/90, 0.75/1.5, false, false),
		vd(5, 35.0/90, 0.4/1.5, false, true),
		vd(6, 65.0/90, 1.15/1.5, true, false),
	}
	got := Judge(small, points)
	for i, w := range want {
		g := got[i]
		if g.Step != w.Step || !near(g.LengthRatio, w.LengthRatio) || !near(g.EntropyRatio, w.EntropyRatio) || g.Healthy != w.Healthy || g.Collapsed != w.Collapsed {
			t.Errorf("step %d: got %+v, want %+v", w.Step, g, w)
		}
	}
}

func TestEntropyAloneCollapses(t *testing.T) {
	// Length holds; entropy falls to 0.2 of its start: collapsed.
	got := Judge(Rule{Window: 1, Start: 1, HealthyLength: 0.6, HealthyEntropy: 0.5, CollapseLength: 0.4, CollapseEntropy: 0.25},
		[]Point{pt(1, 50, 1), pt(2, 50, 0.2)})
	if !got[1].Collapsed || got[1].Healthy {
		t.Errorf("got %+v, want collapsed", got[1])
	}
}

func TestZeroAndNonFiniteStarts(t *testing.T) {
	// A start of 0 has nothing to fall from (ratio 1); a NaN step counts as the step before.
	got := Judge(small, []Point{pt(1, 0, 0), pt(2, 0, 0), pt(3, math.NaN(), math.Inf(1))})
	for _, v := range got {
		if v.LengthRatio != 1 || v.EntropyRatio != 1 || !v.Healthy {
			t.Errorf("got %+v, want ratios 1 and healthy", v)
		}
	}
	got = Judge(Rule{Window: 1, Start: 1, HealthyLength: 0.6, HealthyEntropy: 0.5, CollapseLength: 0.4, CollapseEntropy: 0.25},
		[]Point{pt(1, 10, 1), pt(2, math.NaN(), 0.9)})
	if got[1].LengthRatio != 1 {
		t.Errorf("NaN length: ratio %g, want 1 (the step before's)", got[1].LengthRatio)
	}
}

func TestPick(t *testing.T) {
	v := func(step int, healthy, collapsed bool) Verdict {
		return Verdict{Step: step, Healthy: healthy, Collapsed: collapsed}
	}
	tests := []struct {
		name       string
		verdicts   []Verdict
		candidates []int
		want       int
	}{
		{"all healthy: the last", []Verdict{v(6, true, false), v(12, true, false)}, []int{0, 6, 12}, 12},
		{"an unhealthy candidate is passed over", []Verdict{v(6, true, false), v(12, false, false)}, []int{0, 6, 12}, 6},
		{"nothing after a collapse", []Verdict{v(6, true, false), v(9, false, true), v(12, true, false)}, []int{0, 6, 12}, 6},
		{"a collapse at a candidate", []Verdict{v(6, true, false), v(12, false, true)}, []int{0, 6, 12}, 6},
		{"unhealthy from the first: the base", []Verdict{v(6, false, false), v(12, false, true)}, []int{0, 6, 12}, 0},
		{"only the base", nil, []int{0}, 0},
		{"a candidate without a verdict counts as healthy", []Verdict{v(6, true, false)}, []int{0, 6, 8}, 8},
	}
	for _, tt := range tests {
		if got := Pick(tt.verdicts, tt.candidates); got != tt.want {
			t.Errorf("%s: Pick = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestRuleCheck(t *testing.T) {
	if err := Default.Check(); err != nil {
		t.Fatalf("Default: %v", err)
	}
	bad := []Rule{
		{Window: 0, Start: 3, HealthyLength: 0.6, HealthyEntropy: 0.5},
		{Window: 3, Start: 0, HealthyLength: 0.6, HealthyEntropy: 0.5},
		{Window: 3, Start: 3, HealthyLength: 1.5, HealthyEntropy: 0.5},
		{Window: 3, Start: 3, HealthyLength: 0.6, HealthyEntropy: math.NaN()},
		{Window: 3, Start: 3, HealthyLength: 0.3, HealthyEntropy: 0.5, CollapseLength: 0.4},
	}
	for _, r := range bad {
		if err := r.Check(); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

// ev is an evaluated training step: its held-out echo and answered shares.
func ev(step int, entropy, echo float64) Point {
	return Point{Step: step, Length: 50, Entropy: entropy, Evaluated: true, Echo: echo, Answered: 1}
}

func TestEchoGuardByHand(t *testing.T) {
	r := Rule{Window: 1, Start: 1, HealthyEntropy: 0.5, CollapseEntropy: 0.35, EchoRise: 0.2}
	base := Point{Step: 0, Evaluated: true, Echo: 0.11, Answered: 0.9}
	tests := []struct {
		name                     string
		points                   []Point
		healthy, collapsed, echo []bool // per training step (the base is always healthy)
		rise                     []float64
	}{
		{
			// The entropy falls to 0.1 of its start, as in rlif's best label-free run, but
			// the answers do not restate the prompt: the guard keeps every evaluated step.
			name:      "sharpening into answers",
			points:    []Point{base, ev(6, 1.5, 0.08), pt(7, 50, 0.4), ev(12, 0.15, 0.02)},
			healthy:   []bool{true, false, true},
			collapsed: []bool{false, false, false},
			echo:      []bool{true, true, true},
			rise:      []float64{0.08 - 0.11, 0, 0.02 - 0.11},
		},
		{
			// 0.31 is exactly 0.2 above the base: collapsed, though the entropy is healthy.
			name:      "restating the question",
			points:    []Point{base, ev(6, 1.5, 0.16), ev(12, 1.4, 0.31)},
			healthy:   []bool{true, false},
			collapsed: []bool{false, true},
			echo:      []bool{true, true},
			rise:      []float64{0.16 - 0.11, 0.31 - 0.11},
		},
		{
			name:      "no base evaluation: the entropy rule",
			points:    []Point{ev(6, 1.5, 0.9), ev(12, 0.3, 0.9)},
			healthy:   []bool{true, false},
			collapsed: []bool{false, true},
			echo:      []bool{false, false},
			rise:      []float64{0, 0},
		},
		{
			name:      "a base that rarely answers: the entropy rule",
			points:    []Point{{Step: 0, Evaluated: true, Echo: 0.01, Answered: 0.3}, ev(6, 1.5, 0.9), ev(12, 0.3, 0.0)},
			healthy:   []bool{true, false},
			collapsed: []bool{false, true},
			echo:      []bool{false, false},
			rise:      []float64{0, 0},
		},
	}
	for _, tt := range tests {
		got := Judge(r, tt.points)
		if tt.points[0].Step == 0 {
			if v := got[0]; !v.Healthy || v.Collapsed {
				t.Errorf("%s: base verdict %+v, want healthy", tt.name, v)
			}
			got = got[1:]
		}
		for i, v := range got {
			if v.Healthy != tt.healthy[i] || v.Collapsed != tt.collapsed[i] || v.ByEcho != (tt.echo[i] && tt.points[len(tt.points)-len(got)+i].Evaluated) || !near(v.EchoRise, tt.rise[i]) {
				t.Errorf("%s: step %d: got %+v, want healthy %v collapsed %v rise %g", tt.name, v.Step, v, tt.healthy[i], tt.collapsed[i], tt.rise[i])
			}
		}
	}
	off := r
	off.EchoRise = 0
	if got := Judge(off, []Point{base, ev(6, 1.5, 0.9)}); got[1].ByEcho || !got[1].Healthy {
		t.Errorf("echo_rise = 0: got %+v, want the entropy rule's healthy", got[1])
	}
}
