package eval

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/rlif/rlif/core/eval/stats"
	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards/answer"
)

// Record is one evaluated completion: a line of items.jsonl. With one sample per item
// (the default, greedy protocol) there is one record per item.
type Record struct {
	// Index is the item's row in the data file (0-based); Sample is the completion's
	// place in the item's group (0 … n−1).
	Index  int    `json:"index"`
	Sample int    `json:"sample"`
	Prompt string `json:"prompt"`
	Gold   string `json:"gold"`
	// Completion is the generated text; Extracted its final answer (answer.Extract),
	// empty when Extractable is false.
	Completion  string `json:"completion"`
	Extracted   string `json:"extracted"`
	Extractable bool   `json:"extractable"`
	// Correct reports whether Extracted is equivalent to Gold (answer.Equivalent), the
	// check of the accuracy reward.
	Correct bool `json:"correct"`
	// Echo reports whether Extracted is a number the prompt itself states (answer.Echoes):
	// the question restated, not solved.
	Echo bool `json:"echo,omitempty"`
	// SelfCertainty is the completion's mean self-certainty (paper eq. 4).
	SelfCertainty float64 `json:"self_certainty"`
	// Length is the number of generated tokens; FinishReason why generation stopped.
	Length       int    `json:"length"`
	FinishReason string `json:"finish_reason"`
}

// Check returns whether a completion text answers gold: its extracted final answer and
// whether that is equivalent to the gold answer (answer.Check, the accuracy reward's
// rule).
func Check(text, gold string) (extracted string, extractable, correct bool) {
	return answer.Check(text, answer.Prepare(gold))
}

// Score checks the completions of every item; groups[i] are the completions of items[i].
func Score(items []Item, groups [][]rollout.Completion) ([]Record, error) {
	if len(groups) != len(items) {
		return nil, fmt.Errorf("score: %d groups of completions for %d items", len(groups), len(items))
	}
	var recs []Record
	for i, it := range items {
		for j, c := range groups[i] {
			ext, ok, correct := Check(c.Text, it.Gold)
			recs = append(recs, Record{
				Index: it.Index, Sample: j, Prompt: it.Prompt, Gold: it.Gold,
				Completion: c.Text, Extracted: ext, Extractable: ok, Correct: correct, Echo: echoes(it.Prompt, ext, ok),
				SelfCertainty: c.SelfCertaintyMean, Length: len(c.Tokens), FinishReason: c.FinishReason,
			})
		}
	}
	return recs, nil
}

// Summary is what one evaluation measured: summary.json of --out, and a row of the
// side-by-side table.
type Summary struct {
	// Label names the model in tables (the model file's name without extension).
	Label string `json:"label"`
	Model string `json:"model"`
	// Data is the data file; DataName its name without extension (a table column).
	Data     string `json:"data"`
	DataName string `json:"data_name"`
	Settings

	Items       int `json:"items"`
	Completions int `json:"completions"`
	// Accuracy is the fraction of correct completions (with one sample per item, of
	// items), with its 95% Wilson interval [AccuracyLow, AccuracyHigh]. With several
	// samples per item the interval treats completions as independent, which they are
	// not quite: read it as a lower bound on the uncertainty.
	Accuracy float64 `json:"accuracy"`
	// Unlabeled says the items had no gold answers (a run's eval.unlabeled): the
	// accuracy, pass@k, maj@k and calibration are then not measured and read 0.
	Unlabeled    bool    `json:"unlabeled,omitempty"`
	Correct      int     `json:"correct"`
	AccuracyLow  float64 `json:"accuracy_ci_low"`
	AccuracyHigh float64 `json:"accuracy_ci_high"`
	// Extractable is the fraction of completions with an extractable final answer;
	// Boxed the fraction with an answer in \boxed{…} (answer.Boxed, the format reward's
	// "boxed" layout).
	Extractable float64 `json:"extractable"`
	Boxed       float64 `json:"boxed"`
	// Echo is the fraction of completions whose answer is a number their prompt states
	// (Record.Echo), a label-free sign of a model restating questions instead of solving
	// them.
	Echo float64 `json:"echo"`
	// Truncated is the fraction of completions stopped by the max-tokens limit.
	Truncated         float64 `json:"truncated"`
	MeanLength        float64 `json:"mean_length"`
	MeanSelfCertainty float64 `json:"mean_self_certainty"`
	// PassAtK maps k to the mean over items of the unbiased pass@k estimator, for k = 1,
	// 2, 4, … and n (only with several samples per item). MajAtK is the fraction of items
	// whose plurality answer over their n samples is correct (MajorityCorrect).
	PassAtK map[string]float64 `json:"pass_at_k,omitempty"`
	MajAtK  *float64           `json:"maj_at_k,omitempty"`

	Calibration Calibration `json:"calibration"`
	// Consistency is the same comparison with no gold answer: completions that agree
	// with their item's plurality answer (Correct) against the others, those without an
	// answer included (Incorrect). Whether the model is more certain when it agrees with
	// itself is what a label-free reward can sharpen (rlif probe); only with several
	// samples per item.
	Consistency *Calibration `json:"consistency,omitempty"`

	WallSeconds     float64 `json:"wall_seconds"`
	Tokens          int     `json:"tokens"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	// Threads is the number of CPU threads used; a wall time means little without it.
	Threads int    `json:"threads,omitempty"`
	Started string `json:"started,omitempty"`
}

// Settings are the decoding settings of an evaluation.
type Settings struct {
	System string `json:"system"`
	// Raw feeds BOS + prompt without the chat template (base models); System is then unused.
	Raw         bool    `json:"raw,omitempty"`
	MaxTokens   int     `json:"max_tokens"`
	N           int     `json:"n"`
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
	TopK        int     `json:"top_k"`
	MinP        float64 `json:"min_p"`
	Seed        uint64  `json:"seed"`
	Batch       int     `json:"batch"`
}

// Calibration compares the self-certainty of correct and incorrect completions (the
// Intuitor paper's Figure 8): a well-calibrated model is more certain when it is right.
type Calibration struct {
	Correct   int `json:"correct"`
	Incorrect int `json:"incorrect"`
	// Means and medians of the completions' self-certainty; absent for an empty class.
	MeanCorrect     *float64 `json:"mean_correct,omitempty"`
	MeanIncorrect   *float64 `json:"mean_incorrect,omitempty"`
	MedianCorrect   *float64 `json:"median_correct,omitempty"`
	MedianIncorrect *float64 `json:"median_incorrect,omitempty"`
	// Test is the two-sided Mann–Whitney U test of correct (x) against incorrect (y)
	// self-certainty: U of the correct ones, Z, p, r = Z/√N (positive: correct
	// completions are more certain) and the AUC. Absent when a class is empty.
	Test *stats.MannWhitney `json:"mann_whitney,omitempty"`
}

// Summarize computes the summary of an evaluation's records; n is the number of samples
// per item. The label, paths, settings and timing fields are left for the caller.
func Summarize(recs []Record, n int) (Summary, error) {
	if len(recs) == 0 {
		return Summary{}, fmt.Errorf("summarize: no records")
	}
	if n < 1 || len(recs)%n != 0 {
		return Summary{}, fmt.Errorf("summarize: %d records are not groups of %d", len(recs), n)
	}
	s := Summary{Items: len(recs) / n, Completions: len(recs)}
	var sc, right, wrong []float64
	extractable, boxed, echo, truncated, length := 0, 0, 0, 0, 0
	for _, r := range recs {
		if r.Correct {
			s.Correct++
			right = append(right, r.SelfCertainty)
		} else {
			wrong = append(wrong, r.SelfCertainty)
		}
		if r.Extractable {
			extractable++
		}
		if r.Echo {
			echo++
		}
		if _, ok := answer.Boxed(r.Completion); ok {
			boxed++
		}
		if r.FinishReason == rollout.FinishLength {
			truncated++
		}
		length += r.Length
		sc = append(sc, r.SelfCertainty)
	}
	total := float64(len(recs))
	s.Accuracy = float64(s.Correct) / total
	s.AccuracyLow, s.AccuracyHigh = stats.Wilson(s.Correct, len(recs), stats.Z95)
	s.Extractable = float64(extractable) / total
	s.Boxed = float64(boxed) / total
	s.Echo = float64(echo) / total
	s.Truncated = float64(truncated) / total
	s.MeanLength = float64(length) / total
	s.MeanSelfCertainty = moments.Mean(sc)
	s.Tokens = length

	cal, err := calibrate(right, wrong)
	if err != nil {
		return Summary{}, err
	}
	s.Calibration = cal

	if n > 1 {
		pass, maj, err := groupMetrics(recs, n)
		if err != nil {
			return Summary{}, err
		}
		s.PassAtK, s.MajAtK = pass, &maj
		if s.Consistency, err = consistency(recs, n); err != nil {
			return Summary{}, err
		}
	}
	return s, nil
}

// consistency compares the self-certainty of the completions in their item's plurality
// cluster with that of the rest (Summary.Consistency), over items of n consecutive
// records each.
func consistency(recs []Record, n int) (*Calibration, error) {
	var agree, rest []float64
	for i := 0; i+n <= len(recs); i += n {
		group := recs[i : i+n]
		c := clusters(group)
		k, ok := c.Plurality()
		for j, r := range group {
			if ok && c.Of[j] == k {
				agree = append(agree, r.SelfCertainty)
			} else {
				rest = append(rest, r.SelfCertainty)
			}
		}
	}
	c, err := calibrate(agree, rest)
	if err != nil {
		return nil, fmt.Errorf("consistency: %w", err)
	}
	return &c, nil
}

func calibrate(right, wrong []float64) (Calibration, error) {
	c := Calibration{Correct: len(right), Incorrect: len(wrong)}
	if len(right) > 0 {
		c.MeanCorrect, c.MedianCorrect = ptr(moments.Mean(right)), ptr(stats.Median(right))
	}
	if len(wrong) > 0 {
		c.MeanIncorrect, c.MedianIncorrect = ptr(moments.Mean(wrong)), ptr(stats.Median(wrong))
	}
	if len(right) > 0 && len(wrong) > 0 {
		mw, err := stats.MannWhitneyU(right, wrong, true)
		if err != nil {
			return Calibration{}, fmt.Errorf("calibration: %w", err)
		}
		c.Test = &mw
	}
	return c, nil
}

func ptr(x float64) *float64 { return &x }

// groupMetrics computes pass@k for k = 1, 2, 4, … and n, and maj@n, over items of n
// consecutive records each.
func groupMetrics(recs []Record, n int) (map[string]float64, float64, error) {
	var ks []int
	for k := 1; k < n; k *= 2 {
		ks = append(ks, k)
	}
	ks = append(ks, n)
	sums := make([]float64, len(ks))
	majority := 0
	items := len(recs) / n
	for i := 0; i < items; i++ {
		group := recs[i*n : (i+1)*n]
		c := 0
		for _, r := range group {
			if r.Correct {
				c++
			}
		}
		for j, k := range ks {
			p, err := stats.PassAtK(n, c, k)
			if err != nil {
				return nil, 0, err
			}
			sums[j] += p
		}
		if MajorityCorrect(group) {
			majority++
		}
	}
	pass := make(map[string]float64, len(ks))
	for j, k := range ks {
		pass[strconv.Itoa(k)] = sums[j] / float64(items)
	}
	return pass, float64(majority) / float64(items), nil
}

// MajorityCorrect reports whether the plurality answer of one item's completions is
// correct: the answers are clustered and the largest cluster wins, a tie going to the
// cluster that appeared first (answer.Cluster and Clusters.Plurality, as for the
// plurality_vote reward). Completions without an answer do not vote.
func MajorityCorrect(group []Record) bool {
	j, ok := majority(group)
	return ok && group[j].Correct
}

// majority returns the index of the record that opened the plurality cluster of
// group, whose answer is the group's majority answer; ok is false when no record has
// an answer.
func majority(group []Record) (j int, ok bool) {
	c := clusters(group)
	k, ok := c.Plurality()
	if !ok {
		return -1, false
	}
	return c.First[k], true
}

// clusters groups one item's records by their extracted answers (answer.Cluster).
func clusters(group []Record) answer.Clusters {
	answers := make([]string, len(group))
	for i, r := range group {
		if r.Extractable {
			answers[i] = r.Extracted
		}
	}
	return answer.Cluster(answers)
}

// PassKeys returns the k of a PassAtK map in increasing order.
func PassKeys(m map[string]float64) []int {
	ks := make([]int, 0, len(m))
	for s := range m {
		if k, err := strconv.Atoi(s); err == nil {
			ks = append(ks, k)
		}
	}
	sort.Ints(ks)
	return ks
}

// echoes is Record.Echo: the completion has an answer, and it is a number the prompt states.
func echoes(prompt, extracted string, extractable bool) bool {
	return extractable && answer.Echoes(prompt, extracted)
}

// FillEcho sets Record.Echo of records written before rlif recorded it (they read false).
func FillEcho(recs []Record) {
	for i := range recs {
		recs[i].Echo = echoes(recs[i].Prompt, recs[i].Extracted, recs[i].Extractable)
	}
}
