package answer

import "math"

// Clusters are the final answers of one group of completions, grouped by equivalence.
// Clusters are numbered in order of first appearance.
type Clusters struct {
	// Of[j] is the cluster of answer j, or -1 when completion j has no answer.
	Of []int
	// Size[k] is the number of answers in cluster k.
	Size []int
	// First[k] is the index of the answer that opened cluster k.
	First []int
}

// Cluster groups the answers of one group of completions; answers[j] is completion
// j's final answer (Extract), "" when it has none. An answer with nothing left after
// normalization counts as none. Equivalent is not transitive (numbers compare with a
// tolerance), so the grouping is greedy, in order: an answer joins the first cluster
// whose first answer is equivalent to it, or opens a new one. An answer with the same
// key (Normalize) as an earlier one joins that one's cluster without comparing again:
// equal keys are equivalent, and most answers of a group repeat a key.
//
// It is the one clustering of the label-free answer rewards (semantic_entropy,
// plurality_vote) and of an evaluation's maj@k, so that those agree.
func Cluster(answers []string) Clusters {
	c := Clusters{Of: make([]int, len(answers))}
	var reps []Answer
	byKey := map[string]int{}
	for j, s := range answers {
		c.Of[j] = -1
		if s == "" {
			continue
		}
		a := Prepare(s)
		if a.Empty() {
			continue
		}
		k, found := byKey[a.Key()]
		if !found {
			k = -1
			for i, rep := range reps {
				if rep.Equivalent(a) {
					k = i
					break
				}
			}
			if k < 0 {
				k = len(reps)
				reps = append(reps, a)
				c.Size = append(c.Size, 0)
				c.First = append(c.First, j)
			}
			byKey[a.Key()] = k
		}
		c.Of[j] = k
		c.Size[k]++
	}
	return c
}

// ClusterTexts clusters one group's completions by their final answers: Cluster of
// the answers Extract finds in texts.
func ClusterTexts(texts []string) Clusters {
	answers := make([]string, len(texts))
	for j, t := range texts {
		answers[j], _ = Extract(t)
	}
	return Cluster(answers)
}

// Entropy is the group's semantic-cluster entropy in nats, the quantity EMPO's filter
// thresholds (arXiv 2504.05812; its code's semantic_entropy_math_reward):
// −Σ_k p_k log p_k with p_k = |cluster k| / G over the G completions, where every
// completion without an answer is a cluster of its own (EMPO's "no answer i"
// predictions never match another). 0 when all G answers agree (and for an empty
// group); log G, its largest value, when no two completions agree.
func (c Clusters) Entropy() float64 {
	g := float64(len(c.Of))
	h := 0.0
	term := func(n int) {
		p := float64(n) / g
		h -= p * math.Log(p)
	}
	for _, n := range c.Size {
		term(n)
	}
	for _, k := range c.Of {
		if k < 0 {
			term(1)
		}
	}
	return h
}

// Plurality returns the largest cluster: the group's most frequent answer. A tie goes
// to the cluster that appeared first, the one whose first answer comes earliest in the
// group. ok is false when no completion has an answer.
func (c Clusters) Plurality() (k int, ok bool) {
	if len(c.Size) == 0 {
		return -1, false
	}
	for i, n := range c.Size {
		if n > c.Size[k] {
			k = i
		}
	}
	return k, true
}
