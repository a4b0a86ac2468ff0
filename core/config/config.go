// Package config is the full description of a training run: the TOML file a user writes,
// its documented defaults, strict decoding (an unknown key or a wrong type is an error
// naming the key and its line) and validation before anything heavy happens.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/core/health"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/sampling"
	"github.com/rlif/rlif/rewards"
)

// DefaultModel is where `make model` puts the default model.
const DefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

// DefaultSystemPrompt is the Intuitor paper's prompt: step-by-step reasoning and a final
// answer in \boxed{}. Training and rlif eval both default to it (eval.DefaultSystem is
// this constant), so a before/after comparison runs the protocol the run trained with.
const DefaultSystemPrompt = `Please reason step by step, and put your final answer within \boxed{}.`

// MaxCompletionsPerStep bounds prompts_per_step × group_size: far above any real run
// (1024 prompts × 64 completions is 65536), far below what exhausts memory before the
// first step.
const MaxCompletionsPerStep = 1 << 20

// Run is a whole training run. Every field has a default (see Default); the TOML keys are
// the snake_case names in the struct tags.
type Run struct {
	// Model is the GGUF file to train, or a Hugging Face model directory (converted once
	// into the run directory, see `rlif convert`).
	Model string `toml:"model"`
	// Out is the run directory: config.toml, metrics.jsonl, completions.jsonl,
	// checkpoints/, final/.
	Out string `toml:"out"`
	// Steps is the number of training steps; 0 means one pass over the data (Epochs).
	Steps int `toml:"steps"`
	// Seed drives data shuffling, sampling and the learner's randomness.
	Seed uint64 `toml:"seed"`

	Data          Data              `toml:"data"`
	Sampling      Sampling          `toml:"sampling"`
	Learner       Learner           `toml:"learner"`
	LoRA          LoRA              `toml:"lora"`
	Sync          Sync              `toml:"sync"`
	SelfCertainty SelfCertainty     `toml:"self_certainty"`
	Advantage     advantage.Options `toml:"advantage"` // the mix: advantage.MixSum (default) or MixIntuitor, whose other weights only set ratios
	Rewards       []Reward          `toml:"rewards"`
	Plugins       Plugins           `toml:"plugins"`
	Eval          Eval              `toml:"eval"`
	Output        Output            `toml:"output"`

	// Notices are one-line remarks about the file (deprecated keys), for the caller to print.
	Notices []string `toml:"-"`
}

// Eval is the evaluation during training: a held-out set with gold answers, sampled
// through the run's sampler with the current weights (after the step's sync) every Every
// steps, at the last step, and at step 0 (the base model, before any update), with the
// run's system prompt and template. Its results are the eval/ keys of metrics.jsonl
// (README, "Metrics").
type Eval struct {
	// Data is the held-out set: a JSONL or parquet file, or a named set (gsm8k-test, ...).
	// Its prompt and gold answer are data.prompt_field and data.answer_field.
	Data string `toml:"data"`
	// Every is the number of steps between evaluations; 0 turns evaluation off.
	Every int `toml:"every"`
	// Limit evaluates only the first Limit items; 0 evaluates all.
	Limit int `toml:"limit"`
	// MaxTokens per completion; 0 means sampling.max_tokens, which bounds it (the
	// sampler's KV cache is sized for that).
	MaxTokens int `toml:"max_tokens"`
	// N completions per item (at most sampling.group_size; 0 means 1): with N > 1 the
	// metrics add pass@k and maj@N, and Temperature must be > 0.
	N int `toml:"n"`
	// Temperature 0 is greedy decoding (the default).
	Temperature float64 `toml:"temperature"`
	// Unlabeled evaluates prompts without gold answers (data.answer_field is not read):
	// the metrics leave accuracy and calibration out, and keep what needs no labels
	// (the echo share the health rule's echo guard reads, length, self-certainty).
	Unlabeled bool `toml:"unlabeled"`
}

// Data says where prompts come from.
type Data struct {
	// Path is a JSONL or parquet file, or the name of a set that comes with the repository
	// (data/README.md: gsm8k-train, math-train, ...); empty means the built-in arithmetic
	// word problems.
	Path string `toml:"path"`
	// PromptField is the prompt's field; empty means the first of prompt, question,
	// problem that the rows have.
	PromptField string `toml:"prompt_field"`
	// AnswerField is the gold answer's field (optional in the rows).
	AnswerField string `toml:"answer_field"`
	// SystemPrompt goes through the chat template with every prompt.
	SystemPrompt string `toml:"system_prompt"`
	// Raw feeds BOS + prompt without the chat template (base models).
	Raw bool `toml:"raw"`
	// Shuffle the rows (with Seed) at every epoch.
	Shuffle bool `toml:"shuffle"`
	// Epochs over the data when Steps is 0.
	Epochs int `toml:"epochs"`
	// Limit uses only the first Limit rows; 0 uses all.
	Limit int `toml:"limit"`
	// BuiltinSize is the number of built-in problems generated when Path is empty.
	BuiltinSize int `toml:"builtin_size"`
}

// Sampling configures the sampler (llama.cpp).
type Sampling struct {
	PromptsPerStep int     `toml:"prompts_per_step"` // B
	GroupSize      int     `toml:"group_size"`       // G
	MaxTokens      int     `toml:"max_tokens"`
	Temperature    float64 `toml:"temperature"`
	// TopP < 1 or TopK > 0 make the sampler draw through llama.cpp's sampler chain, which
	// sorts the whole vocabulary for every token (~10x the cost of the default draw; see
	// README, "Speed"). Temperature and MinP alone use rlif's own O(V) draw.
	TopP float64  `toml:"top_p"`
	TopK int      `toml:"top_k"`
	MinP float64  `toml:"min_p"`
	Stop []string `toml:"stop"`
	// ParallelSequences caps the sequences the sampler decodes together (its KV cache is
	// sized for them); the groups of a step run in waves of at most this many. Every token
	// of a wave walks the KV cells of the whole wave in attention, so a wave larger than the
	// matmuls need costs more than it batches: 32 sampled 18% more tokens per CPU-second
	// than 64 on SmolLM2 (BenchmarkWaveSize).
	ParallelSequences int `toml:"parallel_sequences"`
	Threads           int `toml:"threads"`    // 0: all cores
	GPULayers         int `toml:"gpu_layers"` // -1: all
}

// Learner configures the libtorch learner and the GRPO loss.
type Learner struct {
	LR          float64 `toml:"lr"`
	Schedule    string  `toml:"schedule"` // constant | linear | cosine
	WarmupRatio float64 `toml:"warmup_ratio"`
	Beta        float64 `toml:"beta"` // KL coefficient; 0 holds no reference model
	EpsLow      float64 `toml:"eps_low"`
	EpsHigh     float64 `toml:"eps_high"`
	// Loss is TRL's loss_type: the aggregation grpo | bnpo | dapo | dr_grpo, or verl's
	// name of one (loss_agg_mode: token-mean = dapo, seq-mean-token-mean = grpo,
	// seq-mean-token-sum-norm = dr_grpo, and seq-mean-token-sum: each sequence's summed
	// token losses averaged over sequences), or an objective with TRL's aggregation for it:
	// cispo (MiniMax-M1, arXiv 2506.13585: the IS weight min(ρ, eps_high) clipped and
	// without gradient times A·log π, so no token loses its gradient; dapo's aggregation;
	// eps_high >= 1, ScaleRL uses 5) or sapo (SAPO, arXiv 2511.20347: a smooth gate
	// (4/τ)·σ(τ(ρ−1)) instead of the hard clip; grpo's aggregation).
	Loss string `toml:"loss"`
	Mu   int    `toml:"mu"` // optimizer passes per batch (TRL's num_iterations)
	// StepsPerGeneration splits each step's batch, in order, into this many optimizer
	// steps with π_old fixed at the policy before the first (TRL's steps_per_generation,
	// verl's ppo_mini_batch_size); mu passes repeat them. 0 or 1: one optimizer step.
	StepsPerGeneration int `toml:"steps_per_generation,omitzero"`
	// ImportanceSamplingLevel: token (default) or sequence, GSPO's one ratio per sequence,
	// the geometric mean of its tokens' ratios, clipped per sequence (arXiv 2507.18071).
	ImportanceSamplingLevel string `toml:"importance_sampling_level,omitempty"`
	// Delta caps the ratio at delta where the advantage is negative: the two-sided clip of
	// INTELLECT-2 (arXiv 2505.07291; verl's clip_ratio_c, dual-clip PPO). Must exceed
	// 1 + eps_high; 0: off.
	Delta float64 `toml:"delta,omitzero"`
	// SAPOTemperaturePos and SAPOTemperatureNeg are SAPO's gate temperatures τ for
	// positive and other advantages (loss = "sapo"); 0: TRL's defaults 1 and 1.05.
	SAPOTemperaturePos float64 `toml:"sapo_temperature_pos,omitzero"`
	SAPOTemperatureNeg float64 `toml:"sapo_temperature_neg,omitzero"`
	// TopEntropyQuantile ρ < 1 gives a policy gradient only to the top ρ of each
	// micro-batch's tokens by entropy, the "forking" tokens (Beyond the 80/20 rule,
	// arXiv 2506.01939, recommends 0.2). 0 or 1: every token.
	TopEntropyQuantile float64 `toml:"top_entropy_quantile,omitzero"`
	// EntropyCoef c adds the entropy bonus −c × the mean entropy of each optimizer step's
	// trained tokens to the loss, against the entropy collapse of RL (TRL's entropy_coef,
	// verl's entropy_coeff; Skywork-OR1, arXiv 2505.22312). With top_entropy_quantile, on
	// the tokens it keeps. 0: off.
	EntropyCoef float64 `toml:"entropy_coef,omitzero"`
	// MaskTruncatedCompletions leaves the completions that reached sampling.max_tokens out
	// of the loss and its token counts (DAPO's overlong filtering, arXiv 2503.14476).
	MaskTruncatedCompletions bool `toml:"mask_truncated_completions,omitempty"`
	// OffPolicyMaskThreshold drops the sequences with a negative advantage whose mean
	// log(π_sampler/π) exceeds it (DeepSeek-V3.2's off-policy sequence masking, arXiv
	// 2512.02556; TRL's off_policy_mask_threshold). 0: off.
	OffPolicyMaskThreshold float64 `toml:"off_policy_mask_threshold,omitzero"`
	// MicroBatch is the number of sequences per forward/backward (gradients accumulate
	// over the batch); 0 means the whole batch at once.
	MicroBatch int `toml:"micro_batch"`
	// RecomputeActivations recomputes each block's activations in the backward pass
	// instead of keeping them: one more forward, a fraction of the memory (8 x 256 tokens
	// of SmolLM2 in f32: 12 GiB without, 3.3 GiB with). auto | on | off; auto turns it on
	// when a micro-batch's activations would take more than half the available memory.
	RecomputeActivations string `toml:"recompute_activations"`
	// MemoryBudgetGiB bounds the memory the process holds while learning on the CPU:
	// auto recomputes where keeping a micro-batch's activations would pass it (the
	// models, the learner's state and the sampler's cache count too). 0: no bound but
	// half the memory available.
	MemoryBudgetGiB float64 `toml:"memory_budget_gib"`
	// GradientCheckpointing is the old name of RecomputeActivations (true: on, false:
	// off), still read, with a notice; never written.
	GradientCheckpointing *bool `toml:"gradient_checkpointing,omitempty"`
	// Precision of the learner's compute: bf16 (matmuls in bfloat16 over float32 weights
	// and optimizer state), f32, or auto: bf16 on CUDA and on CPUs with native bf16
	// (AVX-512 BF16 or AMX), f32 elsewhere.
	Precision   string  `toml:"precision"`
	MaxGradNorm float64 `toml:"max_grad_norm"`
	WeightDecay float64 `toml:"weight_decay"`
	AdamBeta1   float64 `toml:"adam_beta1"`
	AdamBeta2   float64 `toml:"adam_beta2"`
	// ISCap is the truncated importance-sampling cap C on π_old/π_sampler; 0 turns the
	// correction off. (TRL's vllm_importance_sampling_clip_max.)
	ISCap float64 `toml:"is_cap"`
	// ISMode is how the sampler/learner mismatch weight is computed and bounded (TRL's
	// vllm_importance_sampling_mode; Yao et al., "Your efficient RL framework secretly
	// brings you off-policy RL training", 2025): token_truncate (default) clamps each
	// token's weight to [is_min, is_cap]; token_mask zeroes the tokens outside that band
	// (with is_min, IcePop's two-sided band, e.g. 0.5 and 5); sequence_truncate and
	// sequence_mask do the same to one weight per sequence, the product of its tokens'.
	ISMode string `toml:"is_mode,omitempty"`
	// ISMin is the lower bound of the band (TRL's vllm_importance_sampling_clip_min); 0: none.
	ISMin   float64 `toml:"is_min,omitzero"`
	Threads int     `toml:"threads"`
	Device  string  `toml:"device"` // cpu | cuda
}

// LoRA trains low-rank adapters instead of the full weights.
type LoRA struct {
	Enabled bool     `toml:"enabled"`
	Rank    int      `toml:"rank"`
	Alpha   float64  `toml:"alpha"`
	Targets []string `toml:"targets"` // q k v o gate up down
}

// Sync says how the learner's weights reach the sampler after each step.
type Sync struct {
	// Precision of the full GGUF re-export: auto, f32, f16, bf16, q8_0, q4_0, q4_1 (full
	// sync only; LoRA runs hot-swap an f32 adapter). auto is the precision the sampler
	// decodes fastest on this machine: bf16 on CPUs with AVX-512 BF16, f16 elsewhere and on
	// GPUs (sampler.FastestPrecision).
	Precision string `toml:"precision"`
}

// SelfCertainty says which model's self-certainty the self_certainty reward reads. Only
// self-certainty moves: entropy (the entropy reward, entropy/mean) stays the sampler's.
type SelfCertainty struct {
	// Source: sampler (streamed by llama.cpp, the current policy; default), learner (exact,
	// recomputed by the learner on π_old), offline (the frozen initial model: the paper's
	// reward-hacking ablation).
	Source string `toml:"source"`
}

// Plugins configures reward plugin processes.
type Plugins struct {
	TimeoutSeconds float64 `toml:"timeout_seconds"` // per scoring call
	Restarts       int     `toml:"restarts"`        // restarts after a crash before giving up
}

// Output says what is written and how often.
type Output struct {
	CheckpointEvery int `toml:"checkpoint_every"` // steps; a checkpoint is also written at the end
	// CheckpointMinutes bounds the work a crash can lose: a step that ends this long (wall
	// time) after the last checkpoint writes one, whatever checkpoint_every says; 0: off.
	CheckpointMinutes float64 `toml:"checkpoint_minutes"`
	CompletionsEvery  int     `toml:"completions_every"` // steps between completions.jsonl dumps
	KeepCheckpoints   int     `toml:"keep_checkpoints"`  // newest kept; 0 keeps all
	// KeepBest names an eval metric (a key of metrics.jsonl, such as "eval/accuracy");
	// the checkpoint of the step where it was best so far is kept as checkpoints/best
	// (a link to checkpoints/best-step-N, replaced atomically). Empty: off. An eval
	// metric needs [eval] (eval.every > 0).
	//
	// KeepBestLabelFree ("label_free") needs no labels: it keeps the latest step the
	// label-free health rule (core/health, [output.health]) calls healthy before any
	// collapse, among the base model (step 0) and the steps that evaluate (eval.every)
	// or write a checkpoint by count (checkpoint_every).
	KeepBest string `toml:"keep_best"`
	// KeepBestMode is max (higher is better; the default, also when empty) or min. A tie
	// keeps the earlier step.
	KeepBestMode string `toml:"keep_best_mode"`
	// StopOnCollapse ends the run at the first step the health rule calls collapsed,
	// with a checkpoint of it and no final model (the collapsed weights are not one to
	// ship): keep_best = "label_free" names the step to keep.
	StopOnCollapse bool `toml:"stop_on_collapse"`
	// Health is the label-free health rule's thresholds; the zero Rule (an Output built
	// in Go without it) means health.Default, as does a config file without the table.
	Health health.Rule `toml:"health"`
}

// HealthRule is the health rule the run uses: Health, or health.Default when unset.
func (o Output) HealthRule() health.Rule {
	if o.Health == (health.Rule{}) {
		return health.Default
	}
	return o.Health
}

// DefaultMemoryBudgetGiB is learner.memory_budget_gib's default: what TRL's GRPOTrainer
// with gradient checkpointing peaked at on examples/intuitor.toml's step (8.3–8.7 GB),
// so that rlif's footprint is no larger by default and does not grow with the memory
// a machine happens to have free.
const DefaultMemoryBudgetGiB = 8

// KeepBestLabelFree is the output.keep_best that needs no labels.
const KeepBestLabelFree = "label_free"

// Demo returns the embedded default run that `rlif train` without a config or data runs
// (and `make demo`): Intuitor on SmolLM2-135M-Instruct, sized to show self-certainty
// rising within about 6 minutes on 2 CPU cores. It revisits the same 4 built-in problems
// for 10 steps, so that the per-step mean self-certainty is taken over the same prompts and
// its trend is not drowned by prompt-to-prompt differences (a fresh prompt set per step
// moves it by about ±0.4 at this size); it shows the optimization at work, not
// generalization. A higher learning rate than Default's makes the movement visible in 10
// steps.
func Demo() Run {
	r := Default()
	r.Data.BuiltinSize = 4
	r.Data.Epochs = 10
	r.Learner.LR = 3e-5
	return r
}

// Default returns the defaults every run starts from: Intuitor (self-certainty reward) on
// SmolLM2-135M-Instruct with the built-in arithmetic problems, sized for 2 CPU cores.
func Default() Run {
	return Run{
		Model: DefaultModel,
		Out:   "runs/default",
		Steps: 0,
		Seed:  1,
		Data: Data{
			AnswerField:  "answer",
			SystemPrompt: DefaultSystemPrompt,
			Shuffle:      true,
			Epochs:       1,
			BuiltinSize:  36,
		},
		Sampling: Sampling{
			PromptsPerStep: 4,
			GroupSize:      6,
			MaxTokens:      160,
			Temperature:    0.9,
			TopP:           1,

			ParallelSequences: 32,
		},
		Learner: Learner{
			LR:                   1e-5,
			Schedule:             "cosine",
			WarmupRatio:          0.1,
			Beta:                 0.005,
			EpsLow:               0.2,
			EpsHigh:              0.2,
			Loss:                 "grpo",
			Mu:                   1,
			MicroBatch:           4,
			MemoryBudgetGiB:      DefaultMemoryBudgetGiB,
			MaxGradNorm:          1,
			RecomputeActivations: "auto",
			Precision:            "auto",
			AdamBeta1:            0.9,
			AdamBeta2:            0.999,
			ISCap:                2,
			Device:               "cpu",
		},
		LoRA:          LoRA{Rank: 16, Alpha: 32, Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}},
		Sync:          Sync{Precision: "auto"},
		SelfCertainty: SelfCertainty{Source: "sampler"},
		Advantage:     advantage.Options{Mix: advantage.MixSum},
		Rewards:       []Reward{{Spec: rewards.Spec{Name: "self_certainty"}}},
		Plugins:       Plugins{TimeoutSeconds: host.DefaultTimeout.Seconds(), Restarts: host.DefaultRetries},
		Eval:          Eval{N: 1},
		Output:        Output{CheckpointEvery: 10, CheckpointMinutes: 10, CompletionsEvery: 1, KeepCheckpoints: 2, KeepBestMode: "max", Health: health.Default},
	}
}

// Load reads a run from a TOML file on top of Default. Relative paths in the file are
// taken from the file's directory and made absolute (ResolvePaths).
func Load(path string) (Run, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Run{}, fmt.Errorf("config %s: %w", path, err)
	}
	r, err := Parse(src)
	if err != nil {
		return Run{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := r.ResolvePaths(filepath.Dir(path)); err != nil {
		return Run{}, fmt.Errorf("config %s: %w", path, err)
	}
	return r, nil
}

// Parse decodes TOML on top of Default. It rejects unknown keys and wrong types, naming
// the key and its line.
func Parse(src []byte) (Run, error) {
	r := Default()
	// A [[rewards]] table in the file replaces the default reward list, not appends to it.
	r.Rewards = nil
	md, err := toml.NewDecoder(bytes.NewReader(src)).Decode(&r)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return Run{}, errors.New(oneLine(pe.Error()))
		}
		return Run{}, errors.New(oneLine(err.Error()))
	}
	if err := checkUnsigned(src); err != nil {
		return Run{}, err
	}
	if !md.IsDefined("rewards") {
		r.Rewards = Default().Rewards
	}
	if zero := rewards.ZeroWeighted(r.RewardSpecs()); len(zero) > 0 && len(zero) < len(r.Rewards) {
		// A reward to watch (logged, not trained on) is legitimate; say so in case it
		// was not meant. Every weight 0 is an error (Validate).
		r.Notices = append(r.Notices, fmt.Sprintf("config: reward %s has weight 0: it is scored and logged but moves no advantage", strings.Join(zero, ", ")))
	}
	if old := r.Learner.GradientCheckpointing; old != nil {
		if md.IsDefined("learner", "recompute_activations") {
			return Run{}, fmt.Errorf("line %d: learner.gradient_checkpointing is the old name of learner.recompute_activations: set only the new one",
				lineOf(src, toml.Key{"learner", "gradient_checkpointing"}))
		}
		r.Learner.RecomputeActivations = "off"
		if *old {
			r.Learner.RecomputeActivations = "on"
		}
		r.Learner.GradientCheckpointing = nil
		r.Notices = append(r.Notices, fmt.Sprintf("config: learner.gradient_checkpointing is deprecated: use learner.recompute_activations = %q (or \"auto\")", r.Learner.RecomputeActivations))
	}
	for _, k := range md.Undecoded() {
		// Reward args are free-form tables passed to the reward.
		if isRewardArgs(k) {
			continue
		}
		return Run{}, fmt.Errorf("line %d: unknown key %q", lineOf(src, k), k.String())
	}
	return r, nil
}

// checkUnsigned refuses a negative integer given for an unsigned key (seed): the TOML
// decoder stores it wrapped around (seed = -1 became 18446744073709551615).
func checkUnsigned(src []byte) error {
	var raw map[string]any
	if _, err := toml.Decode(string(src), &raw); err != nil {
		return errors.New(oneLine(err.Error()))
	}
	if k, v, ok := negativeUnsigned(raw, reflect.TypeOf(Run{}), nil); ok {
		return fmt.Errorf("line %d: %s = %d: want an integer >= 0", lineOf(src, k), k.String(), v)
	}
	return nil
}

// negativeUnsigned walks the decoded TOML raw beside the struct type t it decodes into
// and returns the first key whose value is a negative integer bound for an unsigned field.
func negativeUnsigned(raw map[string]any, t reflect.Type, at toml.Key) (toml.Key, int64, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if name == "" && f.Anonymous && ft.Kind() == reflect.Struct {
			// An embedded struct's keys sit in the same table (config.Reward).
			if k, v, ok := negativeUnsigned(raw, ft, at); ok {
				return k, v, true
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := append(append(toml.Key{}, at...), name)
		if k, v, ok := negativeIn(raw[name], ft, key); ok {
			return k, v, true
		}
	}
	return nil, 0, false
}

// negativeIn is negativeUnsigned for one value and the type it decodes into.
func negativeIn(val any, t reflect.Type, key toml.Key) (toml.Key, int64, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n, ok := val.(int64); ok && n < 0 {
			return key, n, true
		}
	case reflect.Struct:
		if m, ok := val.(map[string]any); ok {
			return negativeUnsigned(m, t, key)
		}
	case reflect.Slice, reflect.Array:
		var items []any
		switch v := val.(type) {
		case []any:
			items = v
		case []map[string]any: // an array of tables
			for _, m := range v {
				items = append(items, m)
			}
		}
		for _, item := range items {
			if k, n, ok := negativeIn(item, t.Elem(), key); ok {
				return k, n, true
			}
		}
	}
	return nil, 0, false
}

// isRewardArgs reports whether k lies inside a [[rewards]] entry's args table.
func isRewardArgs(k toml.Key) bool {
	for i := 0; i+1 < len(k); i++ {
		if k[i] == "rewards" && k[i+1] == "args" {
			return true
		}
	}
	return false
}

// lineOf finds the line that defines key k: the assignment of its last part inside the
// table named by the rest (or a table header naming all of it). 0 when not found.
func lineOf(src []byte, k toml.Key) int {
	table := ""
	want := strings.Join(k[:len(k)-1], ".")
	last := k[len(k)-1]
	for i, line := range strings.Split(string(src), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "["): // [table] or [[array of tables]]
			table = strings.TrimSpace(strings.Trim(t, "[] "))
			if table == k.String() {
				return i + 1
			}
		default:
			name, _, ok := strings.Cut(t, "=")
			if !ok {
				continue
			}
			name = strings.Trim(strings.TrimSpace(name), `"'`)
			full := name
			if table != "" {
				full = table + "." + name
			}
			if full == k.String() || (table == want && name == last) {
				return i + 1
			}
		}
	}
	return 0
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ResolvePaths makes every path of the run absolute, relative paths taken from dir (the
// config file's directory, or the working directory for paths from the command line),
// so that the run's config.toml names the same files wherever it is read from (a resume
// from another directory, `rlif export RUN`). The default model's path is left as it is
// (it is the repository's, found by the command line), as are named data sets, and a bare
// plugin name (no directory part) is a command looked up in $PATH unless a file of that
// name is in dir.
func (r *Run) ResolvePaths(dir string) error {
	var err error
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) || err != nil {
			return p
		}
		var a string
		a, err = filepath.Abs(filepath.Join(dir, p))
		return a
	}
	if r.Model != DefaultModel {
		r.Model = abs(r.Model)
	}
	r.Out = abs(r.Out)
	// A named set (data.path = "math-train") is resolved when the data loads, not here; so
	// is a bare word that names no file, most likely a set's name misspelled, which
	// data.Resolve then reports with the names it knows.
	dataPath := func(p string) string {
		if data.IsSetName(p) {
			return p
		}
		if p != "" && !strings.ContainsRune(p, filepath.Separator) && filepath.Ext(p) == "" {
			if _, serr := os.Stat(filepath.Join(dir, p)); serr != nil {
				return p
			}
		}
		return abs(p)
	}
	r.Data.Path = dataPath(r.Data.Path)
	r.Eval.Data = dataPath(r.Eval.Data)
	for i := range r.Rewards {
		p := r.Rewards[i].Plugin
		if p != "" && !strings.ContainsRune(p, filepath.Separator) {
			if st, serr := os.Stat(filepath.Join(dir, p)); serr != nil || st.IsDir() {
				continue // a command on $PATH
			}
		}
		r.Rewards[i].Plugin = abs(p)
	}
	if err != nil {
		return fmt.Errorf("resolve paths: %w", err)
	}
	return nil
}

// Validate checks every value before any model loads; the error names the key.
func (r Run) Validate() error {
	type check struct {
		bad bool
		msg string
	}
	s, l := r.Sampling, r.Learner
	checks := []check{
		{r.Model == "", "model: a GGUF file is required"},
		{r.Out == "", "out: an output directory is required"},
		{r.Steps < 0, fmt.Sprintf("steps = %d: want >= 0 (0 runs one pass over the data)", r.Steps)},
		{r.Data.Epochs < 1, fmt.Sprintf("data.epochs = %d: want >= 1", r.Data.Epochs)},
		{r.Data.Limit < 0, fmt.Sprintf("data.limit = %d: want >= 0", r.Data.Limit)},
		{r.Data.Path == "" && r.Data.BuiltinSize < 1, fmt.Sprintf("data.builtin_size = %d: want >= 1", r.Data.BuiltinSize)},
		{s.PromptsPerStep < 1, fmt.Sprintf("sampling.prompts_per_step = %d: want >= 1", s.PromptsPerStep)},
		{s.GroupSize < 2, fmt.Sprintf("sampling.group_size = %d: GRPO needs >= 2 completions per prompt", s.GroupSize)},
		// A step's completions are held together (an absurd prompts_per_step was a
		// "fatal error: out of memory" after both engines had loaded).
		{float64(s.PromptsPerStep)*float64(s.GroupSize) > MaxCompletionsPerStep, fmt.Sprintf("sampling.prompts_per_step × group_size = %d × %d completions a step: want at most %d (a step's completions are held in memory together)", s.PromptsPerStep, s.GroupSize, MaxCompletionsPerStep)},
		{s.MaxTokens < 1, fmt.Sprintf("sampling.max_tokens = %d: want >= 1", s.MaxTokens)},
		{s.ParallelSequences < s.GroupSize, fmt.Sprintf("sampling.parallel_sequences = %d: want >= group_size (%d): a group is decoded together", s.ParallelSequences, s.GroupSize)},
		{!(s.Temperature > 0) || !num.Finite(s.Temperature), fmt.Sprintf("sampling.temperature = %v: RL needs sampling, want > 0", s.Temperature)},
		{s.Threads < 0, fmt.Sprintf("sampling.threads = %d: want >= 0 (0 uses all cores)", s.Threads)},
		{l.Threads < 0, fmt.Sprintf("learner.threads = %d: want >= 0 (0 uses all cores)", l.Threads)},
		{!(s.TopP > 0 && s.TopP <= 1), fmt.Sprintf("sampling.top_p = %v: want in (0, 1]", s.TopP)},
		{s.TopK < 0, fmt.Sprintf("sampling.top_k = %d: want >= 0", s.TopK)},
		{!(s.MinP >= 0 && s.MinP < 1), fmt.Sprintf("sampling.min_p = %v: want in [0, 1)", s.MinP)},
		{!(l.LR > 0) || !num.Finite(l.LR), fmt.Sprintf("learner.lr = %v: want > 0", l.LR)},
		{!oneOf(l.Schedule, "constant", "linear", "cosine"), fmt.Sprintf("learner.schedule = %q: want constant, linear or cosine", l.Schedule)},
		{!(l.WarmupRatio >= 0 && l.WarmupRatio < 1), fmt.Sprintf("learner.warmup_ratio = %v: want in [0, 1)", l.WarmupRatio)},
		{!(l.Beta >= 0) || !num.Finite(l.Beta), fmt.Sprintf("learner.beta = %v: want >= 0", l.Beta)},
		{!(l.EpsLow > 0 && l.EpsLow < 1), fmt.Sprintf("learner.eps_low = %v: want in (0, 1)", l.EpsLow)},
		{!(l.EpsHigh > 0) || !num.Finite(l.EpsHigh), fmt.Sprintf("learner.eps_high = %v: want > 0", l.EpsHigh)},
		{!oneOf(l.Loss, "grpo", "bnpo", "dapo", "dr_grpo", "cispo", "sapo", "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"), fmt.Sprintf("learner.loss = %q: want grpo, bnpo, dapo, dr_grpo, cispo, sapo, or verl's token-mean, seq-mean-token-mean, seq-mean-token-sum, seq-mean-token-sum-norm", l.Loss)},
		{l.Mu < 1, fmt.Sprintf("learner.mu = %d: want >= 1", l.Mu)},
		{l.StepsPerGeneration < 0, fmt.Sprintf("learner.steps_per_generation = %d: want >= 1 (0: 1)", l.StepsPerGeneration)},
		{l.StepsPerGeneration > s.PromptsPerStep*s.GroupSize, fmt.Sprintf("learner.steps_per_generation = %d: want at most the step's %d completions", l.StepsPerGeneration, s.PromptsPerStep*s.GroupSize)},
		{!oneOf(l.ImportanceSamplingLevel, "", "token", "sequence"), fmt.Sprintf("learner.importance_sampling_level = %q: want token or sequence", l.ImportanceSamplingLevel)},
		{l.Delta != 0 && !(l.Delta > 1+l.EpsHigh && num.Finite(l.Delta)), fmt.Sprintf("learner.delta = %v: want > 1 + eps_high (%v), or 0 for off", l.Delta, 1+l.EpsHigh)},
		{l.Loss == "cispo" && !(l.EpsHigh >= 1), fmt.Sprintf("learner.eps_high = %v with loss = \"cispo\": CISPO caps the IS weight at eps_high itself; want >= 1 (ScaleRL uses 5)", l.EpsHigh)},
		{!(l.SAPOTemperaturePos >= 0 && l.SAPOTemperatureNeg >= 0) || !num.Finite(l.SAPOTemperaturePos) || !num.Finite(l.SAPOTemperatureNeg), fmt.Sprintf("learner.sapo_temperature_pos/neg = %v, %v: want > 0 (0: 1 and 1.05)", l.SAPOTemperaturePos, l.SAPOTemperatureNeg)},
		{!(l.TopEntropyQuantile >= 0 && l.TopEntropyQuantile <= 1), fmt.Sprintf("learner.top_entropy_quantile = %v: want in (0, 1] (0: 1, every token)", l.TopEntropyQuantile)},
		{!(l.EntropyCoef >= 0) || !num.Finite(l.EntropyCoef), fmt.Sprintf("learner.entropy_coef = %v: want >= 0 (0: off)", l.EntropyCoef)},
		{!(l.OffPolicyMaskThreshold >= 0) || !num.Finite(l.OffPolicyMaskThreshold), fmt.Sprintf("learner.off_policy_mask_threshold = %v: want > 0, or 0 for off", l.OffPolicyMaskThreshold)},
		{!oneOf(l.ISMode, "", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"), fmt.Sprintf("learner.is_mode = %q: want token_truncate, token_mask, sequence_truncate or sequence_mask", l.ISMode)},
		{l.ISMode != "" && l.ISMode != "token_truncate" && l.ISCap == 0, fmt.Sprintf("learner.is_mode = %q needs learner.is_cap > 0 (the band's upper bound)", l.ISMode)},
		{!(l.ISMin >= 0) || (l.ISCap > 0 && l.ISMin > l.ISCap), fmt.Sprintf("learner.is_min = %v: want 0 to is_cap (%v)", l.ISMin, l.ISCap)},
		{l.MicroBatch < 0, fmt.Sprintf("learner.micro_batch = %d: want >= 0 (0: whole batch)", l.MicroBatch)},
		{!(l.MemoryBudgetGiB >= 0) || math.IsInf(l.MemoryBudgetGiB, 0), fmt.Sprintf("learner.memory_budget_gib = %g: want >= 0 GiB (0: no budget)", l.MemoryBudgetGiB)},
		{!(l.MaxGradNorm >= 0), fmt.Sprintf("learner.max_grad_norm = %v: want >= 0 (0: no clipping)", l.MaxGradNorm)},
		{!(l.WeightDecay >= 0), fmt.Sprintf("learner.weight_decay = %v: want >= 0", l.WeightDecay)},
		{!(l.AdamBeta1 >= 0 && l.AdamBeta1 < 1) || !(l.AdamBeta2 >= 0 && l.AdamBeta2 < 1), "learner.adam_beta1/adam_beta2: want in [0, 1)"},
		{l.ISCap != 0 && !(l.ISCap >= 1), fmt.Sprintf("learner.is_cap = %v: want >= 1, or 0 to turn the correction off", l.ISCap)},
		{!oneOf(l.Device, "cpu", "cuda"), fmt.Sprintf("learner.device = %q: want cpu or cuda", l.Device)},
		{!oneOf(l.Precision, "auto", "bf16", "f32"), fmt.Sprintf("learner.precision = %q: want auto, bf16 or f32", l.Precision)},
		{!oneOf(l.RecomputeActivations, "auto", "on", "off"), fmt.Sprintf("learner.recompute_activations = %q: want auto, on or off", l.RecomputeActivations)},
		{r.LoRA.Enabled && r.LoRA.Rank < 1, fmt.Sprintf("lora.rank = %d: want >= 1", r.LoRA.Rank)},
		{r.LoRA.Enabled && !(r.LoRA.Alpha > 0), fmt.Sprintf("lora.alpha = %v: want > 0", r.LoRA.Alpha)},
		{!oneOf(r.Sync.Precision, "auto", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"), fmt.Sprintf("sync.precision = %q: want auto, f32, f16, bf16, q8_0, q4_0 or q4_1", r.Sync.Precision)},
		{!oneOf(r.SelfCertainty.Source, "sampler", "learner", "offline"), fmt.Sprintf("self_certainty.source = %q: want sampler, learner or offline", r.SelfCertainty.Source)},
		{r.Output.CheckpointEvery < 0, fmt.Sprintf("output.checkpoint_every = %d: want >= 0 (0: only at the end)", r.Output.CheckpointEvery)},
		{!(r.Output.CheckpointMinutes >= 0) || !num.Finite(r.Output.CheckpointMinutes), fmt.Sprintf("output.checkpoint_minutes = %v: want >= 0 (0: no time-based checkpoints)", r.Output.CheckpointMinutes)},
		{r.Output.CompletionsEvery < 0, fmt.Sprintf("output.completions_every = %d: want >= 0 (0: never)", r.Output.CompletionsEvery)},
		{r.Output.KeepCheckpoints < 0, fmt.Sprintf("output.keep_checkpoints = %d: want >= 0 (0: keep all)", r.Output.KeepCheckpoints)},
	}
	// The sampler's own rules first (NaN and infinities included), named as config keys.
	sp := sampling.Params{MaxTokens: s.MaxTokens, Temperature: s.Temperature, TopP: s.TopP, TopK: s.TopK, MinP: s.MinP, Stop: s.Stop}
	if err := sp.Validate(); err != nil {
		return fmt.Errorf("sampling.%w", err)
	}
	for _, c := range checks {
		if c.bad {
			return errors.New(c.msg)
		}
	}
	if err := r.validateEval(); err != nil {
		return err
	}
	for _, t := range r.LoRA.Targets {
		if !oneOf(t, "q", "k", "v", "o", "gate", "up", "down") {
			return fmt.Errorf("lora.targets: %q is not one of q, k, v, o, gate, up, down", t)
		}
	}
	return r.ValidateRewards()
}

func oneOf(s string, options ...string) bool {
	for _, o := range options {
		if s == o {
			return true
		}
	}
	return false
}

// Encode writes the run as TOML (every key, defaults included), so a run can be repeated.
func (r Run) Encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# rlif run configuration, fully resolved (defaults included).\n# Repeat the run with: rlif train --config config.toml\n\n")
	if err := toml.NewEncoder(&b).Encode(r); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return b.Bytes(), nil
}

// Hash identifies the settings that make checkpoints compatible: everything but the
// step count, the output settings and the thread counts, which a resumed run may change.
func (r Run) Hash() (string, error) {
	b, err := r.weightSettings().Encode()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// weightSettings is the run less what a resumed run may change (Hash's list): what the
// weights of its checkpoints depend on.
func (r Run) weightSettings() Run {
	c := r
	c.Steps = 0
	c.Out = ""
	c.Output = Output{}
	c.Eval = Eval{} // evaluation reads the weights, it does not change them
	c.Sampling.Threads, c.Learner.Threads, c.Sampling.GPULayers = 0, 0, 0
	c.Plugins = Plugins{}
	c.Rewards = append([]Reward(nil), r.Rewards...)
	for i := range c.Rewards {
		c.Rewards[i].TimeoutSeconds = 0 // a limit, like [plugins]
	}
	return c
}

// validateEval checks [eval] and output.keep_best.
func (r Run) validateEval() error {
	e, o := r.Eval, r.Output
	finite := num.Finite(e.Temperature)
	switch {
	case e.Every < 0:
		return fmt.Errorf("eval.every = %d: want >= 0 (0: no evaluation)", e.Every)
	case e.Every > 0 && e.Data == "":
		return fmt.Errorf("eval.every = %d: eval.data names no held-out set; give a file or a named set (gsm8k-test, ...)", e.Every)
	case e.Limit < 0:
		return fmt.Errorf("eval.limit = %d: want >= 0 (0: all items)", e.Limit)
	case e.MaxTokens < 0 || e.MaxTokens > r.Sampling.MaxTokens:
		return fmt.Errorf("eval.max_tokens = %d: want 0 (sampling.max_tokens) to sampling.max_tokens (%d), which sizes the sampler's KV cache", e.MaxTokens, r.Sampling.MaxTokens)
	case e.N < 0 || e.N > r.Sampling.GroupSize:
		return fmt.Errorf("eval.n = %d: want 1 to sampling.group_size (%d), which sizes the sampler's KV cache", e.N, r.Sampling.GroupSize)
	case !(e.Temperature >= 0) || !finite:
		return fmt.Errorf("eval.temperature = %v: want >= 0 (0: greedy)", e.Temperature)
	case e.N > 1 && e.Temperature == 0:
		return fmt.Errorf("eval.n = %d with greedy decoding would sample the same completion %d times; set eval.temperature > 0", e.N, e.N)
	case !oneOf(o.KeepBestMode, "", "max", "min"):
		return fmt.Errorf("output.keep_best_mode = %q: want max or min", o.KeepBestMode)
	case o.KeepBest == KeepBestLabelFree:
	case o.KeepBest != "" && !strings.HasPrefix(o.KeepBest, "eval/"):
		return fmt.Errorf("output.keep_best = %q: want an eval metric, such as \"eval/accuracy\", or %q", o.KeepBest, KeepBestLabelFree)
	case o.KeepBest != "" && e.Every == 0:
		return fmt.Errorf("output.keep_best = %q: needs an evaluation during training; set eval.data and eval.every", o.KeepBest)
	}
	if err := o.HealthRule().Check(); err != nil {
		return fmt.Errorf("output.%w", err)
	}
	return nil
}

// HashBeforeAbsolutePaths is Hash as builds that recorded paths relative to the working
// directory computed it, for a run started in dir: a checkpoint of such a run still
// resumes from there.
func (r Run) HashBeforeAbsolutePaths(dir string) (string, error) {
	rel := func(p string) string {
		if !filepath.IsAbs(p) {
			return p
		}
		if q, err := filepath.Rel(dir, p); err == nil {
			return q
		}
		return p
	}
	c := r
	c.Model, c.Data.Path, c.Eval.Data = rel(c.Model), rel(c.Data.Path), rel(c.Eval.Data)
	c.Rewards = append([]Reward(nil), r.Rewards...)
	for i := range c.Rewards {
		c.Rewards[i].Plugin = rel(c.Rewards[i].Plugin)
	}
	return c.Hash()
}
