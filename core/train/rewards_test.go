package train

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/rewards"
)

// A reward that scores every completion of a step "not applicable" (here accuracy on
// the step's two rows, which have no gold answer; a later row has one, so the run
// starts) is reported on the progress output and in the applicable metric, and the
// run goes on.
func TestInapplicableRewardReported(t *testing.T) {
	dir := t.TempDir()
	dataPath := filepath.Join(dir, "d.jsonl")
	rows := `{"prompt": "Once upon a time"}
{"prompt": "The cat"}
{"prompt": "One day", "answer": "7"}
`
	if err := os.WriteFile(dataPath, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	r := storiesRun(t, out, 1)
	r.Data.Path, r.Data.Shuffle = dataPath, false
	r.Rewards = []config.Reward{{Spec: rewards.Spec{Name: "self_certainty"}}, {Spec: rewards.Spec{Name: "accuracy"}}}
	var progress strings.Builder
	if _, err := Run(context.Background(), r, Options{Executable: rlifBin, Progress: &progress}); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	want := `warning: step 1: reward accuracy scored every completion "not applicable"`
	if n := strings.Count(progress.String(), want); n != 1 {
		t.Errorf("progress has %d warnings %q, want 1:\n%s", n, want, progress.String())
	}
	if strings.Contains(progress.String(), "reward self_certainty scored every") {
		t.Errorf("a warning names an applicable reward:\n%s", progress.String())
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 1 || ms[0]["reward/accuracy/applicable"] != 0 || ms[0]["reward/self_certainty/applicable"] != 1 {
		t.Errorf("metrics %v", ms)
	}
}

// rlif train refuses an accuracy reward whose answer field no row has, and the field
// it checks is the one the reward reads (data.answer_field).
func TestAnswerFieldChecked(t *testing.T) {
	dir := t.TempDir()
	dataPath := filepath.Join(dir, "d.jsonl")
	if err := os.WriteFile(dataPath, []byte(`{"prompt": "One day", "answer": "7"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := storiesRun(t, filepath.Join(dir, "run"), 1)
	r.Data.Path, r.Data.AnswerField = dataPath, "solution"
	r.Rewards = []config.Reward{{Spec: rewards.Spec{Name: "accuracy"}}}
	_, err := Run(context.Background(), r, Options{Executable: rlifBin})
	if err == nil || !strings.Contains(err.Error(), `no row has the "solution" field`) {
		t.Fatalf("got %v, want the missing answer field refused", err)
	}
}
