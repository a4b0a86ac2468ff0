package train

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rlif/rlif/internal/atomicfile"
)

// bestFile, inside a best-step-N checkpoint, records why it is the best.
const bestFile = "best.json"

// bestState is checkpoints/best/best.json: the step whose checkpoint checkpoints/best
// holds and its value of output.keep_best.
type bestState struct {
	Step   int     `json:"step"`
	Metric string  `json:"metric"`
	Mode   string  `json:"mode"`
	Value  float64 `json:"value"`
	// The health rule's ratios at the step, for keep_best = "label_free" (core/health).
	LengthRatio  float64 `json:"length_ratio,omitempty"`
	EntropyRatio float64 `json:"entropy_ratio,omitempty"`
	// EchoRise is the step's held-out echo share less the base model's, where the echo
	// guard judged it.
	EchoRise float64 `json:"echo_rise,omitempty"`
}

// better reports whether v beats the best so far under mode (max or min); a tie does not.
func better(v float64, best *bestState, mode string) bool {
	if best == nil {
		return true
	}
	if mode == "min" {
		return v < best.Value
	}
	return v > best.Value
}

// bestMode is output.keep_best_mode, empty meaning max.
func (r *run) bestMode() string {
	if m := r.cfg.Output.KeepBestMode; m != "" {
		return m
	}
	return "max"
}

// keepBest makes the learner's state after step the best checkpoint when its value of
// output.keep_best (in the step's eval metrics) beats the best so far. A step whose
// evaluation lacks the metric (calibration with no correct completion) is not a
// candidate.
func (r *run) keepBest(step int, metrics map[string]float64) error {
	o := r.cfg.Output
	v, ok := metrics[o.KeepBest]
	if o.KeepBest == "" || !ok || !better(v, r.best, r.bestMode()) {
		return nil
	}
	st := bestState{Step: step, Metric: o.KeepBest, Mode: r.bestMode(), Value: v}
	return r.saveBest(st, fmt.Sprintf("best %s so far: %.4g", st.Metric, v))
}

// saveBest makes the learner's state after st.Step the best checkpoint: it writes
// checkpoints/best-step-N with the checkpoint writer, points the link checkpoints/best
// at it (a rename over the old link, so that best always names a complete checkpoint),
// then removes the previous one. why is what the progress line says of it.
func (r *run) saveBest(st bestState, why string) error {
	step := st.Step
	b, _ := json.MarshalIndent(st, "", "  ")
	root := filepath.Join(r.out, "checkpoints")
	name := fmt.Sprintf("best-step-%d", step)
	if err := r.writeCheckpoint(filepath.Join(root, name), step, map[string][]byte{bestFile: b}); err != nil {
		return fmt.Errorf("best checkpoint: %w", err)
	}
	link := filepath.Join(root, "best")
	tmp := filepath.Join(root, ".best"+atomicfile.TempMarker+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Symlink(name, tmp); err != nil {
		return fmt.Errorf("best checkpoint: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("best checkpoint: %w", err)
	}
	if err := atomicfile.SyncDir(root); err != nil {
		return fmt.Errorf("best checkpoint: %w", err)
	}
	if r.best != nil && r.best.Step != step {
		os.RemoveAll(filepath.Join(root, fmt.Sprintf("best-step-%d", r.best.Step)))
	}
	r.best = &st
	fmt.Fprintf(r.progress, "%s at step %d (checkpoints/best)\n", why, step)
	return nil
}

// bestStep is the step checkpoints/best holds, -1 when none.
func (r *run) bestStep() int {
	if r.best == nil {
		return -1
	}
	return r.best.Step
}

// loadBest reads the best checkpoint of a resumed run. One from after the step the run
// resumes from goes: those steps are done again, and their metrics lines went too.
func (r *run) loadBest() error {
	if r.cfg.Output.KeepBest == "" {
		return nil
	}
	root := filepath.Join(r.out, "checkpoints")
	b, err := os.ReadFile(filepath.Join(root, "best", bestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("resume: best checkpoint: %w", err)
	}
	var st bestState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("resume: checkpoints/best/%s: %w", bestFile, err)
	}
	if st.Metric != r.cfg.Output.KeepBest || st.Mode != r.bestMode() || st.Step > r.start {
		// Another metric or mode, or a step to be done again: the best is found anew.
		if err := os.Remove(filepath.Join(root, "best")); err != nil {
			return fmt.Errorf("resume: best checkpoint: %w", err)
		}
		os.RemoveAll(filepath.Join(root, fmt.Sprintf("best-step-%d", st.Step)))
		return nil
	}
	r.best = &st
	return nil
}
