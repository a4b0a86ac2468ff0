// Per-token statistics of a next-token distribution, computed in one pass over the
// logits where llama.cpp left them (they are never copied out).
#ifndef RLIF_STATS_H
#define RLIF_STATS_H
#include <stdint.h>
#include "llama.h"

typedef struct {
    double logprob;        // log softmax(z * inv_temp)[tok]
    double sampled_logprob; // log p(tok) under the distribution it was drawn from (see below)
    double raw_logprob;    // log softmax(z)[tok]
    double entropy;        // entropy of softmax(z), nats
    double self_certainty; // logsumexp(z) - mean(z) - log(n)  ==  KL(U || softmax(z))
} rlif_stats;

// rlif_token_stats fills out for token tok under logits z[0..n). inv_temp = 1/T. No
// truncation is known here: sampled_logprob = logprob.
void rlif_token_stats(const float *z, int32_t n, int32_t tok, float inv_temp, rlif_stats *out);

// rlif_sample_token draws the next token from softmax(z * inv_temp), restricted to the
// tokens with p >= min_p * p_max when min_p > 0, by inverse CDF at u in [0, 1) (greedy: the
// first argmax, u unused), and fills out with its statistics as rlif_token_stats does;
// sampled_logprob is the log-probability in that restricted, renormalized distribution
// (0 when greedy: the token was certain). It makes the pass over the logits the statistics
// need, storing the draw weights in weights[0..n) (caller-owned scratch), and one partial
// pass over those: no sort, no exp beyond the statistics' own, no allocation.
int32_t rlif_sample_token(const float *z, int32_t n, float inv_temp, float min_p, int greedy, double u, float *weights, rlif_stats *out);

// rlif_chain_sample draws the next token with llama.cpp's sampler chain (as
// llama_sampler_sample does, with cands, room for n candidates, as the scratch) and fills
// out as rlif_token_stats does, with sampled_logprob taken from the candidates and logits
// the chain's draw kept: the log-probability in the distribution it drew from.
int32_t rlif_chain_sample(struct llama_sampler *chain, const float *z, int32_t n, llama_token_data *cands, float inv_temp, rlif_stats *out);

// rlif_log_install routes llama.cpp/ggml logging: everything to stderr when verbose,
// otherwise nothing; the first error line is kept for rlif_last_error.
void rlif_log_install(int verbose);
const char *rlif_last_error(void);
void rlif_clear_error(void);
#endif
