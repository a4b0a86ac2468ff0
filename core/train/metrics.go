package train

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// RewardStats are one reward's scores over a step (applicable scores only).
type RewardStats struct {
	Mean, Std  float64
	Applicable float64 // fraction of completions the reward scored
}

// Keys of metrics.jsonl that the health rule reads back (HealthPoints).
const (
	keyEntropyMean = "entropy/mean"
	keyLengthMean  = "completion_length/mean"
)

// Metrics is one step's line of metrics.jsonl.
type Metrics struct {
	Step    int
	Epoch   int
	Rewards map[string]RewardStats
	names   []string // reward names in config order

	AdvantageStd      float64
	SelfCertaintyMean float64
	EntropyMean       float64
	LengthMean        float64
	LengthMax         float64
	Tokens            int
	FinishEOS         float64 // fraction of completions that ended at end-of-generation

	Loss, KL, GradNorm, LR, RatioMean, ISMean float64
	ClipLow, ClipHigh, ClipRegion, KLClamped  float64

	Time struct{ Sample, Score, Learn, Sync float64 }
	// Peak is the process's resident-set high-water mark in each phase, in bytes
	// (memory.go); 0 where it could not be read.
	Peak struct{ Sample, Learn, Sync int64 }
	// AllReduceBytes and AllReduceSeconds are what the learner's all-reduces sent and took
	// in a data-parallel job (rank 0's), ReportBytes what the other ranks reported to rank
	// 0 (their groups); written only in a job.
	AllReduceBytes, AllReduceSeconds, ReportBytes float64
	// TokensPerSecond is completion tokens over the step's phases (sample, score, learn,
	// sync: an evaluation's time is not the step's).
	TokensPerSecond float64

	// Diag are the collapse diagnostics (diagnostics.go); Eval the held-out evaluation's
	// metrics at the steps that have one (evaluate.go), nil at the others.
	Diag Diagnostics
	Eval map[string]float64
	// Health is the label-free health rule's verdict on the step (health.go).
	Health *health.Verdict
}

// observe records the batch's training completions, their scores and advantages.
func (m *Metrics) observe(specs []rewards.Spec, b *scoredBatch) {
	var sc, ent, lens, advs []float64
	eos := 0
	adv, scores := b.Advantages, b.Scores
	for i, g := range b.training() {
		for j, c := range g.Completions {
			sc = append(sc, c.SelfCertaintyMean)
			ent = append(ent, moments.Mean(c.Entropy))
			lens = append(lens, float64(len(c.Tokens)))
			advs = append(advs, adv[i][j])
			m.Tokens += len(c.Tokens)
			if c.FinishReason == rollout.FinishEOS {
				eos++
			}
		}
	}
	m.SelfCertaintyMean = moments.Mean(sc)
	m.EntropyMean = moments.Mean(ent)
	m.LengthMean = moments.Mean(lens)
	for _, l := range lens {
		m.LengthMax = math.Max(m.LengthMax, l)
	}
	_, m.AdvantageStd = moments.MeanStd(advs)
	m.FinishEOS = float64(eos) / float64(max(1, len(lens)))
	for k, s := range specs {
		var vals []float64
		total := 0
		for _, g := range scores[k] {
			for _, v := range g {
				total++
				if v.Applicable {
					vals = append(vals, v.Value)
				}
			}
		}
		mean, std := moments.MeanStd(vals)
		m.Rewards[s.Name] = RewardStats{Mean: mean, Std: std, Applicable: float64(len(vals)) / float64(max(1, total))}
		m.names = append(m.names, s.Name)
	}
}

// inapplicable returns the rewards, in config order, that scored no completion of the
// step (reward/NAME/applicable = 0). Such a step is reported, not refused: a reward
// may rightly not apply to a step's prompts (a gold answer only some rows have), and
// the run's start already refuses an answer field that no row has.
func (m *Metrics) inapplicable() []string {
	var names []string
	for _, n := range m.names {
		if m.Rewards[n].Applicable == 0 {
			names = append(names, n)
		}
	}
	return names
}

func (m *Metrics) learner(st learner.StepStats) {
	m.Loss, m.KL, m.GradNorm, m.LR = st.Loss, st.KL, st.GradNorm, st.LR
	m.RatioMean, m.ISMean = st.RatioMean, st.ISMean
	m.ClipLow, m.ClipHigh, m.ClipRegion, m.KLClamped = st.ClipLow, st.ClipHigh, st.ClipRegion, st.KLClamped
	m.AllReduceBytes, m.AllReduceSeconds = st.CommBytes, st.CommSeconds
}

func (m *Metrics) finish() {
	total := m.Time.Sample + m.Time.Score + m.Time.Learn + m.Time.Sync
	if total > 0 {
		m.TokensPerSecond = float64(m.Tokens) / total
	}
}

// Map returns the metrics under their metrics.jsonl keys.
func (m *Metrics) Map() map[string]float64 {
	out := map[string]float64{
		"step":                  float64(m.Step),
		"epoch":                 float64(m.Epoch),
		"advantage/std":         m.AdvantageStd,
		"self_certainty/mean":   m.SelfCertaintyMean,
		keyEntropyMean:          m.EntropyMean,
		keyLengthMean:           m.LengthMean,
		"completion_length/max": m.LengthMax,
		"completion/eos_ratio":  m.FinishEOS,
		"clip_ratio/low":        m.ClipLow,
		"clip_ratio/high":       m.ClipHigh,
		"clip_ratio/region":     m.ClipRegion,
		"kl":                    m.KL,
		"kl/clamped":            m.KLClamped,
		"loss":                  m.Loss,
		"grad_norm":             m.GradNorm,
		"lr":                    m.LR,
		"ratio/mean":            m.RatioMean,
		"is_weight/mean":        m.ISMean,
		"time/sample":           m.Time.Sample,
		"time/score":            m.Time.Score,
		"time/learn":            m.Time.Learn,
		"time/sync":             m.Time.Sync,
		PeakSampleKey:           gib(m.Peak.Sample),
		PeakLearnKey:            gib(m.Peak.Learn),
		PeakSyncKey:             gib(m.Peak.Sync),
		"tokens":                float64(m.Tokens),
		"tokens_per_second":     m.TokensPerSecond,
	}
	for name, s := range m.Rewards {
		out["reward/"+name+"/mean"] = s.Mean
		out["reward/"+name+"/std"] = s.Std
		out["reward/"+name+"/applicable"] = s.Applicable
	}
	if m.AllReduceBytes > 0 {
		out["dist/allreduce_bytes"] = m.AllReduceBytes
		out["time/allreduce"] = m.AllReduceSeconds
		out["dist/report_bytes"] = m.ReportBytes
	}
	m.Diag.add(out)
	if v := m.Health; v != nil {
		out["health/length_ratio"] = v.LengthRatio
		out["health/entropy_ratio"] = v.EntropyRatio
		out["health/healthy"] = b2f(v.Healthy)
		out["health/collapsed"] = b2f(v.Collapsed)
		if v.ByEcho {
			out["health/echo_rise"] = v.EchoRise
		}
	}
	for k, v := range m.Eval {
		out[k] = v
	}
	for k, v := range out {
		out[k] = orZero(v)
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (r *run) writeMetrics(m *Metrics) error {
	return r.writeMetricsLine(m.Map())
}

// writeMetricsLine appends one line to metrics.jsonl and syncs it.
func (r *run) writeMetricsLine(line map[string]float64) error {
	b, err := json.Marshal(line) // map keys are written sorted: stable lines
	if err != nil {
		return err
	}
	if _, err := r.metrics.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return r.metrics.Sync()
}

// progressLine is what the user sees after every step.
func progressLine(m *Metrics, total, start int, began time.Time) string {
	elapsed := time.Since(began)
	done := m.Step - start
	left := eta(elapsed/time.Duration(max(done, 1)), total-m.Step)
	var rw []string
	for _, n := range m.names {
		rw = append(rw, fmt.Sprintf("%s %.3f", n, m.Rewards[n].Mean))
	}
	return fmt.Sprintf("step %d/%d · %s elapsed, ETA %s · reward %s · self-certainty %.3f · len %.0f · kl %.4f · loss %.4f · sample %.1fs score %.2fs learn %.1fs sync %.1fs",
		m.Step, total, elapsed.Round(time.Second), fmtETA(left), strings.Join(rw, ", "),
		m.SelfCertaintyMean, m.LengthMean, m.KL, m.Loss, m.Time.Sample, m.Time.Score, m.Time.Learn, m.Time.Sync)
}

// rewindLog keeps the lines of a JSON-lines log (metrics.jsonl, completions.jsonl) whose
// step is at most step: a resumed run writes the steps after its checkpoint again. A
// line cut short by a crash goes too.
func rewindLog(path string, step int) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var keep []byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break // no newline: a partial last line
		}
		line := b[:i+1]
		b = b[i+1:]
		var rec struct {
			Step *float64 `json:"step"`
		}
		if json.Unmarshal(line, &rec) == nil && rec.Step != nil && int(*rec.Step) <= step {
			keep = append(keep, line...)
		}
	}
	return atomicfile.WriteFile(path, keep)
}

// orZero is x, or 0 when x is not finite: metrics.jsonl is JSON, which has no NaN.
func orZero(x float64) float64 {
	if !num.Finite(x) {
		return 0
	}
	return x
}
