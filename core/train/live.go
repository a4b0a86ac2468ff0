package train

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// plainEvery is the least time between two plain progress lines (stderr not a terminal:
// CI, nohup, a pipe), so that a log stays readable.
const plainEvery = 5 * time.Second

// live shows where a step is while it runs: the phase, completions finished and tokens/s
// while sampling, micro-batches done while learning, and the step's and the run's ETA.
// On a terminal it is one redrawn bar; elsewhere plain lines without control
// characters, at most one every plainEvery. A nil *live shows nothing. Its methods are
// called from the training goroutine only (the sampler and learner call back
// synchronously), so it holds no lock.
type live struct {
	w            io.Writer
	term         bool
	bar          *progressbar.ProgressBar
	barMax       int
	steps, start int

	began, stepBegan, phaseBegan time.Time
	step                         int
	phase                        string
	lastLine                     time.Time
}

// newLive returns the live display on w, or nil when w is nil.
func newLive(w io.Writer, steps, start int) *live {
	if w == nil {
		return nil
	}
	l := &live{w: w, steps: steps, start: start}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.term = true
	}
	return l
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
	if l == nil {
		return
	}
	if l.bar != nil {
		_ = l.bar.Clear()
		l.bar = nil
	}
}

// sampling is the sampler's Params.Progress.
func (l *live) sampling(done, total, tokens int) {
	if l == nil {
		return
	}
	rate := ""
	if s := time.Since(l.phaseBegan).Seconds(); s > 0 {
		rate = fmt.Sprintf("%.0f tok/s", float64(tokens)/s)
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
		per := time.Since(l.began) - inStep
		per /= time.Duration(finished)
		step = max(0, per-inStep)
		return step, step + per*time.Duration(l.steps-l.step), true
	}
	if done > 0 && total > 0 && l.phase == "sampling" {
		// Sampling is most of a step on CPU; the estimate is rough until a step is done.
		el := time.Since(l.phaseBegan)
		step = time.Duration(float64(el) / float64(done) * float64(total-done))
		return step, 0, false
	}
	return 0, 0, false
}

func (l *live) show(done, total int, extra string) {
	desc := fmt.Sprintf("step %d/%d %s", l.step, l.steps, l.phase)
	if total > 0 && !l.term { // the bar shows its own count
		desc += fmt.Sprintf(" %d/%d %s", done, total, map[bool]string{true: "completions", false: "micro-batches"}[l.phase == "sampling"])
	}
	if extra != "" {
		desc += " · " + extra
	}
	if s, r, ok := l.etas(done, total); ok {
		desc += fmt.Sprintf(" · step ETA %s · run ETA %s", s.Round(time.Second), r.Round(time.Second))
	} else if s > 0 {
		desc += fmt.Sprintf(" · sampling ETA %s", s.Round(time.Second))
	}
	if l.term {
		limit := total
		if limit <= 0 {
			limit = -1 // a spinner: the phase has no count
		}
		if l.bar != nil && l.barMax != limit {
			// A spinner does not turn into a bar, nor one count into another: start anew.
			_ = l.bar.Clear()
			l.bar = nil
		}
		if l.bar == nil {
			l.barMax = limit
			l.bar = progressbar.NewOptions(limit, progressbar.OptionSetWriter(l.w), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(false), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(24), progressbar.OptionShowDescriptionAtLineEnd())
		}
		l.bar.Describe(desc)
		_ = l.bar.Set(done)
		return
	}
	if time.Since(l.lastLine) < plainEvery {
		return
	}
	l.lastLine = time.Now()
	fmt.Fprintln(l.w, desc)
}
