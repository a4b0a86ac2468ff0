// Package torch is the cgo binding to rlif's libtorch shim (shim.cc). It is the only
// package that links libtorch; it mirrors the shim's coarse C ABI one to one and leaves
// every decision (batching, schedules, loss normalization) to package learner.
//
// The C++ is compiled by cgo against Debian's libtorch by default; scripts/cgo-env.sh sets
// CGO_CPPFLAGS/CGO_LDFLAGS for another one (LIBTORCH=/path/to/libtorch, e.g. a CUDA build).
package torch

/*
#cgo CXXFLAGS: -std=c++17 -O2 -fopenmp-simd -Wno-deprecated-declarations -DUSE_C10D_GLOO
#cgo LDFLAGS: -ltorch -ltorch_cpu -lc10 -lstdc++
#cgo linux,amd64 LDFLAGS: -lmvec
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// Arch codes, as the shim numbers them.
const (
	ArchLlama = C.RL_ARCH_LLAMA
	ArchQwen2 = C.RL_ARCH_QWEN2
	ArchQwen3 = C.RL_ARCH_QWEN3
	ArchOlmo2 = C.RL_ARCH_OLMO2
)

// Config is the model's shape and numerics.
type Config struct {
	Arch                                         int
	Vocab, Embd, Layers, Heads, HeadsKV, HeadDim int
	FF                                           int
	RMSEps, RopeBase, RopeFreqScale              float32
	RopeNeoX                                     bool
	Threads                                      int
	CUDA                                         int // -1: CPU
	// ComputeBF16 runs the matmuls in bfloat16 (autocast) over float32 weights; norms,
	// softmax, the loss and all reductions stay float32.
	ComputeBF16 bool
	// HeadChunkBytes bounds the output layer's logits held at once (0: 256 MiB).
	HeadChunkBytes int64
}

// Model is one model held by the shim. Its methods are not safe for concurrent use.
type Model struct {
	p *C.rl_model
}

func errOf(msg *C.char) error {
	if msg == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(msg))
	return errors.New(C.GoString(msg))
}

func b2i(b bool) C.int32_t {
	if b {
		return 1
	}
	return 0
}

// New creates an empty model; set its tensors, then Finalize.
func New(c Config) (*Model, error) {
	cc := C.rl_config{
		arch: C.int32_t(c.Arch), n_vocab: C.int32_t(c.Vocab), n_embd: C.int32_t(c.Embd), n_layer: C.int32_t(c.Layers),
		n_head: C.int32_t(c.Heads), n_head_kv: C.int32_t(c.HeadsKV), head_dim: C.int32_t(c.HeadDim), n_ff: C.int32_t(c.FF),
		rms_eps: C.float(c.RMSEps), rope_base: C.float(c.RopeBase), rope_freq_scale: C.float(c.RopeFreqScale),
		rope_neox: b2i(c.RopeNeoX), threads: C.int32_t(c.Threads), cuda: C.int32_t(c.CUDA),
		// The weights are always float32 masters (rl_config.bf16 stays 0): bf16 is a
		// compute precision only.
		compute_bf16: b2i(c.ComputeBF16), head_chunk_bytes: C.int64_t(c.HeadChunkBytes),
	}
	var p *C.rl_model
	if err := errOf(C.rl_new(&cc, &p)); err != nil {
		return nil, err
	}
	return &Model{p: p}, nil
}

// Close frees the model.
func (m *Model) Close() {
	if m.p != nil {
		C.rl_free(m.p)
		m.p = nil
	}
}

// SetTensor copies data into the named tensor; shape is in PyTorch order.
func (m *Model) SetTensor(name string, data []float32, shape []int64) error {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if n != int64(len(data)) || len(data) == 0 {
		return fmt.Errorf("tensor %s: shape %v for %d values", name, shape, len(data))
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	err := errOf(C.rl_set_tensor(m.p, cn, (*C.float)(&data[0]), (*C.int64_t)(&shape[0]), C.int32_t(len(shape))))
	runtime.KeepAlive(data)
	return err
}

// Finalize checks that the tensors make a complete model of the configured architecture.
func (m *Model) Finalize() error { return errOf(C.rl_finalize(m.p)) }

// Tensor copies the named tensor (or its gradient) into out. merged adds the LoRA delta.
func (m *Model) Tensor(name string, out []float32, merged, grad bool) error {
	if len(out) == 0 {
		return fmt.Errorf("tensor %s: empty buffer", name)
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return errOf(C.rl_get_tensor(m.p, cn, (*C.float)(&out[0]), C.int64_t(len(out)), b2i(merged), b2i(grad)))
}

// EnableLoRA freezes the base weights and adds trainable adapters to the targets
// (comma-separated q,k,v,o,gate,up,down).
func (m *Model) EnableLoRA(rank int, alpha float32, targets string, seed uint64) error {
	ct := C.CString(targets)
	defer C.free(unsafe.Pointer(ct))
	return errOf(C.rl_lora_enable(m.p, C.int32_t(rank), C.float(alpha), ct, C.uint64_t(seed)))
}

// Batch is a right-padded batch of token sequences, row-major [B][T]. PromptGroup and
// PromptLength (both or neither) let rows that share a prompt compute it once: row b
// belongs to group PromptGroup[b] (0, 1, ... in row order; a group's rows consecutive),
// whose rows all start with the same PromptLength[b] tokens.
type Batch struct {
	Tokens                    []int32
	Lengths                   []int32
	PromptGroup, PromptLength []int32
	B, T                      int
}

// c returns the C view of the batch; the slices are pinned (the C struct that points at
// them lives in Go memory) until the caller unpins.
func (b *Batch) c(pin *runtime.Pinner) (C.rl_batch, error) {
	if b.B <= 0 || b.T <= 0 || len(b.Tokens) != b.B*b.T || len(b.Lengths) != b.B {
		return C.rl_batch{}, fmt.Errorf("batch %dx%d with %d tokens and %d lengths", b.B, b.T, len(b.Tokens), len(b.Lengths))
	}
	pin.Pin(&b.Tokens[0])
	pin.Pin(&b.Lengths[0])
	cb := C.rl_batch{tokens: (*C.int32_t)(&b.Tokens[0]), lengths: (*C.int32_t)(&b.Lengths[0]), B: C.int32_t(b.B), T: C.int32_t(b.T)}
	if b.PromptGroup != nil {
		if len(b.PromptGroup) != b.B || len(b.PromptLength) != b.B {
			return C.rl_batch{}, fmt.Errorf("batch of %d rows with %d prompt groups and %d prompt lengths", b.B, len(b.PromptGroup), len(b.PromptLength))
		}
		pin.Pin(&b.PromptGroup[0])
		pin.Pin(&b.PromptLength[0])
		cb.prompt_group = (*C.int32_t)(&b.PromptGroup[0])
		cb.prompt_length = (*C.int32_t)(&b.PromptLength[0])
	}
	return cb, nil
}

// Stats are per-position outputs [B*T]; entry b*T+t describes token t of row b under the
// distribution computed from the tokens before it (t = 0 and padding are zero).
type Stats struct {
	LogProb, RawLogProb, Entropy, SelfCertainty []float64
	MaxAbsLogit                                 []float64 // max_v |z_v|, with the statistics
}

func ptr(pin *runtime.Pinner, s []float64) *C.double {
	if s == nil {
		return nil
	}
	pin.Pin(&s[0])
	return (*C.double)(&s[0])
}

// LogProbs runs a forward pass without gradients. withStats also fills entropy and
// self-certainty (and the T=1 log-prob).
func (m *Model) LogProbs(b *Batch, temperature float32, noLoRA, withStats bool) (*Stats, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return nil, err
	}
	n := b.B * b.T
	s := &Stats{LogProb: make([]float64, n)}
	if withStats {
		s.RawLogProb, s.Entropy, s.SelfCertainty, s.MaxAbsLogit = make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	}
	err = errOf(C.rl_logprobs(m.p, &cb, C.float(temperature), b2i(noLoRA), ptr(&pin, s.LogProb), ptr(&pin, s.RawLogProb), ptr(&pin, s.Entropy), ptr(&pin, s.SelfCertainty), ptr(&pin, s.MaxAbsLogit)))
	runtime.KeepAlive(b)
	return s, err
}

// TokenLogProbs returns the log-probs [B*T] at temperature of the positions where mask
// [B*T] is 1 (zero elsewhere): a forward pass without gradients that computes only those
// outputs, in float32 from the logits on.
func (m *Model) TokenLogProbs(b *Batch, mask []float32, temperature float32, noLoRA bool) ([]float64, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return nil, err
	}
	n := b.B * b.T
	if len(mask) != n {
		return nil, fmt.Errorf("log-probs: mask of %d values for a %dx%d batch", len(mask), b.B, b.T)
	}
	pin.Pin(&mask[0])
	out := make([]float64, n)
	err = errOf(C.rl_token_logprobs(m.p, &cb, (*C.float)(&mask[0]), C.float(temperature), b2i(noLoRA), ptr(&pin, out)))
	runtime.KeepAlive(b)
	runtime.KeepAlive(mask)
	return out, err
}

// LossArgs are the GRPO loss inputs of one micro-batch; per-position arrays are [B*T].
type LossArgs struct {
	Mask           []float32
	Advantages     []float32 // [B]
	OldLogProb     []float64 // nil: the current log-probs, detached
	RefLogProb     []float64 // nil when Beta == 0
	SamplerLogProb []float64 // nil: no truncated importance sampling
	Temperature    float32
	EpsLow, EpsHi  float32
	Beta, ISCap    float32
	// RowWeight [B] multiplies each sequence's summed token losses: the loss aggregation
	// (a mean per sequence, per micro-batch or per batch) is the caller's.
	RowWeight []float32
	Recompute bool // recompute block activations in the backward: less memory, one more forward
	Policy    PolicyOpts
}

// Objectives of the policy loss, as the shim numbers them.
const (
	ObjectiveClip  = C.RL_OBJ_CLIP
	ObjectiveCISPO = C.RL_OBJ_CISPO
	ObjectiveSAPO  = C.RL_OBJ_SAPO
)

// Importance sampling modes, as the shim numbers them.
const (
	ISTokenTruncate    = C.RL_IS_TOKEN_TRUNCATE
	ISTokenMask        = C.RL_IS_TOKEN_MASK
	ISSequenceTruncate = C.RL_IS_SEQUENCE_TRUNCATE
	ISSequenceMask     = C.RL_IS_SEQUENCE_MASK
)

// PolicyOpts are the policy-optimization options of the loss (rl_policy_opts); the zero
// value is the GRPO loss with token-level truncated importance sampling.
type PolicyOpts struct {
	Objective                int  // Objective*
	SequenceRatio            bool // GSPO
	Delta                    float32
	SAPOTempPos, SAPOTempNeg float32
	ISMode                   int // IS*
	ISMin                    float32
	OffPolicyMask            bool
	OffPolicyThreshold       float32
	EntropyQuantile          float32 // > 0: train tokens with entropy >= this quantile of the micro-batch's
	// EntropyWeight != 0 subtracts EntropyWeight × the trained tokens' summed entropies
	// (those the entropy mask keeps) from the loss: the entropy bonus.
	EntropyWeight float32
}

// LossStats are sums over the micro-batch's trained tokens.
type LossStats struct {
	Loss, Tokens, KLSum, RatioSum, ISSum float64
	// ClipLow and ClipHigh count the tokens whose clipped surrogate won (no gradient):
	// ratio < 1−ε_low with A < 0, and ratio > 1+ε_high with A > 0.
	ClipLow, ClipHigh float64
	KLClamped         float64 // tokens whose KL log-ratio was clamped
	// Tokens whose IS weight a mask mode zeroed, of rows the off-policy mask dropped, and
	// below the entropy quantile.
	ISMasked, OffPolicyMasked, EntropyMasked float64
	EntropySum                               float64 // when the entropy mask or bonus computed them
}

// LossBackward computes the micro-batch's share of the loss and accumulates gradients.
func (m *Model) LossBackward(b *Batch, a *LossArgs) (LossStats, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	cb, err := b.c(&pin)
	if err != nil {
		return LossStats{}, err
	}
	n := b.B * b.T
	if len(a.Mask) != n || len(a.Advantages) != b.B {
		return LossStats{}, fmt.Errorf("loss: mask %d / advantages %d for a %dx%d batch", len(a.Mask), len(a.Advantages), b.B, b.T)
	}
	for _, s := range [][]float64{a.OldLogProb, a.RefLogProb, a.SamplerLogProb} {
		if s != nil && len(s) != n {
			return LossStats{}, fmt.Errorf("loss: per-token input of %d values for a %dx%d batch", len(s), b.B, b.T)
		}
	}
	if len(a.RowWeight) != b.B {
		return LossStats{}, fmt.Errorf("loss: %d row weights for a batch of %d", len(a.RowWeight), b.B)
	}
	for i, w := range a.RowWeight {
		if !(w >= 0) || math.IsInf(float64(w), 0) {
			return LossStats{}, fmt.Errorf("loss: row %d has weight %v", i, w)
		}
	}
	pin.Pin(&a.Mask[0])
	pin.Pin(&a.Advantages[0])
	pin.Pin(&a.RowWeight[0])
	ca := C.rl_loss_args{
		mask: (*C.float)(&a.Mask[0]), advantages: (*C.float)(&a.Advantages[0]),
		old_logprob: ptr(&pin, a.OldLogProb), ref_logprob: ptr(&pin, a.RefLogProb), sampler_logprob: ptr(&pin, a.SamplerLogProb),
		temperature: C.float(a.Temperature), eps_low: C.float(a.EpsLow), eps_high: C.float(a.EpsHi),
		beta: C.float(a.Beta), is_cap: C.float(a.ISCap), row_weight: (*C.float)(&a.RowWeight[0]), recompute: b2i(a.Recompute),
		opt: C.rl_policy_opts{
			objective: C.int32_t(a.Policy.Objective), sequence_ratio: b2i(a.Policy.SequenceRatio), delta: C.float(a.Policy.Delta),
			sapo_tau_pos: C.float(a.Policy.SAPOTempPos), sapo_tau_neg: C.float(a.Policy.SAPOTempNeg),
			is_mode: C.int32_t(a.Policy.ISMode), is_min: C.float(a.Policy.ISMin),
			off_policy_mask: b2i(a.Policy.OffPolicyMask), off_policy_threshold: C.float(a.Policy.OffPolicyThreshold),
			entropy_q: C.float(a.Policy.EntropyQuantile), entropy_weight: C.float(a.Policy.EntropyWeight),
		},
	}
	var st C.rl_loss_stats
	err = errOf(C.rl_loss_backward(m.p, &cb, &ca, &st))
	runtime.KeepAlive(b)
	runtime.KeepAlive(a)
	return LossStats{Loss: float64(st.loss), Tokens: float64(st.tokens), KLSum: float64(st.kl_sum), RatioSum: float64(st.ratio_sum),
		ISSum: float64(st.is_sum), ClipLow: float64(st.clip_low), ClipHigh: float64(st.clip_high), KLClamped: float64(st.kl_clamped),
		ISMasked: float64(st.is_masked), OffPolicyMasked: float64(st.off_policy_masked), EntropyMasked: float64(st.entropy_masked),
		EntropySum: float64(st.entropy_sum)}, err
}

// AdamW are one optimizer step's settings.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay, MaxGradNorm float64
}

// Step clips the accumulated gradients, applies AdamW and clears them. It returns the
// gradient norm before clipping.
func (m *Model) Step(o AdamW) (float64, error) {
	co := C.rl_adamw{lr: C.double(o.LR), beta1: C.double(o.Beta1), beta2: C.double(o.Beta2), eps: C.double(o.Eps),
		weight_decay: C.double(o.WeightDecay), max_grad_norm: C.double(o.MaxGradNorm)}
	var norm C.double
	err := errOf(C.rl_step(m.p, &co, &norm))
	return float64(norm), err
}

// ZeroGrad drops the accumulated gradients.
func (m *Model) ZeroGrad() error { return errOf(C.rl_zero_grad(m.p)) }

// Trainable is the number of trainable parameters.
func (m *Model) Trainable() int64 { return int64(C.rl_trainable(m.p)) }

// TrainableInfo names the i-th trainable tensor (GGUF name, or "<weight>.lora_a/_b")
// and gives its element count.
func (m *Model) TrainableInfo(i int) (string, int64, error) {
	buf := make([]byte, 512)
	var n C.int64_t
	err := errOf(C.rl_trainable_info(m.p, C.int64_t(i), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf)), &n))
	if err != nil {
		return "", 0, err
	}
	return C.GoString((*C.char)(unsafe.Pointer(&buf[0]))), int64(n), nil
}

// TrainableCount is the number of trainable tensors.
func (m *Model) TrainableCount() int { return int(C.rl_trainable_count(m.p)) }

// State kinds for StateIO.
const (
	StateValue = 0
	StateAdamM = 1
	StateAdamV = 2
)

// StateIO copies the i-th trainable tensor's value or Adam moment out of (write=false)
// or into (write=true) buf.
func (m *Model) StateIO(i, kind int, buf []float32, write bool) error {
	if len(buf) == 0 {
		return errors.New("empty state buffer")
	}
	return errOf(C.rl_state_io(m.p, C.int64_t(i), C.int32_t(kind), (*C.float)(&buf[0]), C.int64_t(len(buf)), b2i(write)))
}

// OptimizerSteps is AdamW's step count (for bias correction); SetOptimizerSteps restores it.
func (m *Model) OptimizerSteps() int64     { return int64(C.rl_get_steps(m.p)) }
func (m *Model) SetOptimizerSteps(n int64) { C.rl_set_steps(m.p, C.int64_t(n)) }

// HeadLogProbs runs the loss's fused output-layer log-softmax on logits z [n, V] (rounded
// to bfloat16 first when bf16 is set): the log-prob of each row's target at temperature,
// and the gradient of Σ g[i]·lp[i] with respect to z. It is exported for its tests.
func HeadLogProbs(z []float32, n, vocab int, tgt []int64, temperature float32, bf16 bool, g []float32) (lp, dz []float32, err error) {
	if n < 1 || vocab < 1 || len(z) != n*vocab || len(tgt) != n || len(g) != n {
		return nil, nil, fmt.Errorf("head log-probs: %d logits, %d targets, %d gradients for %d rows of %d", len(z), len(tgt), len(g), n, vocab)
	}
	for _, t := range tgt {
		if t < 0 || t >= int64(vocab) {
			return nil, nil, fmt.Errorf("head log-probs: target %d outside [0, %d)", t, vocab)
		}
	}
	lp, dz = make([]float32, n), make([]float32, n*vocab)
	err = errOf(C.rl_head_logprobs((*C.float)(unsafe.Pointer(&z[0])), C.int64_t(n), C.int64_t(vocab), (*C.int64_t)(unsafe.Pointer(&tgt[0])),
		C.float(temperature), b2i(bf16), (*C.float)(unsafe.Pointer(&g[0])), (*C.float)(unsafe.Pointer(&lp[0])), (*C.float)(unsafe.Pointer(&dz[0]))))
	return lp, dz, err
}

// AllocatorFreeBytes is the memory the process's allocator holds free but still mapped:
// what earlier steps freed and the next allocations reuse without asking the kernel.
func AllocatorFreeBytes() int64 { return int64(C.rl_allocator_free_bytes()) }

// ReleaseFreeMemory returns what AllocatorFreeBytes counts to the kernel; the memory
// allocated after it is faulted in again.
func ReleaseFreeMemory() { C.rl_release_free_memory() }

// CUDADevices is the number of CUDA devices libtorch can use (0 with a CPU libtorch).
func CUDADevices() int { return int(C.rl_cuda_devices()) }

// MatmulBench times reps n×n matmuls (float32, or bfloat16) and returns the seconds taken.
func MatmulBench(n, reps, threads int, bf16 bool) (float64, error) {
	var s C.double
	err := errOf(C.rl_matmul_bench(C.int32_t(n), C.int32_t(reps), C.int32_t(threads), b2i(bf16), &s))
	return float64(s), err
}
