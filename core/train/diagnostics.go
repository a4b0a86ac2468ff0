package train

import (
	"encoding/binary"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/answer"
)

// EchoKey is the metrics.jsonl key of Diagnostics.Echo.
const EchoKey = "answer/echo_ratio"

// EvalEchoKey and EvalExtractableKey are the metrics.jsonl keys of an evaluation's echo
// and extractable shares (eval.Summary), which the health rule's echo guard reads.
const (
	EvalEchoKey        = "eval/echo"
	EvalExtractableKey = "eval/extractable"
)

// RepetitionN is the n-gram length of the repetition diagnostic
// (completion/repetition_4gram).
const RepetitionN = 4

// Diagnostics are the signs of collapse a step shows: label-free rewards are reported to
// rise and then fall ("No Free Lunch", arXiv 2506.17219; SRT, arXiv 2505.21444) as groups
// stop disagreeing and completions repeat themselves, and, where the data has gold
// answers, the accuracy the run never trains on.
type Diagnostics struct {
	// ZeroSpread is, per reward, the fraction of groups whose applicable scores are all
	// equal (fewer than two applicable scores count too): such a group gives that reward
	// no signal. AdvantageZeroSpread is the same for the groups' final advantages.
	ZeroSpread          map[string]float64
	AdvantageZeroSpread float64
	// MajorityRatio is the mean over groups of the plurality answer's share of the group
	// (answer.Cluster, the plurality_vote reward's clustering); completions without an
	// answer count in the group but do not vote, so a group without any answer has 0.
	MajorityRatio float64
	// ClusterEntropy is the mean over groups of their semantic-cluster entropy in nats
	// (answer.Clusters.Entropy, what EMPO's filter thresholds); EntropyMasked is the
	// number of groups the filter (advantage.entropy_filter_max) gave no advantage,
	// and Filtering whether it is on.
	ClusterEntropy float64
	EntropyMasked  int
	Filtering      bool
	// Repetition is the mean over completions of RepetitionRate of their token ids.
	Repetition float64
	// Echo is the fraction of completions whose answer is a number their prompt states
	// (answer.Echoes): near 0 while a model computes on arithmetic, near 1 in each
	// collapse seen here, where completions restate the question.
	Echo float64
	// Gold is the number of groups whose row has a gold answer; Accuracy is the fraction
	// of those groups' completions whose answer is correct (the accuracy reward's rule,
	// answer.Check), PluralityAccuracy the fraction of those groups whose plurality
	// answer is (eval.MajorityCorrect, maj@G): the accuracy of plurality_vote's
	// pseudo-labels, TTRL's "label accuracy". The answer diagnostics are over all the
	// completions sampled for a prompt: with vote_n, over the whole vote group.
	Gold                        int
	Accuracy, PluralityAccuracy float64
}

// RepetitionRate is the fraction of the n-grams of tokens that repeat an earlier n-gram
// of the same sequence: (n-grams − distinct n-grams) / n-grams, in [0, 1). 0 when the
// sequence has fewer than n tokens (no n-gram repeats).
func RepetitionRate(tokens []int32, n int) float64 {
	total := len(tokens) - n + 1
	if n < 1 || total <= 0 {
		return 0
	}
	seen := make(map[string]struct{}, total)
	key := make([]byte, 4*n)
	for i := 0; i < total; i++ {
		for j, t := range tokens[i : i+n] {
			binary.LittleEndian.PutUint32(key[4*j:], uint32(t))
		}
		seen[string(key)] = struct{}{}
	}
	return float64(total-len(seen)) / float64(total)
}

// zeroSpread reports whether the values are all equal.
func zeroSpread(vals []float64) bool {
	for _, v := range vals[min(1, len(vals)):] {
		if v != vals[0] {
			return false
		}
	}
	return true
}

// diagnose computes the diagnostics of a step's batch: its groups' scores (b.Scores[k]
// are reward k's), advantages, the gold answers in the rows' answerField, and the groups
// the advantage options' filter masked. A group may hold more completions than its
// scores (a vote group): the answer diagnostics read them all.
func diagnose(specs []rewards.Spec, b *scoredBatch, answerField string, opt advantage.Options) (Diagnostics, error) {
	groups, scores, adv := b.Groups, b.Scores, b.Advantages
	d := Diagnostics{ZeroSpread: map[string]float64{}, Filtering: opt.EntropyFilterMax > 0}
	ng := float64(max(1, len(groups)))
	for k, s := range specs {
		flat := 0
		for _, g := range scores[k] {
			var vals []float64
			for _, v := range g {
				if v.Applicable {
					vals = append(vals, v.Value)
				}
			}
			if zeroSpread(vals) {
				flat++
			}
		}
		d.ZeroSpread[s.Name] = float64(flat) / ng
	}
	flat := 0
	for _, a := range adv {
		if zeroSpread(a) {
			flat++
		}
	}
	d.AdvantageZeroSpread = float64(flat) / ng

	n, reps := 0, 0.0
	for i, g := range groups {
		item := eval.Item{Index: i, Prompt: g.Prompt, Gold: answer.Gold(g.Fields[answerField])}
		recs, err := eval.Score([]eval.Item{item}, [][]rollout.Completion{g.Completions})
		if err != nil {
			return Diagnostics{}, err
		}
		answers := make([]string, len(recs))
		for j, rec := range recs {
			if rec.Extractable {
				answers[j] = rec.Extracted
			}
			reps += RepetitionRate(g.Completions[j].Tokens, RepetitionN)
			if rec.Echo {
				d.Echo++
			}
			n++
		}
		if c := answer.Cluster(answers); len(recs) > 0 {
			if k, ok := c.Plurality(); ok {
				d.MajorityRatio += float64(c.Size[k]) / float64(len(recs))
			}
			h := c.Entropy()
			d.ClusterEntropy += h
			if opt.Filters(h) {
				d.EntropyMasked++
			}
		}
		if item.Gold == "" {
			continue
		}
		d.Gold++
		right := 0
		for _, rec := range recs {
			if rec.Correct {
				right++
			}
		}
		d.Accuracy += float64(right) / float64(max(1, len(recs)))
		if eval.MajorityCorrect(recs) {
			d.PluralityAccuracy++
		}
	}
	d.MajorityRatio /= ng
	d.ClusterEntropy /= ng
	d.Repetition = reps / float64(max(1, n))
	d.Echo /= float64(max(1, n))
	if d.Gold > 0 {
		d.Accuracy /= float64(d.Gold)
		d.PluralityAccuracy /= float64(d.Gold)
	}
	return d, nil
}

// add puts the diagnostics under their metrics.jsonl keys.
func (d Diagnostics) add(out map[string]float64) {
	for name, v := range d.ZeroSpread {
		out["reward/"+name+"/zero_spread"] = v
	}
	out["advantage/zero_spread"] = d.AdvantageZeroSpread
	out["answer/majority_ratio"] = d.MajorityRatio
	out["answer/cluster_entropy"] = d.ClusterEntropy
	if d.Filtering {
		out["advantage/entropy_masked"] = float64(d.EntropyMasked)
	}
	out["completion/repetition_4gram"] = d.Repetition
	out[EchoKey] = d.Echo
	if d.Gold > 0 {
		out["train/accuracy"] = d.Accuracy
		out["train/plurality_accuracy"] = d.PluralityAccuracy
	}
}
