package sampler

/*
#include "llama.h"
#include "stats.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/rlif/rlif/policy/rollout"
)

// drawToken runs the sampler's own draw (rlif_sample_token) on logits z, so tests can check
// it against the distribution it must draw from. temp <= 0 is greedy.
func drawToken(z []float32, temp, minP float64, u float64) (int32, rollout.TokenStats) {
	greedy := C.int(0)
	if temp <= 0 {
		greedy = 1
	}
	var st C.rlif_stats
	weights := make([]float32, len(z))
	tok := C.rlif_sample_token((*C.float)(unsafe.Pointer(&z[0])), C.int32_t(len(z)), invTempOf(temp), C.float(minP), greedy, C.double(u), (*C.float)(unsafe.Pointer(&weights[0])), &st)
	return int32(tok), statsOf(&st)
}

// chainDraw draws a token from logits z with llama.cpp's sampler chain for p (as sampling
// with top-k or top-p does), so tests can check the statistics of its draw.
func chainDraw(z []float32, p Params, seed uint32) (int32, rollout.TokenStats) {
	chain := newChain(p, seed)
	defer C.llama_sampler_free(chain)
	cands := make([]C.llama_token_data, len(z))
	var st C.rlif_stats
	tok := C.rlif_chain_sample(chain, (*C.float)(unsafe.Pointer(&z[0])), C.int32_t(len(z)), &cands[0], invTempOf(p.Temperature), &st)
	return int32(tok), statsOf(&st)
}

// tokenStats runs rlif_token_stats on logits z for token tok.
func tokenStats(z []float32, tok int32, temp float64) rollout.TokenStats {
	var st C.rlif_stats
	C.rlif_token_stats((*C.float)(unsafe.Pointer(&z[0])), C.int32_t(len(z)), C.int32_t(tok), invTempOf(temp), &st)
	return statsOf(&st)
}

// logitsCopy decodes tokens with teacher forcing and returns a copy of the logits at
// positions promptLen-1 .. len-2. Sampling never copies logits; this exists so tests can
// check the statistics against an independent computation. With incremental, the
// completion is decoded one token per call after the prompt, as sampling one sequence
// does, so the logits come from the same kernels (on quantized models ggml's one-row and
// many-row matmuls round differently); otherwise in batches, as Score does.
func (m *Model) logitsCopy(tokens []int32, promptLen int, incremental bool) ([][]float32, error) {
	C.llama_kv_self_clear(m.ctx)
	defer C.llama_kv_self_clear(m.ctx)
	var out [][]float32
	for start, end := 0, 0; start < len(tokens)-1; start = end {
		end = min(start+m.batchCap(), len(tokens)-1)
		if incremental {
			if start < promptLen {
				end = min(promptLen, end)
			} else {
				end = start + 1
			}
		}
		m.batch.n_tokens = 0
		for i := start; i < end; i++ {
			m.batchAdd(tokens[i], i, 0, i >= promptLen-1)
		}
		if rc := C.llama_decode(m.ctx, m.batch); rc != 0 {
			return nil, fmt.Errorf("llama_decode failed (code %d)", int(rc))
		}
		for i := max(start, promptLen-1); i < end; i++ {
			z := unsafe.Slice((*float32)(unsafe.Pointer(C.llama_get_logits_ith(m.ctx, C.int32_t(i-start)))), m.info.VocabSize)
			out = append(out, append([]float32(nil), z...))
		}
	}
	return out, nil
}

// drawOnce picks a token for s from row idx of the last batch, as sampling does, and
// discards it (benchmarks).
func (m *Model) drawOnce(s *sequence, p Params, idx int) int32 {
	var st C.rlif_stats
	return m.next(s, p, idx, invTempOf(p.Temperature), &st)
}
