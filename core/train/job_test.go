package train

import (
	"reflect"
	"testing"

	"github.com/rlif/rlif/rewards"
)

// A run alone is a job of one rank whose every operation is the identity, so that the
// step reads the same alone and in a job: its share is the whole step, a vote is its own,
// the step's scores are its own, and its gather returns its own batch.
func TestJobOfOneRankIsTheIdentity(t *testing.T) {
	var j job
	if j.rank() != 0 || j.world() != 1 || !j.lead() {
		t.Fatalf("rank %d of %d, lead %v", j.rank(), j.world(), j.lead())
	}
	if lo, hi := j.share(5); lo != 0 || hi != 5 {
		t.Fatalf("share of 5 prompts: %d…%d", lo, hi)
	}
	for _, local := range []bool{false, true} {
		if got, err := j.any(local); err != nil || got != local {
			t.Fatalf("any(%v) = %v, %v", local, got, err)
		}
	}
	if j.weightsDue(10) {
		t.Fatal("a rank alone compares its weights")
	}
	scores := [][][]rewards.Score{{{{Value: 1, Applicable: true}, {Value: 2}}}}
	all, err := j.allScores(scores, share{lo: 0, hi: 1, prompts: 1}, 2)
	if err != nil || !reflect.DeepEqual(all, scores) {
		t.Fatalf("allScores: %v, %v", all, err)
	}
	own := &scoredBatch{Groups: []rewards.Group{{Prompt: "p"}}, Scores: scores, Advantages: [][]float64{{0.5, -0.5}}, groupSize: 2}
	got, bytes, err := j.gather(1, own)
	if err != nil || got != own || bytes != 0 {
		t.Fatalf("gather: %p (own %p), %v bytes, %v", got, own, bytes, err)
	}
}
