package learner

import (
	"math/rand/v2"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// TestStepProgress: Step reports every micro-batch of every pass, in order, out of μ ×
// micro-batches.
func TestStepProgress(t *testing.T) {
	m := openLearner(t, testutil.StoriesModel(t))
	rng := rand.New(rand.NewPCG(7, 8))
	var samples []Sample
	for i := 0; i < 5; i++ {
		samples = append(samples, Sample{Prompt: randomTokens(rng, 4), Completion: randomTokens(rng, 6), Advantage: float64(i) - 2})
	}
	var got [][2]int
	tr, err := NewTrainer(m, TrainConfig{Mu: 2, MicroBatch: 2, LR: 1e-4, Progress: func(done, total int) { got = append(got, [2]int{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.Step(samples); err != nil {
		t.Fatal(err)
	}
	// 5 samples in micro-batches of 2 are 3 micro-batches; 2 passes make 6.
	if len(got) != 6 {
		t.Fatalf("progress %v: want 6 calls", got)
	}
	for i, g := range got {
		if g != [2]int{i + 1, 6} {
			t.Errorf("call %d: %v, want [%d 6]", i, g, i+1)
		}
	}
}
