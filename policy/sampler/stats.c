#include "stats.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "ggml.h"

// Lanes of independent float64 accumulators. Independent lanes let the compiler vectorize
// the loop without reassociating a single sum (which it may not do without -ffast-math),
// and float64 keeps digits on 150k-token vocabularies.
#define LANES 8

void rlif_token_stats(const float *z, int32_t n, int32_t tok, float inv_temp, rlif_stats *out) {
    // Pass 1: the max, for a numerically safe shift. Cheap: no transcendental calls.
    float m = z[0];
    for (int32_t i = 1; i < n; i++) m = z[i] > m ? z[i] : m;

    // Pass 2: S = sum e^(z-m), W = sum e^(z-m)(z-m), Z = sum z, and for T != 1,
    // ST = sum e^((z-m)/T).
    double S[LANES] = {0}, W[LANES] = {0}, Z[LANES] = {0}, ST[LANES] = {0};
    const int tempered = inv_temp != 1.0f;
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
            for (int k = 0; k < LANES; k++) ST[k] += expf((z[i + k] - m) * inv_temp);
        }
    }
    for (; i < n; i++) {
        const float d = z[i] - m;
        const float e = expf(d);
        S[0] += e;
        W[0] += (double)e * d;
        Z[0] += z[i];
        if (tempered) ST[0] += expf(d * inv_temp);
    }
    double s = 0, w = 0, zs = 0, st = 0;
    for (int k = 0; k < LANES; k++) { s += S[k]; w += W[k]; zs += Z[k]; st += ST[k]; }

    const double log_s = log(s);
    const double lse = (double)m + log_s;
    out->raw_logprob = (double)z[tok] - lse;
    out->entropy = log_s - w / s;
    out->self_certainty = lse - zs / (double)n - log((double)n);
    out->logprob = tempered ? ((double)z[tok] - (double)m) * (double)inv_temp - log(st) : out->raw_logprob;
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
