// Package liveline shows a long operation moving: on a terminal one line redrawn in
// place (a progress bar), elsewhere (CI, nohup, a pipe) plain lines without control
// characters, at most one every PlainEvery, so that a log stays readable.
package liveline

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// PlainEvery is the least time between two plain lines.
const PlainEvery = 5 * time.Second

// Line is one live line on a writer. A nil *Line shows nothing. It is not safe for
// concurrent use.
type Line struct {
	w        io.Writer
	term     bool
	bar      *progressbar.ProgressBar
	barMax   int
	lastLine time.Time
}

// New returns a line on w (a redrawn bar when w is a terminal), or nil when w is nil.
func New(w io.Writer) *Line {
	if w == nil {
		return nil
	}
	l := &Line{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		l.term = true
	}
	return l
}

// Show displays head, the count done/total of unit (none when total <= 0) and tail.
func (l *Line) Show(head string, done, total int, unit, tail string) {
	if l == nil {
		return
	}
	if l.term {
		limit := total
		if limit <= 0 {
			limit = -1 // a spinner: nothing to count
		}
		if l.bar != nil && l.barMax != limit {
			// A spinner does not turn into a bar, nor one count into another: start anew.
			l.Clear()
		}
		if l.bar == nil {
			l.barMax = limit
			l.bar = progressbar.NewOptions(limit, progressbar.OptionSetWriter(l.w), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(false), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(24), progressbar.OptionShowDescriptionAtLineEnd())
		}
		l.bar.Describe(head + tail) // the bar shows its own count
		_ = l.bar.Set(done)
		return
	}
	if time.Since(l.lastLine) < PlainEvery {
		return
	}
	l.lastLine = time.Now()
	if total > 0 {
		head += fmt.Sprintf(" %d/%d %s", done, total, unit)
	}
	fmt.Fprintln(l.w, head+tail)
}

// Clear removes a drawn bar, so that the next output starts on a clean line.
func (l *Line) Clear() {
	if l == nil || l.bar == nil {
		return
	}
	_ = l.bar.Clear()
	l.bar = nil
}
