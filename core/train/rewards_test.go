package train

import (
	"context"
	"encoding/json"
	"math"
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

// TTRL's vote group and EMPO's filter in a real run: the sampler draws vote_n = 5
// completions a prompt, all are scored and vote, the first group_size = 3 are trained
// on and logged; the filter's entropy is over the 5 votes. The stories model writes
// no final answers in 24 tokens, so each of a group's 5 completions is a cluster of
// its own: ln 5 = 1.61 nats, above the threshold of 1.5 (3 completions could reach
// only ln 3 = 1.10), and every group is masked.
func TestVoteGroupAndEntropyFilter(t *testing.T) {
	dir := t.TempDir()
	dataPath := filepath.Join(dir, "d.jsonl")
	rows := `{"prompt": "Once upon a time", "answer": "7"}
{"prompt": "The cat", "answer": "3"}
`
	if err := os.WriteFile(dataPath, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "run")
	r := storiesRun(t, out, 1)
	r.Data.Path, r.Data.Shuffle = dataPath, false
	r.Advantage.EntropyFilterMax = 1.5
	r.Rewards = []config.Reward{
		{Spec: rewards.Spec{Name: "plurality_vote", Args: map[string]any{"vote_n": int64(5), "mode": "hybrid"}}},
		{Spec: rewards.Spec{Name: "trajectory_entropy"}},
		{Spec: rewards.Spec{Name: "entropy", Args: map[string]any{"window": "last", "k": int64(4)}}},
		{Spec: rewards.Spec{Name: "self_certainty", Args: map[string]any{"window": "answer"}}},
	}
	var progress strings.Builder
	if _, err := Run(context.Background(), r, Options{Executable: rlifBin, Progress: &progress}); err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 1 {
		t.Fatalf("%d metrics lines", len(ms))
	}
	m := ms[0]
	if math.Abs(m["answer/cluster_entropy"]-math.Log(5)) > 1e-12 || m["advantage/entropy_masked"] != 2 || m["advantage/std"] != 0 {
		t.Errorf("cluster entropy %v (want ln 5), groups masked %v (want 2), advantage std %v (want 0)",
			m["answer/cluster_entropy"], m["advantage/entropy_masked"], m["advantage/std"])
	}
	if m["reward/trajectory_entropy/applicable"] != 1 || !(m["reward/trajectory_entropy/mean"] < 0) || m["reward/entropy/applicable"] != 1 {
		t.Errorf("trajectory_entropy %v (applicable %v), entropy applicable %v", m["reward/trajectory_entropy/mean"], m["reward/trajectory_entropy/applicable"], m["reward/entropy/applicable"])
	}
	// The gold answers are there, hidden: the vote's label accuracy is reported.
	if _, ok := m["train/plurality_accuracy"]; !ok {
		t.Error("no train/plurality_accuracy with gold answers in the data")
	}
	// The training groups are logged: 2 prompts × group_size 3, with no advantage.
	b, err := os.ReadFile(filepath.Join(out, "completions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*3 {
		t.Fatalf("completions.jsonl has %d lines, want 6 (the training groups)", len(lines))
	}
	for _, l := range lines {
		var rec struct{ Advantage float64 }
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Advantage != 0 {
			t.Errorf("completion %s: advantage %v (%v), want 0 (masked)", l, rec.Advantage, err)
		}
	}
}
