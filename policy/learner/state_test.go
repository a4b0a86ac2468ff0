package learner

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// TestLoadStateRefusesAnotherSchedule: a state saved under one schedule's lengths is
// refused by a trainer whose warmup or decay would have other lengths (the LR would
// jump on resume), and accepted where the lengths agree or do not matter.
func TestLoadStateRefusesAnotherSchedule(t *testing.T) {
	path := testutil.StoriesModel(t)
	saved := TrainConfig{LR: 1e-3, Schedule: ScheduleCosine, TotalSteps: 100, WarmupRatio: 0.1}
	m := openLearner(t, path)
	tr, err := NewTrainer(m, saved)
	must(t, err)
	dir := filepath.Join(t.TempDir(), "ckpt")
	must(t, tr.SaveState(dir))
	constant := filepath.Join(t.TempDir(), "constant")
	trc, err := NewTrainer(m, TrainConfig{LR: 1e-3, TotalSteps: 100})
	must(t, err)
	must(t, trc.SaveState(constant))

	for _, tc := range []struct {
		name   string
		state  string
		cfg    TrainConfig
		refuse bool
	}{
		{"same lengths", dir, saved, false},
		{"twice the steps", dir, TrainConfig{LR: 1e-3, Schedule: ScheduleCosine, TotalSteps: 200, WarmupRatio: 0.1}, true},
		{"same total, other warmup", dir, TrainConfig{LR: 1e-3, Schedule: ScheduleCosine, TotalSteps: 100, WarmupSteps: 5}, true},
		{"same warmup given in steps", dir, TrainConfig{LR: 1e-3, Schedule: ScheduleCosine, TotalSteps: 100, WarmupSteps: 10}, false},
		{"constant, more steps", constant, TrainConfig{LR: 1e-3, TotalSteps: 300}, false},
		{"constant, warmup added", constant, TrainConfig{LR: 1e-3, TotalSteps: 100, WarmupSteps: 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr2, err := NewTrainer(m, tc.cfg)
			must(t, err)
			err = tr2.LoadState(tc.state)
			var se *ScheduleError
			if got := errors.As(err, &se); got != tc.refuse {
				t.Fatalf("refused %v (%v), want %v", got, err, tc.refuse)
			}
			if !tc.refuse && err != nil {
				t.Fatal(err)
			}
		})
	}
}
