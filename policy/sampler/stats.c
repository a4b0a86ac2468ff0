#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ggml.h"

// Lanes of independent float64 accumulators. Independent lanes let the compiler vectorize
// the loop without reassociating a single sum (which it may not do without -ffast-math),
// and float64 keeps digits on 150k-token vocabularies.
#define LANES 16

// On glibc x86-64, expf has vector variants in libmvec (_ZGV?N16v_expf and narrower): this
// declaration lets the compiler call them from the lane loops below (with -fopenmp-simd),
// 16 exps per call instead of one. They are accurate to a few ulp, like expf itself.
#if defined(__GLIBC__) && defined(__x86_64__)
#pragma omp declare simd notinbranch
extern float expf(float);
#define RLIF_SIMD _Pragma("omp simd")
#else
#define RLIF_SIMD
#endif

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
// With weights != NULL it also stores each token's draw weight, e^((z-m)/T) for the kept
// tokens and 0 for the others, so that the draw reads them instead of computing them again.
static void sum_pass(const float *z, int32_t n, float m, float inv_temp, float keep_from, float *weights, sums *o) {
    double S[LANES] = {0}, W[LANES] = {0}, Z[LANES] = {0}, ST[LANES] = {0}, SK[LANES] = {0};
    const int tempered = inv_temp != 1.0f;
    int32_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        float e[LANES], et[LANES];
        RLIF_SIMD
        for (int k = 0; k < LANES; k++) {
            const float d = z[i + k] - m;
            e[k] = expf(d);
            S[k] += e[k];
            W[k] += (double)e[k] * d;
            Z[k] += z[i + k];
        }
        if (tempered) {
            RLIF_SIMD
            for (int k = 0; k < LANES; k++) {
                et[k] = expf((z[i + k] - m) * inv_temp);
                ST[k] += et[k];
            }
        } else {
            for (int k = 0; k < LANES; k++) et[k] = e[k];
        }
        // The tempered weight serves ST and, with min-p, SK: one exp per token, not two.
        RLIF_SIMD
        for (int k = 0; k < LANES; k++) {
            const float kept = z[i + k] >= keep_from ? et[k] : 0.0f;
            SK[k] += kept;
            if (weights) weights[i + k] = kept;
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
        const float kept = z[i] >= keep_from ? et : 0.0f;
        SK[0] += kept;
        if (weights) weights[i] = kept;
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
    sum_pass(z, n, m, inv_temp, -INFINITY, NULL, &s);
    fill(z, n, tok, m, inv_temp, &s, 0, out);
}

int32_t rlif_sample_token(const float *z, int32_t n, float inv_temp, float min_p, int greedy, double u, float *weights, rlif_stats *out) {
    int32_t argmax;
    const float m = max_of(z, n, &argmax);
    if (greedy) {
        sums s;
        sum_pass(z, n, m, inv_temp, -INFINITY, NULL, &s);
        fill(z, n, argmax, m, inv_temp, &s, 0, out);
        out->sampled_logprob = 0; // greedy draws the argmax with certainty
        return argmax;
    }
    // min-p keeps the tokens with p >= min_p * p_max, that is z >= max + log(min_p), on the
    // raw logits as llama.cpp does; the temperature then applies to what is kept.
    const float keep_from = min_p > 0.0f ? m + logf(min_p) : -INFINITY;
    sums s;
    sum_pass(z, n, m, inv_temp, keep_from, weights, &s);
    // Inverse CDF in vocabulary order over the weights the pass stored: O(V) additions with
    // an early exit, no sort, no exp. If rounding leaves the running sum short of the
    // target, the last token of positive weight takes it.
    const double target = u * s.sk;
    double cum = 0;
    int32_t tok = argmax;
    for (int32_t i = 0; i < n; i++) {
        if (weights[i] == 0.0f) continue;
        cum += weights[i];
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
