// C ABI of rlif's libtorch shim. Every function that can fail returns NULL on success
// or a malloc'd error message that the caller frees; no C++ exception crosses it.
#ifndef RLIF_SHIM_H
#define RLIF_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_model rl_model;

// The architectures the shim computes: C++'s one list of them (Go's is gguf.Architectures,
// which the learner maps onto these codes). RL_ARCH_COUNT follows the last, so that a
// check of a code needs no change when one is added.
enum { RL_ARCH_LLAMA = 0, RL_ARCH_QWEN2 = 1, RL_ARCH_QWEN3 = 2, RL_ARCH_OLMO2 = 3, RL_ARCH_COUNT };

typedef struct {
	int32_t arch;
	int32_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
	float rms_eps, rope_base, rope_freq_scale;
	int32_t rope_neox;  // 1: rotate halves (NeoX); 0: rotate adjacent pairs
	int32_t threads;    // intra-op threads (libtorch reports 1 by default on Debian)
	int32_t cuda;       // -1: CPU, otherwise the CUDA device index
	int32_t bf16;       // store weights in bfloat16 (GPU only)
	int32_t compute_bf16;  // matmuls in bfloat16 (autocast) over float32 weights; the rest float32
	int64_t head_chunk_bytes;  // output-layer logits held at once (0: 256 MiB); beyond, chunked
} rl_config;

// A right-padded batch: tokens[b*T + t] for t < lengths[b]. With prompt_group set, rows
// that share a prompt run its positions once (a GRPO group's completions all continue
// the same prompt): prompt_group[b] numbers row b's group (0, 1, ... in row order, a
// group's rows consecutive), prompt_length[b] is the length of the prompt its group's
// rows share (the same tokens; checked). NULL: every row is computed whole.
typedef struct {
	const int32_t* tokens;
	const int32_t* lengths;
	const int32_t* prompt_group;
	const int32_t* prompt_length;
	int32_t B, T;
} rl_batch;

// The policy-optimization objective of the loss.
enum {
	RL_OBJ_CLIP = 0,   // PPO's clipped surrogate −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A) (GRPO)
	RL_OBJ_CISPO = 1,  // −sg(min(ρ, ε_high))·A·log π (MiniMax-M1)
	RL_OBJ_SAPO = 2,   // −(4/τ)·σ(τ(ρ−1))·A, τ by the sign of A (SAPO)
};

// How the sampler/learner mismatch weight π_old/π_sampler is computed and bounded.
enum {
	RL_IS_TOKEN_TRUNCATE = 0,     // per token, clamped to [is_min, is_cap]
	RL_IS_TOKEN_MASK = 1,         // per token, 0 outside [is_min, is_cap] (IcePop's band)
	RL_IS_SEQUENCE_TRUNCATE = 2,  // per sequence (the product over its tokens), clamped
	RL_IS_SEQUENCE_MASK = 3,      // per sequence, the sequence dropped outside the band
};

// The options of the policy-optimization menu, one struct per loss call; all zero is the
// plain GRPO loss with token-level truncated importance sampling.
typedef struct {
	int32_t objective;        // RL_OBJ_*
	int32_t sequence_ratio;   // 1: GSPO's sequence ratio exp(mean over the row's tokens of log ρ)
	float delta;              // > 0: the ratio capped at delta on the A < 0 side (two-sided clip)
	float sapo_tau_pos;       // SAPO's temperatures for A > 0 and A <= 0
	float sapo_tau_neg;
	int32_t is_mode;          // RL_IS_*, with sampler_logprob
	float is_min;             // lower bound of the IS weight (0: none)
	int32_t off_policy_mask;  // 1: drop rows with A < 0 whose mean log(π_sampler/π) > off_policy_threshold
	float off_policy_threshold;
	float entropy_q;          // > 0: train only tokens whose entropy is >= this quantile of the micro-batch's
	float entropy_weight;     // != 0: the loss gains −entropy_weight × Σ (trained, unmasked) tokens' entropies
} rl_policy_opts;

typedef struct {
	const float* mask;             // B*T: 1 where token t is trained (t >= 1)
	const float* advantages;       // B
	const double* old_logprob;     // B*T, or NULL: the current log-probs, detached
	const double* ref_logprob;     // B*T, or NULL when beta == 0
	const double* sampler_logprob; // B*T, or NULL: no truncated importance sampling
	float temperature, eps_low, eps_high, beta, is_cap;
	const float* row_weight;       // B: the loss is sum over rows of row_weight[b] * (sum of b's token losses)
	int32_t recompute;             // 1: recompute block activations in the backward pass
	rl_policy_opts opt;
} rl_loss_args;

typedef struct {
	double loss;        // this micro-batch's contribution
	double tokens;      // trained tokens
	double kl_sum;      // sums over trained tokens
	double ratio_sum;
	double clip_low;    // tokens clipped below 1-eps_low with a negative advantage
	double clip_high;   // tokens clipped above 1+eps_high with a positive advantage (CISPO:
	                    // tokens whose weight was capped at eps_high; SAPO: none)
	double is_sum;
	double kl_clamped;  // tokens whose KL log-ratio was clamped to +-20
	double is_masked;          // tokens whose IS weight a mask mode set to 0
	double off_policy_masked;  // tokens of rows the off-policy mask dropped
	double entropy_masked;     // tokens below the entropy quantile
	double entropy_sum;        // of the tokens' entropies, when the entropy mask or bonus computed them
} rl_loss_stats;

typedef struct {
	double lr, beta1, beta2, eps, weight_decay, max_grad_norm;
} rl_adamw;

char* rl_new(const rl_config* cfg, rl_model** out);
void rl_free(rl_model* m);
// shape is PyTorch order (reverse of ggml's).
char* rl_set_tensor(rl_model* m, const char* name, const float* data, const int64_t* shape, int32_t ndim);
char* rl_finalize(rl_model* m);
// Copies a tensor out (name may be a LoRA "<w>.lora_a/.lora_b"). merged: add the LoRA
// delta to a base weight. grad: copy the gradient instead (zeros when none).
char* rl_get_tensor(rl_model* m, const char* name, float* out, int64_t n, int32_t merged, int32_t grad);
char* rl_lora_enable(rl_model* m, int32_t rank, float alpha, const char* targets, uint64_t seed);
// Per-position statistics in float64 from the logits on; any output may be NULL. zmax is
// max_v |z_v|, the scale of the logits (which bounds their bf16 rounding error).
char* rl_logprobs(rl_model* m, const rl_batch* b, float temperature, int32_t no_lora,
                  double* logprob, double* raw, double* entropy, double* sc, double* zmax);
// Log-probs at temperature of the tokens where mask (B*T) is 1, into logprob (B*T; zero
// elsewhere), float32 on the logits, chunked over positions: the reference and π_old pass.
char* rl_token_logprobs(rl_model* m, const rl_batch* b, const float* mask, float temperature, int32_t no_lora,
                        double* logprob);
char* rl_loss_backward(rl_model* m, const rl_batch* b, const rl_loss_args* a, rl_loss_stats* st);
char* rl_step(rl_model* m, const rl_adamw* o, double* grad_norm);
char* rl_zero_grad(rl_model* m);
int64_t rl_trainable(rl_model* m);
// Optimizer state, for checkpoints: the trainable tensors in a fixed order, each with its
// name, and (kind) 0: the values, 1: Adam's first moment, 2: its second moment.
int64_t rl_trainable_count(rl_model* m);
char* rl_trainable_info(rl_model* m, int64_t i, char* name, int32_t name_len, int64_t* numel);
char* rl_state_io(rl_model* m, int64_t i, int32_t kind, float* buf, int64_t n, int32_t write);
int64_t rl_get_steps(rl_model* m);
void rl_set_steps(rl_model* m, int64_t steps);
// A plain n×n×n matmul (float32, or bfloat16 when bf16) repeated reps times, for the
// benchmark's reference GFLOP/s.
char* rl_matmul_bench(int32_t n, int32_t reps, int32_t threads, int32_t bf16, double* seconds);

// A data-parallel process group over libtorch's c10d: a TCPStore rendezvous (rank 0
// serves it at addr:port) and ProcessGroupGloo (CPU) or ProcessGroupNCCL (CUDA, compiled
// only with RLIF_NCCL). Every collective waits at most timeout_ms; a peer that is gone or
// silent comes back as an error naming this rank and, where it can tell, the peer.
typedef struct rl_group rl_group;

enum { RL_BACKEND_GLOO = 0, RL_BACKEND_NCCL = 1 };
enum { RL_REDUCE_SUM = 0, RL_REDUCE_MAX = 1, RL_REDUCE_MIN = 2 };

typedef struct {
	const char* addr;     // MASTER_ADDR
	int32_t port;         // MASTER_PORT
	int32_t rank, world;  // RANK, WORLD_SIZE
	int64_t timeout_ms;   // rendezvous and every collective
	int32_t backend;      // RL_BACKEND_*
	int32_t cuda;         // NCCL: the CUDA device index of this rank
	int32_t threads;      // Gloo worker threads (0: 1)
	int32_t agent_store;  // 1: a launcher (torchrun's agent) serves the store; rank 0 is a client too
	const char* prefix;   // of every key this job puts in the store (a launcher's store outlives restarts)
} rl_group_config;

char* rl_group_new(const rl_group_config* c, rl_group** out);
void rl_group_free(rl_group* g);
// Sums the gradients of m's trainable tensors over the ranks, in flat buckets of at most
// bucket_bytes (0: 25 MiB); a tensor without a gradient counts as zeros. bytes is the
// payload one rank contributes (the size of the buckets).
char* rl_group_allreduce_grads(rl_group* g, rl_model* m, int64_t bucket_bytes, double* bytes);
// Reduces v[0:n] in place over the ranks (RL_REDUCE_*), in float64.
char* rl_group_allreduce_f64(rl_group* g, double* v, int32_t n, int32_t op);
// Copies rank root's trainable tensors (values) into every rank's; with optimizer, Adam's
// moments and step count too (a resumed job's state, loaded by rank root alone).
char* rl_group_broadcast_params(rl_group* g, rl_model* m, int32_t root, int32_t optimizer);
// Hashes the bits of m's trainable tensors and Adam's step count on every rank and
// compares them with rank 0's: an error names every rank whose weights differ. hash: this
// rank's.
char* rl_group_check_params(rl_group* g, rl_model* m, uint64_t* hash);
// Waits until every rank has arrived.
char* rl_group_barrier(rl_group* g);
// The rendezvous store, for the few bytes a step reports to rank 0: put sets key to
// value; take waits (up to the timeout) for key, copies its value into a malloc'd
// buffer (*out, *n; the caller frees) and deletes the key.
char* rl_group_put(rl_group* g, const char* key, const uint8_t* value, int64_t n);
char* rl_group_take(rl_group* g, const char* key, uint8_t** out, int64_t* n);

// Bytes the process's memory allocator holds free and mapped (reusable without the kernel).
int64_t rl_allocator_free_bytes(void);
// rl_release_free_memory returns the allocator's free memory to the kernel.
void rl_release_free_memory(void);

// The number of CUDA devices libtorch can use: 0 with a libtorch built without CUDA, or
// on a machine without a GPU (or its driver).
int32_t rl_cuda_devices(void);

// The output layer's fused log-softmax on logits z [N, V] (rounded to bfloat16 first when
// bf16 is set): lp[i] = log p(tgt[i]) at temperature, dz = the gradient of Σ g[i] lp[i]
// with respect to z. The loss uses it inside the shim; it is exported for its tests.
char* rl_head_logprobs(const float* z, int64_t N, int64_t V, const int64_t* tgt, float temperature, int32_t bf16,
                       const float* g, float* lp, float* dz);

#ifdef __cplusplus
}
#endif
#endif
