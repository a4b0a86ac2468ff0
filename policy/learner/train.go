package learner

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/rlif/rlif/internal/meminfo"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// Loss aggregations.
const (
	LossGRPO   = "grpo"    // mean over each sequence's tokens, then mean over sequences
	LossBNPO   = "bnpo"    // mean over the tokens of each micro-batch, averaged over micro-batches
	LossDAPO   = "dapo"    // mean over all tokens of the batch
	LossDrGRPO = "dr_grpo" // sum over tokens / (sequences × max completion length)
	// LossSeqSum is verl's seq-mean-token-sum: each sequence's summed token losses,
	// averaged over the sequences.
	LossSeqSum = "seq-mean-token-sum"
)

// Losses that change the objective as well, as TRL's loss_type pairs them with an
// aggregation.
const (
	LossCISPO = "cispo" // CISPO's clipped, stop-gradient IS weight; dapo's aggregation
	LossSAPO  = "sapo"  // SAPO's soft gate; grpo's aggregation
)

// verlLosses are verl's loss_agg_mode names for the aggregations above.
var verlLosses = map[string]string{
	"token-mean":              LossDAPO,
	"seq-mean-token-mean":     LossGRPO,
	"seq-mean-token-sum-norm": LossDrGRPO,
	LossSeqSum:                LossSeqSum,
}

// Importance sampling levels (TRL's importance_sampling_level).
const (
	LevelToken    = "token"
	LevelSequence = "sequence" // GSPO
)

// Modes of the sampler/learner mismatch correction (TRL's vllm_importance_sampling_mode).
var isModes = map[string]int{
	"token_truncate":    torch.ISTokenTruncate,
	"token_mask":        torch.ISTokenMask,
	"sequence_truncate": torch.ISSequenceTruncate,
	"sequence_mask":     torch.ISSequenceMask,
}

// Schedules of the learning rate after warmup.
const (
	ScheduleConstant = "constant"
	ScheduleLinear   = "linear"
	ScheduleCosine   = "cosine"
)

// TrainConfig are the GRPO and optimizer settings. Zero values take the defaults noted.
type TrainConfig struct {
	Temperature float64 // of the sampler, so that log-probs match; default 1
	EpsLow      float64 // clip range below 1; default 0.2
	EpsHigh     float64 // clip range above 1; default EpsLow
	Beta        float64 // KL coefficient (k3 estimator) to the frozen reference; 0 holds no reference
	// Loss is the aggregation, grpo (default), bnpo, dapo, dr_grpo, or verl's name of one
	// (token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm), or an
	// objective with its TRL aggregation: cispo, sapo.
	Loss string
	// MaxCompletionLen is dr_grpo's constant length; 0 uses the longest completion in the batch.
	MaxCompletionLen int
	Mu               int     // optimizer passes over each batch; default 1
	MicroBatch       int     // sequences per forward/backward; default the whole batch
	ISCap            float64 // truncated importance sampling cap C on π_old/π_sampler; 0: off

	// ImportanceSamplingLevel is token (default) or sequence: GSPO's one ratio per
	// sequence, the geometric mean of its tokens' ratios, clipped per sequence.
	ImportanceSamplingLevel string
	// Delta > 0 caps the ratio at Delta where the advantage is negative (the two-sided
	// clip of INTELLECT-2); it must exceed 1 + EpsHigh. 0: off.
	Delta float64
	// SAPOTemperaturePos and SAPOTemperatureNeg are SAPO's gate temperatures for positive
	// and other advantages; default 1 and 1.05.
	SAPOTemperaturePos, SAPOTemperatureNeg float64
	// ISMode is how the mismatch weight π_old/π_sampler is computed and bounded:
	// token_truncate (default), token_mask, sequence_truncate, sequence_mask. ISMin is its
	// lower bound (0: none); ISCap its upper one.
	ISMode string
	ISMin  float64
	// OffPolicyMaskThreshold > 0 drops the sequences with a negative advantage whose mean
	// log(π_sampler/π) exceeds it (DeepSeek-V3.2's off-policy sequence masking). 0: off.
	OffPolicyMaskThreshold float64
	// TopEntropyQuantile ρ < 1 trains only the tokens in the top ρ of each micro-batch by
	// entropy (Beyond the 80/20 rule). 0 or 1: every token.
	TopEntropyQuantile float64
	// EntropyCoef c adds the entropy bonus −c × the mean entropy of each optimizer step's
	// trained tokens (of those the entropy mask keeps, over the step's trained tokens) to
	// the loss. 0: off.
	EntropyCoef float64
	// MaskTruncatedCompletions leaves the completions that hit the length limit out of
	// the loss (DAPO's overlong filtering): Sample.Truncated.
	MaskTruncatedCompletions bool
	// StepsPerGeneration splits each batch into this many optimizer steps (in order, of
	// near-equal size), π_old fixed at the policy before the first; μ passes repeat them.
	// Default 1.
	StepsPerGeneration int
	// ActivationRecompute says whether each block's activations are recomputed during the
	// backward pass instead of kept: memory falls from all blocks' activations to one
	// block's, at the cost of one more forward pass. RecomputeAuto (default) decides per
	// micro-batch from its size and the memory available; RecomputeOn, RecomputeOff force it.
	ActivationRecompute string
	// MemoryBudget bounds, in bytes, what this process may hold while learning: auto
	// recomputes a micro-batch's activations when keeping them would take the process's
	// memory in use past it (on the CPU; 0: no bound, only half the available memory).
	MemoryBudget int64
	// Log receives one line whenever the automatic recompute decision changes; nil: none.
	Log io.Writer

	LR           float64 // peak learning rate; default 1e-6
	Schedule     string  // constant (default), linear, cosine
	WarmupSteps  int     // linear warmup from 0; if 0, WarmupRatio × TotalSteps
	WarmupRatio  float64 //
	TotalSteps   int     // optimizer steps in the run, for the schedule; required for linear/cosine
	Beta1, Beta2 float64 // default 0.9, 0.999
	AdamEps      float64 // default 1e-8
	WeightDecay  float64 // decoupled, on matrices only (not norms and biases)
	MaxGradNorm  float64 // 0: no clipping

	// Progress, when set, is called by Step after every micro-batch's forward and
	// backward pass with the passes done and their total (μ × micro-batches over the
	// steps per generation), so that a caller can show a long step moving.
	Progress func(done, total int)

	// Group, when set, makes this trainer one rank of a data-parallel job: each rank
	// steps on its own share of the batch, the loss is normalized by the sizes of the
	// whole batch (over all ranks), the gradients are summed over the ranks, and every
	// rank takes the same AdamW step. nil: one process.
	Group *Group
}

// Activation recompute modes.
const (
	RecomputeAuto = "auto"
	RecomputeOn   = "on"
	RecomputeOff  = "off"
)

func (c *TrainConfig) defaults() error {
	if c.Temperature == 0 {
		c.Temperature = 1
	}
	if c.EpsLow == 0 {
		c.EpsLow = 0.2
	}
	if c.EpsHigh == 0 {
		c.EpsHigh = c.EpsLow
	}
	if c.Loss == "" {
		c.Loss = LossGRPO
	}
	if c.ActivationRecompute == "" {
		c.ActivationRecompute = RecomputeAuto
	}
	if c.Mu == 0 {
		c.Mu = 1
	}
	if c.StepsPerGeneration == 0 {
		c.StepsPerGeneration = 1
	}
	if c.ImportanceSamplingLevel == "" {
		c.ImportanceSamplingLevel = LevelToken
	}
	if c.ISMode == "" {
		c.ISMode = "token_truncate"
	}
	if c.SAPOTemperaturePos == 0 {
		c.SAPOTemperaturePos = 1
	}
	if c.SAPOTemperatureNeg == 0 {
		c.SAPOTemperatureNeg = 1.05
	}
	if c.TopEntropyQuantile == 0 {
		c.TopEntropyQuantile = 1
	}
	if l, ok := verlLosses[c.Loss]; ok {
		c.Loss = l
	}
	if c.LR == 0 {
		c.LR = 1e-6
	}
	if c.Schedule == "" {
		c.Schedule = ScheduleConstant
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.AdamEps == 0 {
		c.AdamEps = 1e-8
	}
	switch {
	case c.Temperature < 0 || math.IsNaN(c.Temperature):
		return fmt.Errorf("temperature %v must be positive", c.Temperature)
	case c.EpsLow < 0 || c.EpsLow >= 1 || c.EpsHigh < 0:
		return fmt.Errorf("clip range ε_low %v, ε_high %v: want 0 ≤ ε_low < 1, ε_high ≥ 0", c.EpsLow, c.EpsHigh)
	case c.Beta < 0:
		return fmt.Errorf("KL coefficient β %v must not be negative", c.Beta)
	case c.Mu < 1 || c.MicroBatch < 0 || c.MaxCompletionLen < 0 || c.ISCap < 0:
		return errors.New("μ must be ≥ 1; micro-batch, max completion length and IS cap must not be negative")
	case c.LR < 0 || c.WeightDecay < 0 || c.MaxGradNorm < 0 || c.WarmupSteps < 0 || c.WarmupRatio < 0 || c.WarmupRatio > 1:
		return errors.New("learning rate, weight decay, gradient clip and warmup must not be negative (warmup ratio ≤ 1)")
	case c.Beta1 < 0 || c.Beta1 >= 1 || c.Beta2 < 0 || c.Beta2 >= 1:
		return errors.New("Adam betas must lie in [0, 1)")
	}
	switch c.Loss {
	case LossGRPO, LossBNPO, LossDAPO, LossDrGRPO, LossSeqSum, LossCISPO, LossSAPO:
	default:
		return fmt.Errorf("loss aggregation %q: want grpo, bnpo, dapo, dr_grpo, cispo, sapo or one of verl's token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm", c.Loss)
	}
	switch {
	case c.ImportanceSamplingLevel != LevelToken && c.ImportanceSamplingLevel != LevelSequence:
		return fmt.Errorf("importance sampling level %q: want token or sequence", c.ImportanceSamplingLevel)
	case c.Delta != 0 && !(c.Delta > 1+c.EpsHigh):
		return fmt.Errorf("two-sided clip δ %v: want > 1 + ε_high (%v), or 0 for off", c.Delta, 1+c.EpsHigh)
	case c.Loss == LossCISPO && c.EpsHigh < 1:
		return fmt.Errorf("cispo caps the IS weight at ε_high itself (%v): want ε_high ≥ 1 (ScaleRL uses 5)", c.EpsHigh)
	case !(c.SAPOTemperaturePos > 0) || !(c.SAPOTemperatureNeg > 0):
		return fmt.Errorf("SAPO temperatures %v, %v: want > 0", c.SAPOTemperaturePos, c.SAPOTemperatureNeg)
	case c.ISMin < 0 || (c.ISCap > 0 && c.ISMin > c.ISCap):
		return fmt.Errorf("IS lower bound %v: want 0 ≤ it ≤ the cap %v", c.ISMin, c.ISCap)
	case c.OffPolicyMaskThreshold < 0:
		return fmt.Errorf("off-policy mask threshold %v: want ≥ 0 (0: off)", c.OffPolicyMaskThreshold)
	case !(c.TopEntropyQuantile > 0 && c.TopEntropyQuantile <= 1):
		return fmt.Errorf("top entropy quantile %v: want in (0, 1]", c.TopEntropyQuantile)
	case !(c.EntropyCoef >= 0) || math.IsInf(c.EntropyCoef, 0):
		return fmt.Errorf("entropy coefficient %v: want ≥ 0", c.EntropyCoef)
	case c.StepsPerGeneration < 1:
		return fmt.Errorf("steps per generation %d: want ≥ 1", c.StepsPerGeneration)
	}
	if _, ok := isModes[c.ISMode]; !ok {
		return fmt.Errorf("importance sampling mode %q: want token_truncate, token_mask, sequence_truncate or sequence_mask", c.ISMode)
	}
	switch c.ActivationRecompute {
	case RecomputeAuto, RecomputeOn, RecomputeOff:
	default:
		return fmt.Errorf("activation recompute %q: want auto, on or off", c.ActivationRecompute)
	}
	switch c.Schedule {
	case ScheduleConstant:
	case ScheduleLinear, ScheduleCosine:
		if c.TotalSteps <= 0 {
			return fmt.Errorf("%s schedule needs the total number of steps", c.Schedule)
		}
	default:
		return fmt.Errorf("schedule %q: want constant, linear or cosine", c.Schedule)
	}
	return nil
}

// LRAt is the learning rate of optimizer step s (0-based): linear warmup to LR over the
// warmup steps, then constant, linear decay to 0, or cosine decay to 0 at TotalSteps.
func (c TrainConfig) LRAt(s int) float64 {
	w := c.warmupSteps()
	if s < w {
		return c.LR * float64(s+1) / float64(w)
	}
	if c.Schedule == ScheduleConstant || c.TotalSteps <= w {
		return c.LR
	}
	p := math.Min(1, float64(s-w)/float64(c.TotalSteps-w))
	if c.Schedule == ScheduleLinear {
		return c.LR * (1 - p)
	}
	return c.LR * 0.5 * (1 + math.Cos(math.Pi*p))
}

// warmupSteps is the length of the linear warmup in optimizer steps.
func (c TrainConfig) warmupSteps() int {
	if c.WarmupSteps == 0 && c.WarmupRatio > 0 {
		return int(math.Ceil(c.WarmupRatio * float64(c.TotalSteps)))
	}
	return c.WarmupSteps
}

// aggregation is the loss aggregation of c.Loss (cispo and sapo bring their own).
func (c TrainConfig) aggregation() string {
	switch c.Loss {
	case LossCISPO:
		return LossDAPO
	case LossSAPO:
		return LossGRPO
	}
	return c.Loss
}

// policyOpts are the shim's options for c.
func (c TrainConfig) policyOpts() torch.PolicyOpts {
	p := torch.PolicyOpts{
		SequenceRatio: c.ImportanceSamplingLevel == LevelSequence, Delta: float32(c.Delta),
		SAPOTempPos: float32(c.SAPOTemperaturePos), SAPOTempNeg: float32(c.SAPOTemperatureNeg),
		ISMode: isModes[c.ISMode], ISMin: float32(c.ISMin),
		OffPolicyMask: c.OffPolicyMaskThreshold > 0, OffPolicyThreshold: float32(c.OffPolicyMaskThreshold),
		EntropyQuantile: entropyThresholdQuantile(c.TopEntropyQuantile),
	}
	switch c.Loss {
	case LossCISPO:
		p.Objective = torch.ObjectiveCISPO
	case LossSAPO:
		p.Objective = torch.ObjectiveSAPO
	}
	return p
}

// entropyThresholdQuantile is the quantile of the entropies above which tokens train, for
// a top-ρ entropy mask: 1 − ρ, and 0 (no mask) at ρ = 1.
func entropyThresholdQuantile(rho float64) float32 {
	if rho >= 1 {
		return 0
	}
	return float32(1 - rho)
}

// Sample is one completion to learn from.
type Sample struct {
	Prompt     []int32 // at least one token
	Completion []int32
	Advantage  float64
	// SamplerLogProb are the sampler's log-probs of the completion tokens at the
	// training temperature; needed when ISCap > 0.
	SamplerLogProb []float64
	// Truncated says the completion hit the length limit (MaskTruncatedCompletions).
	Truncated bool
}

// StepStats summarize one Step.
type StepStats struct {
	// The statistics of the step: the means over its optimizer steps (μ passes ×
	// StepsPerGeneration), but GradNorm and LR, which are the last one's (before clipping,
	// for the norm).
	PassStats
	Tokens     int         // completion tokens trained per pass over the batch
	OptimSteps int         // optimizer steps taken so far
	Passes     []PassStats // one per optimizer step, in order

	// CommBytes is what this rank sent into all-reduces during the step (gradients and
	// scalars), CommSeconds the time they took; 0 without a group.
	CommBytes, CommSeconds float64
}

// PassStats are the statistics of one optimizer step (a pass over the batch, or over one
// of its StepsPerGeneration parts).
type PassStats struct {
	Loss       float64
	KL         float64 // mean k3 KL per token (0 when β = 0)
	ClipRegion float64 // fraction of tokens the clip took the gradient from: ClipLow + ClipHigh
	RatioMean  float64
	ISMean     float64 // mean truncated importance weight (0 when off)
	GradNorm   float64 // before clipping
	LR         float64

	// ClipLow and ClipHigh are the fractions of tokens whose clipped surrogate won:
	// ratio < 1−ε_low with A < 0, and ratio > 1+ε_high with A > 0 (TRL's definitions).
	// A ratio beyond the range on the side where min() keeps it still gets a gradient
	// and is not counted.
	ClipLow, ClipHigh float64
	KLClamped         float64 // fraction of tokens whose KL log-ratio was clamped to ±20
}

// summed are the statistics that add up over micro-batches (and over ranks, see reduce),
// in one order: the one list of them.
func (p *PassStats) summed() []*float64 {
	return []*float64{&p.Loss, &p.KL, &p.ClipLow, &p.ClipHigh, &p.KLClamped, &p.RatioMean, &p.ISMean}
}

// addLoss adds a micro-batch's loss statistics, its per-token sums taken over n tokens.
func (p *PassStats) addLoss(ls torch.LossStats, n float64) {
	p.Loss += ls.Loss
	p.KL += ls.KLSum / n
	p.ClipLow += ls.ClipLow / n
	p.ClipHigh += ls.ClipHigh / n
	p.KLClamped += ls.KLClamped / n
	p.RatioMean += ls.RatioSum / n
	p.ISMean += ls.ISSum / n
}

// addPassMean adds pass ps's share of the mean over mu passes; GradNorm and LR become the
// pass's own.
func (p *PassStats) addPassMean(ps PassStats, mu int) {
	k := float64(mu)
	all, one := p.summed(), ps.summed()
	for i := range all {
		*all[i] += *one[i] / k
	}
	p.ClipRegion += ps.ClipRegion / k
	p.GradNorm, p.LR = ps.GradNorm, ps.LR
}

// Trainer runs GRPO steps on a model.
type Trainer struct {
	m     *Model
	ref   *Model // full fine-tuning with β > 0: a frozen copy of the initial weights
	cfg   TrainConfig
	steps int
	// recompute is the last automatic recompute decision (nil before the first), so that
	// only changes are logged.
	recompute *bool
	refPasses int // reference forwards run, for tests

	// What the step's all-reduces sent and took (StepStats.CommBytes, CommSeconds).
	commBytes, commSeconds float64
}

// NewTrainer prepares GRPO training of m. With β > 0 the reference policy is the model as
// it is now: the base weights without adapters under LoRA, else a frozen copy loaded from
// the same file (which doubles the memory).
func NewTrainer(m *Model, cfg TrainConfig) (*Trainer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	t := &Trainer{m: m, cfg: cfg}
	if g := cfg.Group; g != nil {
		// The ranks loaded the same file; rank 0's weights (LoRA adapters included) make
		// sure they start equal.
		m.mu.Lock()
		err := g.g.BroadcastParams(m.t, 0, false)
		m.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if cfg.Beta > 0 && m.lora == nil {
		ref, err := Load(m.src.Path, m.opts)
		if err != nil {
			return nil, fmt.Errorf("reference model: %w", err)
		}
		t.ref = ref
	}
	return t, nil
}

// Close frees the reference model, if any.
func (t *Trainer) Close() {
	if t.ref != nil {
		t.ref.Close()
	}
}

// Config returns the settings with defaults filled in.
func (t *Trainer) Config() TrainConfig { return t.cfg }

type microBatch struct {
	b       *torch.Batch
	mask    []float32
	adv     []float32
	sampler []float64
	ref     []float64
	old     []float64
	weight  []float32 // each row's loss weight (lossWeights)
	tokens  int
}

// Step takes μ × StepsPerGeneration optimizer steps on one batch of samples (a group or
// several): the batch is split into StepsPerGeneration parts, each one optimizer step, and
// μ passes go over the parts in turn, all with the same π_old (the policy before the first).
func (t *Trainer) Step(samples []Sample) (StepStats, error) {
	m := t.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return StepStats{}, errors.New("model is closed")
	}
	c := t.cfg
	if len(samples) == 0 {
		return StepStats{}, errors.New("empty batch")
	}
	k := c.StepsPerGeneration
	if len(samples) < k {
		return StepStats{}, fmt.Errorf("%d samples for %d steps per generation", len(samples), k)
	}
	total := 0
	for i, s := range samples {
		if len(s.Prompt) == 0 {
			return StepStats{}, fmt.Errorf("sample %d: empty prompt", i)
		}
		if c.ISCap > 0 && len(s.SamplerLogProb) != len(s.Completion) {
			return StepStats{}, fmt.Errorf("sample %d: %d sampler log-probs for %d completion tokens", i, len(s.SamplerLogProb), len(s.Completion))
		}
		if !num.Finite(s.Advantage) {
			return StepStats{}, fmt.Errorf("sample %d: advantage %v", i, s.Advantage)
		}
		total += len(s.Completion)
	}
	t.commBytes, t.commSeconds = 0, 0
	// π_old must stay the policy that was current before the first optimizer step.
	needOld := c.Mu > 1 || k > 1
	// Until the first optimizer step the policy is the reference (the frozen copy of the
	// initial weights, or the base under LoRA, whose adapters start at zero): no reference
	// forward is needed.
	refIsPolicy := t.steps == 0
	var parts []*stepPart
	for j := range k {
		p, err := t.prepare(samples[j*len(samples)/k:(j+1)*len(samples)/k], needOld, refIsPolicy)
		if err != nil {
			return StepStats{}, err
		}
		parts = append(parts, p)
	}
	all := 0
	for _, p := range parts {
		all += p.all.tokens
	}
	if total == 0 {
		return StepStats{}, errors.New("no completion tokens in the batch")
	}

	var st StepStats
	st.Tokens = all
	steps, passes := c.Mu*len(parts), 0
	for _, p := range parts {
		passes += c.Mu * len(p.mbs)
	}
	done := 0
	for pass := 0; pass < c.Mu; pass++ {
		for _, part := range parts {
			var ps PassStats
			// Statistics are per trained token: a part whose completions are all masked
			// (truncated) has none, and takes a step without a gradient.
			n := float64(max(part.all.tokens, 1))
			for _, mb := range part.mbs {
				a := &torch.LossArgs{
					Mask: mb.mask, Advantages: mb.adv, OldLogProb: mb.old, RefLogProb: mb.ref, SamplerLogProb: mb.sampler,
					Temperature: float32(c.Temperature), EpsLow: float32(c.EpsLow), EpsHi: float32(c.EpsHigh),
					Beta: float32(c.Beta), ISCap: float32(c.ISCap), RowWeight: mb.weight, Recompute: part.recompute,
					Policy: c.policyOpts(),
				}
				if c.EntropyCoef != 0 {
					a.Policy.EntropyWeight = float32(c.EntropyCoef / float64(max(part.all.tokens, 1)))
				}
				if c.Beta > 0 && mb.ref == nil {
					a.Beta = 0 // the reference is the policy itself (see refIsPolicy)
				}
				ls, err := m.t.LossBackward(mb.b, a)
				if err != nil {
					_ = m.t.ZeroGrad()
					return st, fmt.Errorf("loss: %w", err)
				}
				done++
				if c.Progress != nil {
					c.Progress(done, passes)
				}
				ps.addLoss(ls, n)
			}
			if err := t.reduce(&ps); err != nil {
				_ = m.t.ZeroGrad()
				return st, err
			}
			ps.ClipRegion = ps.ClipLow + ps.ClipHigh
			ps.LR = c.LRAt(t.steps)
			norm, err := m.t.Step(torch.AdamW{LR: ps.LR, Beta1: c.Beta1, Beta2: c.Beta2, Eps: c.AdamEps, WeightDecay: c.WeightDecay, MaxGradNorm: c.MaxGradNorm})
			if err != nil {
				_ = m.t.ZeroGrad()
				return st, fmt.Errorf("optimizer: %w", err)
			}
			ps.GradNorm = norm
			t.steps++
			st.Passes = append(st.Passes, ps)
			st.addPassMean(ps, steps)
		}
	}
	st.OptimSteps = t.steps
	st.CommBytes, st.CommSeconds = t.commBytes, t.commSeconds
	return st, nil
}

// stepPart is the share of a Step's batch that one optimizer step trains on: its
// micro-batches, laid out with their inputs, and the sizes its aggregation divides by.
type stepPart struct {
	mbs       []*microBatch
	all       globalBatch
	recompute bool
}

// prepare lays out samples as one optimizer step's micro-batches, with π_old (needOld)
// and the reference's log-probs computed now, before any update of this Step.
func (t *Trainer) prepare(samples []Sample, needOld, refIsPolicy bool) (*stepPart, error) {
	m, c := t.m, t.cfg
	mbSize := c.MicroBatch
	if mbSize == 0 || mbSize > len(samples) {
		mbSize = len(samples)
	}
	// lens are the completion tokens each sample trains: none for a truncated completion
	// under MaskTruncatedCompletions (TRL zeroes its completion mask).
	lens := make([]int, len(samples))
	tokens, maxLen := 0, 0
	for i, s := range samples {
		lens[i] = len(s.Completion)
		if c.MaskTruncatedCompletions && s.Truncated {
			lens[i] = 0
		}
		tokens += lens[i]
		maxLen = max(maxLen, len(s.Completion))
	}
	nMicro := (len(samples) + mbSize - 1) / mbSize
	// The loss aggregations divide by the sizes of the whole batch, over all ranks.
	all, err := t.global(globalBatch{samples: len(samples), tokens: tokens, microBatches: nMicro, maxLen: maxLen})
	if err != nil {
		return nil, err
	}
	maxLen = all.maxLen
	if c.MaxCompletionLen > 0 {
		maxLen = c.MaxCompletionLen
	}
	maxSeq := 0
	for _, s := range samples {
		maxSeq = max(maxSeq, len(s.Prompt)+len(s.Completion))
	}
	weights := lossWeights(c.aggregation(), lens, mbSize, all, maxLen)
	whole := make([]Sequence, len(samples))
	for i, s := range samples {
		whole[i] = Sequence{Tokens: append(append([]int32{}, s.Prompt...), s.Completion...), PromptLen: len(s.Prompt)}
	}
	order := physicalOrder(whole, mbSize)
	part := &stepPart{all: all}
	for lo := 0; lo < len(samples); lo += mbSize {
		idx := order[lo:min(lo+mbSize, len(samples))]
		seqs := make([]Sequence, len(idx))
		for i, k := range idx {
			seqs[i] = whole[k]
		}
		b, err := m.batch(seqs)
		if err != nil {
			return nil, err
		}
		mb := &microBatch{b: b, mask: make([]float32, b.B*b.T), adv: make([]float32, b.B), weight: make([]float32, b.B)}
		if c.ISCap > 0 {
			mb.sampler = make([]float64, b.B*b.T)
		}
		for i, k := range idx {
			s := samples[k]
			mb.weight[i] = weights[k]
			mb.adv[i] = float32(s.Advantage)
			for j := range s.Completion {
				at := i*b.T + len(s.Prompt) + j
				if lens[k] > 0 {
					mb.mask[at] = 1
				}
				if mb.sampler != nil {
					mb.sampler[at] = s.SamplerLogProb[j]
				}
			}
			mb.tokens += lens[k]
		}
		if needOld {
			var err error
			if mb.old, err = m.logProbs(b, mb.mask, c.Temperature, false); err != nil {
				return nil, fmt.Errorf("old log-probs: %w", err)
			}
		}
		if c.Beta > 0 {
			var err error
			switch {
			case refIsPolicy && mb.old != nil:
				mb.ref = mb.old
			case refIsPolicy:
				// μ = 1 before any update: the reference is the policy, so the k3 term and
				// its gradient are exactly zero; the loss runs without it (Step).
			case t.ref != nil:
				t.refPasses++
				mb.ref, err = t.ref.logProbs(b, mb.mask, c.Temperature, false)
			default:
				t.refPasses++
				mb.ref, err = m.logProbs(b, mb.mask, c.Temperature, true)
			}
			if err != nil {
				return nil, fmt.Errorf("reference log-probs: %w", err)
			}
		}
		part.mbs = append(part.mbs, mb)
	}
	part.recompute = t.recomputeFor(mbSize, maxSeq)
	return part, nil
}

// physicalOrder is the order in which the forward passes take the sequences, mbSize at a
// time: the one of two that computes fewer positions (planLayout). Sorted by length, each
// micro-batch pads to a length close to all of its sequences' (a group's completions end
// anywhere between a few tokens and the limit); grouped by prompt (groups by their longest
// sequence, each group's rows by length), a micro-batch computes each prompt once for all
// of its rows that continue it. The loss does not change with the order: lossWeights
// keeps bnpo's micro-batches in the order given.
func physicalOrder(seqs []Sequence, mbSize int) []int {
	byLength := make([]int, len(seqs))
	for i := range byLength {
		byLength[i] = i
	}
	longer := func(x, y int) int { return cmp.Compare(len(seqs[y].Tokens), len(seqs[x].Tokens)) }
	slices.SortStableFunc(byLength, longer)
	// Groups numbered in byLength's order, which visits each group first at its longest
	// sequence: sorting by the number sorts the groups by it.
	group, ids := make([]int, len(seqs)), map[string]int{}
	for _, i := range byLength {
		k := fmt.Sprint(seqs[i].Tokens[:seqs[i].PromptLen])
		if _, ok := ids[k]; !ok {
			ids[k] = len(ids)
		}
		group[i] = ids[k]
	}
	byPrompt := slices.Clone(byLength)
	slices.SortStableFunc(byPrompt, func(x, y int) int {
		if c := cmp.Compare(group[x], group[y]); c != 0 {
			return c
		}
		return longer(x, y)
	})
	cost := func(order []int) int {
		n := 0
		for lo := 0; lo < len(order); lo += mbSize {
			part := make([]Sequence, 0, mbSize)
			for _, k := range order[lo:min(lo+mbSize, len(order))] {
				part = append(part, seqs[k])
			}
			l := planLayout(part)
			n += min(l.whole, l.shared)
		}
		return n
	}
	if cost(byPrompt) < cost(byLength) {
		return byPrompt
	}
	return byLength
}

// lossWeights is each sample's loss weight, from the completion tokens each trains
// (lens): the loss is the sum over samples of weight × (the sample's summed token
// losses), which makes each aggregation:
//   - grpo: the mean over each sequence's tokens, averaged over the batch's sequences;
//   - bnpo: the mean over the tokens of each micro-batch of mbSize samples in the order
//     given (TRL's per-device batch), averaged over the micro-batches;
//   - dapo: the mean over all the batch's tokens;
//   - dr_grpo: the sum over tokens divided by sequences × maxLen (a constant);
//   - seq-mean-token-sum: each sequence's sum over tokens, averaged over the sequences.
//
// all holds the sizes of the whole batch, over every rank.
func lossWeights(loss string, lens []int, mbSize int, all globalBatch, maxLen int) []float32 {
	w := make([]float32, len(lens))
	for lo := 0; lo < len(lens); lo += mbSize {
		part := lens[lo:min(lo+mbSize, len(lens))]
		tokens := 0
		for _, n := range part {
			tokens += n
		}
		for i, n := range part {
			var d float64
			switch loss {
			case LossGRPO:
				d = float64(max(n, 1) * all.samples)
			case LossBNPO:
				d = float64(max(tokens, 1) * all.microBatches)
			case LossDAPO:
				d = float64(max(all.tokens, 1))
			case LossDrGRPO:
				d = float64(all.samples * maxLen)
			case LossSeqSum:
				d = float64(all.samples)
			}
			w[lo+i] = float32(1 / d)
		}
	}
	return w
}

// activationBytes estimates the memory autograd holds for one forward of B sequences of
// T tokens when every block keeps its activations: per block and token, about 8 float32
// vectors of the embedding width, 3 of the feed-forward width (many are kept as bfloat16
// casts) and 4 bytes per head and key of attention (the float32 softmax and its bfloat16
// cast, over the causal blocks). Fitted to the peak memory of SmolLM2 micro-batches of
// 4×256 and 4×534 tokens in bf16 (46 and 53 KB per block and token measured, 46 and 56
// estimated).
func activationBytes(in Info, B, T int) float64 {
	perToken := 4 * (8*in.Embd + 3*in.FF + in.Heads*T)
	return float64(B) * float64(T) * float64(perToken) * float64(in.Layers)
}

// recomputeFor decides activation recompute for micro-batches of B sequences of up to T
// tokens: forced by the config, or (auto) on when the kept activations would take more
// than half the memory available now (the system's, and what this process's allocator
// holds free), or the process's memory in use past the budget. On CUDA, whose free
// memory is not visible here, auto recomputes.
func (t *Trainer) recomputeFor(B, T int) bool {
	switch t.cfg.ActivationRecompute {
	case RecomputeOn:
		return true
	case RecomputeOff:
		return false
	}
	need := activationBytes(t.m.info, B, T)
	availBytes, ok := meminfo.Available()
	avail := float64(availBytes)
	// The activations of earlier steps, freed, stay in this process's allocator for reuse;
	// MemAvailable does not count them, and without them a second step would find less
	// memory than the first and recompute where the first kept its activations.
	held := float64(torch.AllocatorFreeBytes())
	avail += held
	var why string
	on := true
	switch {
	case t.m.opts.Device != "" && t.m.opts.Device != "cpu":
		why = "device memory not known"
	case !ok:
		why = "available memory not known"
	default:
		on = need > avail/2
		why = fmt.Sprintf("%.1f GiB available (%.1f GiB of it freed by earlier steps)", avail/(1<<30), held/(1<<30))
		if budget := float64(t.cfg.MemoryBudget); budget > 0 {
			// In use: the resident set less what the allocator holds free for reuse (its
			// count can include pages no longer resident: not below 0).
			if rss, err := meminfo.RSS(); err == nil {
				inUse := max(0, float64(rss)-held)
				if inUse+need > budget {
					on = true
				}
				why += fmt.Sprintf(", %.1f GiB in use of a %.1f GiB budget (learner.memory_budget_gib)", inUse/(1<<30), budget/(1<<30))
			}
		}
	}
	if t.cfg.Log != nil && (t.recompute == nil || *t.recompute != on) {
		verdict := "keeping activations"
		if on {
			verdict = "recomputing activations in the backward pass"
		}
		fmt.Fprintf(t.cfg.Log, "learner: micro-batch %d×%d tokens keeps ~%.1f GiB of activations, %s: %s\n", B, T, need/(1<<30), why, verdict)
	}
	t.recompute = &on
	return on
}

// LoRAConfig selects low-rank adapters.
type LoRAConfig struct {
	Rank    int
	Alpha   float64
	Targets []string // of q, k, v, o, gate, up, down; default q, k, v, o
	Seed    uint64
}

// EnableLoRA freezes the base weights and adds adapters; only they train from now on.
// Call it before NewTrainer.
func (m *Model) EnableLoRA(c LoRAConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	if len(c.Targets) == 0 {
		c.Targets = []string{"q", "k", "v", "o"}
	}
	for _, t := range c.Targets {
		switch t {
		case "q", "k", "v", "o", "gate", "up", "down":
		default:
			return fmt.Errorf("LoRA target %q: want q, k, v, o, gate, up or down", t)
		}
	}
	if c.Rank <= 0 {
		return fmt.Errorf("LoRA rank %d must be positive", c.Rank)
	}
	if c.Alpha == 0 {
		c.Alpha = float64(c.Rank)
	}
	if err := m.t.EnableLoRA(c.Rank, float32(c.Alpha), strings.Join(c.Targets, ","), c.Seed); err != nil {
		return err
	}
	m.lora = &c
	m.info.Trainable = m.t.Trainable()
	return nil
}

// setTensor overwrites a base tensor (by GGUF name, ggml-order data), for tests.
func (m *Model) setTensor(name string, data []float32) error {
	for _, ti := range m.tensors {
		if ti.name == name {
			shape := make([]int64, len(ti.shape))
			for i, d := range ti.shape {
				shape[len(shape)-1-i] = int64(d)
			}
			return m.t.SetTensor(name, data, shape)
		}
	}
	return fmt.Errorf("no tensor %s", name)
}

// gradient returns the accumulated gradient of a tensor (by GGUF name), for tests and
// diagnostics; zeros when there is none.
func (m *Model) gradient(name string) ([]float32, error) {
	for _, ti := range m.tensors {
		if ti.name == name {
			n := uint64(1)
			for _, d := range ti.shape {
				n *= d
			}
			out := make([]float32, n)
			return out, m.t.Tensor(name, out, false, true)
		}
	}
	return nil, fmt.Errorf("no tensor %s", name)
}
