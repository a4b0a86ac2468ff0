package train

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/rewards"
)

// job is the run's place in its data-parallel job: the one seam between the training
// step and distribution. A run alone is a job of one rank, in which every operation is
// the identity: its share of a step is the whole step, a vote or a sum over the ranks is
// its own value, and the gather to rank 0 returns its own batch. So the step reads the
// same alone and in a job, and only this file asks which it is.
type job struct {
	g *learner.Group // nil: a job of one rank
	// checkEvery is how many steps pass between comparisons of the ranks' weights
	// (negative: never; a rank alone has nothing to compare).
	checkEvery int
}

func (j job) rank() int {
	if j.g == nil {
		return 0
	}
	return j.g.Rank()
}

func (j job) world() int {
	if j.g == nil {
		return 1
	}
	return j.g.World()
}

// lead says whether this rank writes the run directory: rank 0.
func (j job) lead() bool { return j.rank() == 0 }

// group is the learner's process group: nil for a rank alone, which the learner takes
// as no group.
func (j job) group() *learner.Group { return j.g }

// share is this rank's part of a step's n prompts: a contiguous slice, the same on
// every rank for the same data position, so that a resume continues exactly.
func (j job) share(n int) (lo, hi int) {
	w, k := j.world(), j.rank()
	return k * n / w, (k + 1) * n / w
}

// any says whether local holds on any rank: all ranks decide together at the same point.
func (j job) any(local bool) (bool, error) {
	if j.g == nil {
		return local, nil
	}
	v := []float64{0}
	if local {
		v[0] = 1
	}
	if err := j.g.Max(v); err != nil {
		return false, err
	}
	return v[0] > 0, nil
}

// send puts value under key for each other rank (key(k) for rank k); a rank alone has
// none to tell.
func (j job) send(key func(rank int) string, value []byte) error {
	for k := 1; k < j.world(); k++ {
		if err := j.g.Put(key(k), value); err != nil {
			return err
		}
	}
	return nil
}

// receive takes what rank 0 sent this rank under key.
func (j job) receive(key func(rank int) string) ([]byte, error) {
	if j.g == nil {
		return nil, fmt.Errorf("rank 0 has nothing to send to itself (%s)", key(0))
	}
	return j.g.Take(key(j.rank()))
}

// weightsDue says whether the ranks' weights are compared after step.
func (j job) weightsDue(step int) bool {
	return j.g != nil && j.checkEvery > 0 && step%j.checkEvery == 0
}

// close leaves the job.
func (j job) close() {
	if j.g != nil {
		j.g.Close()
	}
}

// allScores are the scores of the whole step on every rank, from each rank's own
// (groups at.lo… of at.prompts): each rank lays its scores into one vector of (value,
// applicable) per completion, zero elsewhere, and the vectors are summed over the
// ranks. A rank alone holds the whole step already.
func (j job) allScores(scores [][][]rewards.Score, at share, groupSize int) ([][][]rewards.Score, error) {
	if j.world() == 1 {
		return scores, nil
	}
	G, prompts := groupSize, at.prompts
	v := make([]float64, 2*len(scores)*prompts*G)
	pos := func(k, i, jj int) int { return 2 * ((k*prompts+i)*G + jj) }
	for k := range scores {
		for i, g := range scores[k] {
			if len(g) != G {
				return nil, fmt.Errorf("group %d has %d scores, want %d", at.lo+i, len(g), G)
			}
			for jj, s := range g {
				if s.Applicable {
					v[pos(k, at.lo+i, jj)], v[pos(k, at.lo+i, jj)+1] = s.Value, 1
				}
			}
		}
	}
	if err := j.g.Sum(v); err != nil {
		return nil, err
	}
	out := make([][][]rewards.Score, len(scores))
	for k := range out {
		out[k] = make([][]rewards.Score, prompts)
		for i := range out[k] {
			out[k][i] = make([]rewards.Score, G)
			for jj := range out[k][i] {
				out[k][i][jj] = rewards.Score{Value: v[pos(k, i, jj)], Applicable: v[pos(k, i, jj)+1] > 0}
			}
		}
	}
	return out, nil
}

func reportKey(step, rank int) string { return fmt.Sprintf("step/%d/rank/%d", step, rank) }

// gather brings every rank's scored batch of a step to rank 0, in the order of the
// step's prompts, with the bytes the other ranks' reports took; other ranks (and a rank
// alone) get their own batch back. The per-token arrays stay home: the entropy travels
// as its mean.
func (j job) gather(step int, own *scoredBatch) (*scoredBatch, float64, error) {
	if !j.lead() {
		b, err := json.Marshal(own.light())
		if err != nil {
			return nil, 0, err
		}
		if err := j.g.Put(reportKey(step, j.rank()), b); err != nil {
			return nil, 0, err
		}
		// The barrier, a collective, fails at once when a rank is gone, where a wait in
		// the store would sit out the timeout; after it the reports are there.
		return own, 0, j.g.Barrier()
	}
	if j.world() == 1 {
		return own, 0, nil
	}
	if err := j.g.Barrier(); err != nil {
		return nil, 0, err
	}
	// The step's own batch stays this rank's share: the whole step goes into a new one.
	all := &scoredBatch{Groups: slices.Clone(own.Groups), Scores: slices.Clone(own.Scores), Advantages: slices.Clone(own.Advantages),
		groupSize: own.groupSize, at: own.at}
	for i := range all.Scores {
		all.Scores[i] = slices.Clone(all.Scores[i])
	}
	bytes := 0.0
	for k := 1; k < j.world(); k++ {
		b, err := j.g.Take(reportKey(step, k))
		if err != nil {
			return nil, 0, fmt.Errorf("report of rank %d: %w", k, err)
		}
		bytes += float64(len(b))
		var rep scoredBatch
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, 0, fmt.Errorf("report of rank %d: %w", k, err)
		}
		if len(rep.Scores) != len(all.Scores) {
			return nil, 0, fmt.Errorf("report of rank %d: %d rewards, want %d", k, len(rep.Scores), len(all.Scores))
		}
		all.Groups = append(all.Groups, rep.Groups...)
		for i := range all.Scores {
			all.Scores[i] = append(all.Scores[i], rep.Scores[i]...)
		}
		all.Advantages = append(all.Advantages, rep.Advantages...)
	}
	return all, bytes, nil
}

// light is the batch as a rank reports it to rank 0: the completions without their
// per-token arrays (the entropy as its mean), which the step's metrics, diagnostics and
// completions.jsonl do not need.
func (b *scoredBatch) light() *scoredBatch {
	groups := make([]rewards.Group, len(b.Groups))
	for i, g := range b.Groups {
		groups[i] = g
		groups[i].Completions = append(g.Completions[:0:0], g.Completions...)
		for jj := range groups[i].Completions {
			c := &groups[i].Completions[jj]
			c.PromptTokens, c.LogProb, c.SampledLogProb, c.RawLogProb, c.SelfCertainty = nil, nil, nil, nil, nil
			c.Entropy = []float64{moments.Mean(c.Entropy)}
		}
	}
	return &scoredBatch{Groups: groups, Scores: b.Scores, Advantages: b.Advantages}
}
