package train

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rlif/rlif/internal/liveline"
)

// live shows where a step is while it runs: the phase, completions finished and tokens/s
// while sampling, micro-batches done while learning, and the step's and the run's ETA
// (see liveline for how). A nil *live shows nothing. The sampler and learner call back
// on the training goroutine; a heartbeat goroutine redraws the last state every second,
// so that the ETAs move during a long micro-batch: mu guards the state between them.
type live struct {
	mu           sync.Mutex
	line         *liveline.Line
	steps, start int
	stop         chan struct{}

	began, stepBegan, phaseBegan time.Time
	step                         int
	phase                        string
	done, total                  int
	tail                         string
}

// newLive returns the live display on w, or nil when w is nil. close stops it.
func newLive(w io.Writer, steps, start int) *live {
	if w == nil {
		return nil
	}
	l := &live{line: liveline.New(w), steps: steps, start: start, stop: make(chan struct{})}
	go l.heartbeat()
	return l
}

func (l *live) heartbeat() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.phase != "" {
				l.show(l.done, l.total, l.tail)
			}
			l.mu.Unlock()
		}
	}
}

func (l *live) close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.line.Clear()
	l.phase = ""
}

func (l *live) beginStep(step int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.step, l.stepBegan = step, time.Now()
	if l.began.IsZero() {
		l.began = l.stepBegan // the run's steps, not its start-up, set the pace
	}
	l.enter("sampling")
}

// evaluating starts the held-out evaluation after step (0: of the base model, before the
// first step); its progress comes through sampling.
func (l *live) evaluating(step int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.step = step
	l.enter("evaluating")
}

// setPhase starts a phase without a count of its own (scoring, sync).
func (l *live) setPhase(name string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.enter(name)
}

func (l *live) enter(phase string) {
	l.phase, l.phaseBegan = phase, time.Now()
	l.done, l.total, l.tail = 0, 0, ""
	l.show(0, 0, "")
}

// endStep clears the line before the step's summary; the heartbeat waits for the next.
func (l *live) endStep() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line.Clear()
	l.phase = ""
}

// sampling is the sampler's Params.Progress.
func (l *live) sampling(done, total, tokens int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rate := ""
	if s := time.Since(l.phaseBegan).Seconds(); s > 0 {
		rate = fmt.Sprintf(" · %.0f tok/s", float64(tokens)/s)
	}
	l.done, l.total, l.tail = done, total, rate
	l.show(done, total, rate)
}

// learning is the learner's TrainConfig.Progress.
func (l *live) learning(done, total int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.phase != "learning" {
		l.phase, l.phaseBegan = "learning", time.Now()
	}
	l.done, l.total, l.tail = done, total, ""
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
		return step, eta(step, 1) + eta(per, l.steps-l.step), true
	}
	if done > 0 && total > 0 && (l.phase == "sampling" || l.phase == "evaluating") {
		el := time.Since(l.phaseBegan)
		step = eta(el/time.Duration(done), total-done)
	}
	return step, 0, false
}

// maxETA bounds the estimates shown: n steps of a given length overflow time.Duration
// (292 years) long before an absurd step count (steps = 1e12) is reached, and an
// overflowed estimate is negative.
const maxETA = 100 * 365 * 24 * time.Hour

// eta is the time n more units of per each take, at most maxETA.
func eta(per time.Duration, n int) time.Duration {
	x := float64(per) * float64(n)
	switch {
	case !(x < float64(maxETA)): // NaN too
		return maxETA
	case x < 0:
		return 0
	}
	return time.Duration(x)
}

// fmtETA shows an estimate to the second, or that it is beyond maxETA.
func fmtETA(d time.Duration) string {
	if d >= maxETA {
		return "over 100 years"
	}
	return d.Round(time.Second).String()
}

// show draws the state; the caller holds mu.
func (l *live) show(done, total int, tail string) {
	if s, r, ok := l.etas(done, total); ok {
		tail += fmt.Sprintf(" · step ETA %s · run ETA %s", fmtETA(s), fmtETA(r))
	} else if s > 0 {
		tail += fmt.Sprintf(" · %s ETA %s", l.phase, fmtETA(s))
	}
	unit := "micro-batches"
	if l.phase == "sampling" || l.phase == "evaluating" {
		unit = "completions"
	}
	l.line.Show(fmt.Sprintf("step %d/%d %s", l.step, l.steps, l.phase), done, total, unit, tail)
}
