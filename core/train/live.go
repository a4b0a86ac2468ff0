package train

import (
	"fmt"
	"io"
	"time"

	"github.com/rlif/rlif/internal/liveline"
)

// live shows where a step is while it runs: the phase, completions finished and tokens/s
// while sampling, micro-batches done while learning, and the step's and the run's ETA
// (see liveline for how). A nil *live shows nothing. Its methods are called from the
// training goroutine only (the sampler and learner call back synchronously).
type live struct {
	line         *liveline.Line
	steps, start int

	began, stepBegan, phaseBegan time.Time
	step                         int
	phase                        string
}

// newLive returns the live display on w, or nil when w is nil.
func newLive(w io.Writer, steps, start int) *live {
	if w == nil {
		return nil
	}
	return &live{line: liveline.New(w), steps: steps, start: start}
}

func (l *live) beginStep(step int) {
	if l == nil {
		return
	}
	l.step, l.stepBegan = step, time.Now()
	if l.began.IsZero() {
		l.began = l.stepBegan // the run's steps, not its start-up, set the pace
	}
	l.setPhase("sampling")
}

// setPhase starts a phase without a count of its own (scoring, sync).
func (l *live) setPhase(name string) {
	if l == nil {
		return
	}
	l.phase, l.phaseBegan = name, time.Now()
	l.show(0, 0, "")
}

func (l *live) endStep() {
	if l != nil {
		l.line.Clear()
	}
}

// sampling is the sampler's Params.Progress.
func (l *live) sampling(done, total, tokens int) {
	if l == nil {
		return
	}
	rate := ""
	if s := time.Since(l.phaseBegan).Seconds(); s > 0 {
		rate = fmt.Sprintf(" · %.0f tok/s", float64(tokens)/s)
	}
	l.show(done, total, rate)
}

// learning is the learner's TrainConfig.Progress.
func (l *live) learning(done, total int) {
	if l == nil {
		return
	}
	if l.phase != "learning" {
		l.phase, l.phaseBegan = "learning", time.Now()
	}
	l.show(done, total, "")
}

// etas estimates the rest of the step and of the run. Steps after the first are assumed
// to take the mean of those done; within the first the phase's own rate is all there is.
func (l *live) etas(done, total int) (step, run time.Duration, ok bool) {
	finished := l.step - 1 - l.start
	inStep := time.Since(l.stepBegan)
	if finished > 0 {
		per := (time.Since(l.began) - inStep) / time.Duration(finished)
		step = max(0, per-inStep)
		return step, step + per*time.Duration(l.steps-l.step), true
	}
	if done > 0 && total > 0 && l.phase == "sampling" {
		el := time.Since(l.phaseBegan)
		step = time.Duration(float64(el) / float64(done) * float64(total-done))
	}
	return step, 0, false
}

func (l *live) show(done, total int, tail string) {
	if s, r, ok := l.etas(done, total); ok {
		tail += fmt.Sprintf(" · step ETA %s · run ETA %s", s.Round(time.Second), r.Round(time.Second))
	} else if s > 0 {
		tail += fmt.Sprintf(" · sampling ETA %s", s.Round(time.Second))
	}
	unit := "micro-batches"
	if l.phase == "sampling" {
		unit = "completions"
	}
	l.line.Show(fmt.Sprintf("step %d/%d %s", l.step, l.steps, l.phase), done, total, unit, tail)
}
