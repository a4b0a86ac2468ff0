package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/report"
	"github.com/rlif/rlif/core/tensorboard"
)

// TestRunWritesReportAndEvents: a real two-step run leaves report.html with its charts
// and a TensorBoard event file whose scalars are the metrics.jsonl values.
func TestRunWritesReportAndEvents(t *testing.T) {
	out := t.TempDir()
	if _, err := Run(context.Background(), storiesRun(t, out, 2), Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(out, report.File))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`aria-label="loss"`, `aria-label="reward/self_certainty (mean ± std)"`, `<tr data-step="2"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}

	files, err := filepath.Glob(filepath.Join(out, "tb", "events.out.tfevents.*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("event files %v (%v): want one", files, err)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, err := tensorboard.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	metrics := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(evs) != 1+len(metrics) {
		t.Fatalf("%d events for %d steps: want the file version and one per step", len(evs), len(metrics))
	}
	for i, m := range metrics {
		e := evs[i+1]
		if e.Step != int64(m["step"]) {
			t.Errorf("event %d: step %d, want %v", i+1, e.Step, m["step"])
		}
		for k, v := range m {
			if k == "step" {
				continue
			}
			if got, ok := e.Scalars[k]; !ok || got != float32(v) {
				t.Errorf("step %v: %s = %v (present %v), metrics.jsonl has %v", m["step"], k, got, ok, v)
			}
		}
	}
}
