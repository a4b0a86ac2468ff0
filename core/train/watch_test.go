package train

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
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

// A run resumed from a checkpoint older than its last logged step (killed between a
// step's metrics and its checkpoint) does those steps again; its TensorBoard log then has
// each step once, with the resumed run's values, like metrics.jsonl.
func TestResumeRewindsEvents(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 3)
	cfg.Output = config.Output{CheckpointEvery: 2, CompletionsEvery: 1}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	// What a kill after step 3's metrics and before its checkpoint leaves.
	os.RemoveAll(filepath.Join(out, "checkpoints", "step-3"))
	os.RemoveAll(filepath.Join(out, "final"))
	cfg.Learner.Threads = 2 // not part of the configuration's identity; only to be different
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true}); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(out, "tb", "events.out.tfevents.*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("event files %v (%v)", files, err)
	}
	seen := map[int64]int{}
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := tensorboard.Read(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.FileVersion == "" {
				seen[e.Step]++
			}
		}
	}
	if want := map[int64]int{1: 1, 2: 1, 3: 1}; !reflect.DeepEqual(seen, want) {
		t.Fatalf("events per step across %d files: %v, want %v", len(files), seen, want)
	}
}
