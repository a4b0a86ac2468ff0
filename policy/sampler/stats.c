#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ggml.h"

// Lanes of independent float64 accumulators. Independent lanes let the compiler vectorize
// the loop without reassociating a single sum (which it may not do without -ffast-math),
// and float64 keeps digits on 150k-token vocabularies.
#define LANES 8

// The max of z and the index of its first occurrence (the token greedy decoding takes,
// with llama.cpp's tie-breaking).
static float max_of(const float *z, int32_t n, int32_t *argmax) {
    float m = z[0];
    int32_t a = 0;
    for (int32_t i = 1; i < n; i++) {
        if (z[i] > m) {
            m = z[i];
            a = i;
        }
    }
    *argmax = a;
    return m;
}

typedef struct {
    double s;  // sum e^(z-m)
    double w;  // sum e^(z-m) (z-m)
    double zs; // sum z
    double st; // sum e^((z-m)/T), when tempered
    double sk; // sum e^((z-m)/T) over the kept tokens z >= keep_from, when masked
} sums;

// The one pass over the logits that every statistic (and the draw's normalizer) needs.
static void sum_pass(const float *z, int32_t n, float m, float inv_temp, float keep_from, sums *o) {
    double S[LANES] = {0}, W[LANES] = {0}, Z[LANES] = {0}, ST[LANES] = {0}, SK[LANES] = {0};
    const int tempered = inv_temp != 1.0f;
    const int masked = keep_from > -INFINITY;
    int32_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int k = 0; k < LANES; k++) {
            const float d = z[i + k] - m;
            const float e = expf(d);
            S[k] += e;
            W[k] += (double)e * d;
            Z[k] += z[i + k];
        }
        if (tempered) {
            // The tempered weight serves ST and, with min-p, SK: one exp per token, not two.
            for (int k = 0; k < LANES; k++) {
                const float et = expf((z[i + k] - m) * inv_temp);
                ST[k] += et;
                if (masked && z[i + k] >= keep_from) SK[k] += et;
            }
        } else if (masked) {
            for (int k = 0; k < LANES; k++) SK[k] += z[i + k] >= keep_from ? expf(z[i + k] - m) : 0.0f;
        }
    }
    for (; i < n; i++) {
        const float d = z[i] - m;
        const float e = expf(d);
        S[0] += e;
        W[0] += (double)e * d;
        Z[0] += z[i];
        const float et = tempered ? expf(d * inv_temp) : e;
        ST[0] += et;
        if (masked && z[i] >= keep_from) SK[0] += et;
    }
    *o = (sums){0};
    for (int k = 0; k < LANES; k++) {
        o->s += S[k];
        o->w += W[k];
        o->zs += Z[k];
        o->st += ST[k];
        o->sk += SK[k];
    }
    if (!tempered) o->st = o->s;
    if (!masked) o->sk = o->st;
}

// fill computes the statistics of token tok from the sums; masked says whether min-p cut
// the distribution the token was drawn from (s->sk then sums what it kept).
static void fill(const float *z, int32_t n, int32_t tok, float m, float inv_temp, const sums *s, int masked, rlif_stats *out) {
    const double log_s = log(s->s);
    const double lse = (double)m + log_s;
    out->raw_logprob = (double)z[tok] - lse;
    out->entropy = log_s - s->w / s->s;
    out->self_certainty = lse - s->zs / (double)n - log((double)n);
    const double tempered = ((double)z[tok] - (double)m) * (double)inv_temp;
    out->logprob = inv_temp != 1.0f ? tempered - log(s->st) : out->raw_logprob;
    out->sampled_logprob = masked ? tempered - log(s->sk) : out->logprob;
}

void rlif_token_stats(const float *z, int32_t n, int32_t tok, float inv_temp, rlif_stats *out) {
    int32_t argmax;
    const float m = max_of(z, n, &argmax);
    sums s;
    sum_pass(z, n, m, inv_temp, -INFINITY, &s);
    fill(z, n, tok, m, inv_temp, &s, 0, out);
}

int32_t rlif_sample_token(const float *z, int32_t n, float inv_temp, float min_p, int greedy, double u, rlif_stats *out) {
    int32_t argmax;
    const float m = max_of(z, n, &argmax);
    if (greedy) {
        sums s;
        sum_pass(z, n, m, inv_temp, -INFINITY, &s);
        fill(z, n, argmax, m, inv_temp, &s, 0, out);
        out->sampled_logprob = 0; // greedy draws the argmax with certainty
        return argmax;
    }
    // min-p keeps the tokens with p >= min_p * p_max, that is z >= max + log(min_p), on the
    // raw logits as llama.cpp does; the temperature then applies to what is kept.
    const float keep_from = min_p > 0.0f ? m + logf(min_p) : -INFINITY;
    sums s;
    sum_pass(z, n, m, inv_temp, keep_from, &s);
    // Inverse CDF in vocabulary order: O(V) with an early exit, no sort. The weights are
    // computed by the same expression as in sum_pass; if rounding leaves the running sum
    // short of the target, the last kept token takes it.
    const double target = u * s.sk;
    double cum = 0;
    int32_t tok = argmax;
    for (int32_t i = 0; i < n; i++) {
        if (z[i] < keep_from) continue;
        const float e = expf((z[i] - m) * inv_temp);
        if (e == 0.0f) continue;
        cum += e;
        tok = i;
        if (cum > target) break;
    }
    fill(z, n, tok, m, inv_temp, &s, keep_from > -INFINITY, out);
    return tok;
}

int32_t rlif_chain_sample(struct llama_sampler *chain, const float *z, int32_t n, llama_token_data *cands, float inv_temp, rlif_stats *out) {
    for (int32_t i = 0; i < n; i++) cands[i] = (llama_token_data){i, z[i], 0.0f};
    llama_token_data_array cur = {cands, (size_t)n, -1, false};
    llama_sampler_apply(chain, &cur);
    // rlif's chains end in a draw, which always selects; should one not, the first kept
    // candidate (the most likely, for a sorted chain) is taken rather than aborting.
    if (cur.selected < 0 || cur.selected >= (int64_t)cur.size) cur.selected = 0;
    const llama_token tok = cur.data[cur.selected].id;
    llama_sampler_accept(chain, tok);
    rlif_token_stats(z, n, tok, inv_temp, out);
    // The chain drew from softmax over what top-k/top-p/min-p kept, with the logits the
    // temperature stage left (z/T): renormalize over exactly those, in float64.
    float lm = -INFINITY;
    for (size_t i = 0; i < cur.size; i++) lm = fmaxf(lm, cur.data[i].logit);
    double sum = 0;
    for (size_t i = 0; i < cur.size; i++) sum += exp((double)cur.data[i].logit - (double)lm);
    out->sampled_logprob = ((double)cur.data[cur.selected].logit - (double)lm) - log(sum);
    return tok;
}
// Logging. llama.cpp's logger is process-wide; so is this routing. The first error line
// after rlif_clear_error is kept: llama.cpp logs the cause first and a generic
// "failed to load model" last.
static char last_error[1024];
static int log_verbose;

static void rlif_log(enum ggml_log_level level, const char *text, void *user_data) {
    (void)user_data;
    if (log_verbose) fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR && last_error[0] == 0) {
        size_t n = strlen(text);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' ')) n--;
        if (n == 0) return;
        if (n >= sizeof(last_error)) n = sizeof(last_error) - 1;
        memcpy(last_error, text, n);
        last_error[n] = 0;
    }
}

void llama_log_set(ggml_log_callback log_callback, void *user_data);

void rlif_log_install(int verbose) {
    log_verbose = verbose;
    llama_log_set(rlif_log, NULL);
}

const char *rlif_last_error(void) { return last_error; }
void rlif_clear_error(void) { last_error[0] = 0; }
