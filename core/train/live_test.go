package train

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/liveline"
)

// TestLivePlainLines: off a terminal the live display writes plain lines, without
// carriage returns or escape codes, and at most one per liveline.PlainEvery however often the
// sampler and learner call back.
func TestLivePlainLines(t *testing.T) {
	var b bytes.Buffer
	l := newLive(&b, 10, 0)
	l.beginStep(1)
	for i := 0; i <= 200; i++ {
		l.sampling(i/10, 20, i*3)
	}
	l.setPhase("scoring")
	for i := 1; i <= 50; i++ {
		l.learning(i, 50)
	}
	l.endStep()
	l.close()
	out := b.String()
	if strings.ContainsAny(out, "\r\x1b\b") {
		t.Errorf("control characters in plain progress: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "step 1/10 sampling") {
		t.Errorf("lines %q: want one line (the step's start) within %s", lines, liveline.PlainEvery)
	}

	var nothing *live // no Live writer: every call is a no-op
	nothing.beginStep(1)
	nothing.sampling(1, 2, 3)
	nothing.learning(1, 2)
	nothing.endStep()
	nothing.close()
}

// TestLiveHeartbeat: with no callback for a while (one long micro-batch), the heartbeat
// still writes a plain line once PlainEvery has passed.
func TestLiveHeartbeat(t *testing.T) {
	var b syncBuffer
	l := newLive(&b, 3, 0)
	l.beginStep(1)
	l.learning(0, 1)
	time.Sleep(liveline.PlainEvery + 2500*time.Millisecond)
	l.close()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "step 1/3 learning 0/1 micro-batches") {
		t.Errorf("lines %q: want the heartbeat's learning line after the first", lines)
	}
}

// syncBuffer is a bytes.Buffer safe for the heartbeat goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The in-training evaluation (here the base model's, before step 1) shows its completions
// and an ETA of its own: minutes of a silent terminal read as a hang.
func TestLiveEvaluating(t *testing.T) {
	var b bytes.Buffer
	l := newLive(&b, 24, 0)
	l.evaluating(0)
	time.Sleep(10 * time.Millisecond)
	l.mu.Lock()
	l.line = liveline.New(&b) // a fresh line: the plain lines' pace starts again
	l.mu.Unlock()
	l.sampling(30, 300, 3000)
	l.endStep()
	l.close()
	out := b.String()
	for _, want := range []string{"step 0/24 evaluating", "30/300 completions", "evaluating ETA"} {
		if !strings.Contains(out, want) {
			t.Errorf("live output lacks %q:\n%s", want, out)
		}
	}
	var nothing *live
	nothing.evaluating(3)
}

// An absurd step count (steps = 1e12) made the run's ETA overflow time.Duration and print
// negative, in the live line and in the line after each step; it now says it is beyond
// 100 years.
func TestETAOverflow(t *testing.T) {
	const steps = 1_000_000_000_000
	var b bytes.Buffer
	now := time.Now()
	l := &live{line: liveline.New(&b), steps: steps, step: 3, began: now.Add(-20 * time.Second), stepBegan: now.Add(-time.Second), phase: "sampling"}
	l.show(1, 2, "")
	if out := b.String(); !strings.Contains(out, "run ETA over 100 years") || strings.Contains(out, "-") {
		t.Errorf("live line %q: want the run ETA over 100 years", out)
	}
	line := progressLine(&Metrics{Step: 2}, steps, 0, now.Add(-10*time.Second))
	if !strings.Contains(line, "ETA over 100 years") || strings.Contains(line, "ETA -") {
		t.Errorf("progress line %q: want the ETA over 100 years", line)
	}
	// An ordinary run shows its ETA to the second.
	if line := progressLine(&Metrics{Step: 2}, 10, 0, now.Add(-10*time.Second)); !strings.Contains(line, "ETA 40s") {
		t.Errorf("progress line %q: want ETA 40s", line)
	}
}
