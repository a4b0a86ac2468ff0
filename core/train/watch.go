package train

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/rlif/rlif/core/report"
	"github.com/rlif/rlif/core/tensorboard"
)

// What a person watches a run through, besides the progress lines: TensorBoard scalars
// in RUN/tb (one event file per process, so a resumed run adds one) and RUN/report.html.

func (r *run) openWatch(start int) error {
	dir := filepath.Join(r.out, "tb")
	// Steps after the checkpoint are done again, as in metrics.jsonl (openLogs).
	if err := tensorboard.Rewind(dir, start); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	tb, err := tensorboard.Create(dir)
	if err != nil {
		return err
	}
	r.tb = tb
	return nil
}

// watchStep adds a finished step's metrics to the TensorBoard log, under the keys of
// metrics.jsonl.
func (r *run) watchStep(m *Metrics) error {
	vals := m.Map()
	delete(vals, "step")
	return r.tb.Scalars(m.Step, time.Now(), vals)
}

// writeReport rewrites RUN/report.html from the run directory. A report that cannot be
// written is said on the progress writer and does not stop training: the metrics it is
// drawn from are safe in metrics.jsonl, and `rlif report RUN` redraws it.
func (r *run) writeReport() {
	run, err := report.Load(r.out)
	if err == nil {
		err = report.Write(filepath.Join(r.out, report.File), []*report.Run{run}, report.Options{})
	}
	if err != nil {
		fmt.Fprintf(r.progress, "report not written: %v\n", err)
	}
}
