package sampler

/*
#include <stdlib.h>
#include "llama.h"
#include "stats.h"
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampling"
)

// Request is one prompt to sample from.
type Request struct {
	// Prompt is the user message (or the raw text with Raw).
	Prompt string
	// System is the system message put through the chat template (ignored with Raw).
	System string
	// Raw takes BOS + Prompt as the model input instead of applying the chat template.
	Raw bool
	// Tokens, when set, are the model input as token ids; Prompt is then only recorded.
	Tokens []int32
}

// Params control sampling (sampling.Params: one definition and one validation for the
// sampler and the configurations that feed it).
type Params = sampling.Params

// SequenceSeed is the seed of member g of the group sampled from prompt i: each sequence
// has its own random stream, so a group sampled together equals its members sampled alone.
func SequenceSeed(seed uint64, prompt, member int) uint32 {
	x := seed ^ (uint64(prompt)<<32 | uint64(member)) + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return uint32(x ^ (x >> 31))
}

// PromptTokens returns the model input for a request: the chat template applied (or BOS +
// text with Raw), tokenized.
func (m *Model) PromptTokens(r Request) ([]int32, error) {
	if r.Tokens != nil {
		return r.Tokens, nil
	}
	if r.Raw {
		return m.Tokenize(r.Prompt, true)
	}
	text, err := m.FormatChat(r.System, r.Prompt)
	if err != nil {
		return nil, err
	}
	return m.Tokenize(text, m.info.AddBOS)
}

// seqLimit is the most positions one sequence may hold: the model's training context,
// and the sampler's context when it is smaller (a vocabulary-only model has none).
func (m *Model) seqLimit() int {
	limit := m.opt.ContextSize
	if m.vocabOnly && m.info.ContextLength > 0 {
		return m.info.ContextLength
	}
	if c := m.info.ContextLength; c > 0 && c < limit {
		limit = c
	}
	return limit
}

// CheckPromptLen returns an error when a prompt of n tokens leaves no room for a
// completion in one sequence (see seqLimit). Sample applies it to every prompt; callers
// apply it up front, on a vocabulary-only model, to name the data row.
func (m *Model) CheckPromptLen(n int) error {
	if n == 0 {
		return errors.New("the prompt is empty")
	}
	if limit := m.seqLimit(); n >= limit {
		if m.vocabOnly {
			return fmt.Errorf("the prompt has %d tokens; a sequence holds at most %d (the model's context)", n, limit)
		}
		return fmt.Errorf("the prompt has %d tokens; a sequence holds at most %d (model context %d, sampler context %d)", n, limit, m.info.ContextLength, m.opt.ContextSize)
	}
	return nil
}

// sequence is one completion being generated.
type sequence struct {
	id C.llama_seq_id
	// chain is llama.cpp's sampler chain, used only with top-k or top-p (see usesChain);
	// otherwise the token is drawn by rlif_sample_token with the sequence's own stream rng.
	chain  *C.struct_llama_sampler
	rng    splitmix64
	pos    int
	maxNew int
	out    *rollout.Completion
	text   []byte
	ends   []int // where each token's bytes end in text (before a stop string cuts it)
	done   bool
}

// free releases the sequence's llama.cpp sampler chain, if it has one.
func (s *sequence) free() {
	if s.chain != nil {
		C.llama_sampler_free(s.chain)
		s.chain = nil
	}
}

// splitmix64 is a sequence's random stream: tiny, seedable and the same on every platform,
// so the same seed gives the same completions everywhere.
type splitmix64 uint64

// float64 returns a uniform number in [0, 1) with 53 random bits.
func (r *splitmix64) float64() float64 {
	*r += 0x9e3779b97f4a7c15
	x := uint64(*r)
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) * (1.0 / (1 << 53))
}

// usesChain reports whether tokens are drawn by llama.cpp's sampler chain. Its draw sorts
// all V candidates for every token (std::sort in llama_sampler_softmax_impl), which at
// V = 49k costs more than a decode step of a batched group on a CPU. Temperature, min-p and
// greedy need no sort: rlif_sample_token draws from the softmax that the statistics pass
// computes anyway. Top-k and top-p need the order, so they keep llama.cpp's chain.
func (m *Model) usesChain(p Params) bool {
	return m.noStats || (p.Temperature > 0 && (p.TopK > 0 || (p.TopP > 0 && p.TopP < 1)))
}

// next picks sequence s's next token from logits z (row idx of the last batch) and fills st
// with its statistics (unless the benchmark's noStats is set).
func (m *Model) next(s *sequence, p Params, idx int, invTemp C.float, st *C.rlif_stats) int32 {
	if s.chain == nil {
		z := C.llama_get_logits_ith(m.ctx, C.int32_t(idx))
		greedy := C.int(0)
		if p.Temperature <= 0 {
			greedy = 1
		}
		if len(m.weights) < m.info.VocabSize {
			m.weights = make([]float32, m.info.VocabSize)
		}
		w := (*C.float)(unsafe.Pointer(&m.weights[0]))
		return int32(C.rlif_sample_token(z, C.int32_t(m.info.VocabSize), invTemp, C.float(p.MinP), greedy, C.double(s.rng.float64()), w, st))
	}
	if m.noStats {
		return int32(C.llama_sampler_sample(s.chain, m.ctx, C.int32_t(idx)))
	}
	// The chain's draw runs over rlif's candidate buffer so that the candidates it kept,
	// which the sampled log-prob needs, can be read back.
	if len(m.cands) < m.info.VocabSize {
		m.cands = make([]C.llama_token_data, m.info.VocabSize)
	}
	z := C.llama_get_logits_ith(m.ctx, C.int32_t(idx))
	return int32(C.rlif_chain_sample(s.chain, z, C.int32_t(m.info.VocabSize), &m.cands[0], invTemp, st))
}

// Sample draws n completions for each request. Each prompt is decoded once and its KV
// cache shared by its n sequences; the sequences of as many prompts as the context holds
// are decoded together, one batch per step. The result is indexed [request][member].
func (m *Model) Sample(ctx context.Context, reqs []Request, n int, p Params) ([][]rollout.Completion, error) {
	return m.sample(ctx, reqs, n, p, func(i, g int) uint32 { return SequenceSeed(p.Seed, i, g) })
}

// SampleAt is Sample for requests that are part of a larger step: reqs[i] is the step's
// prompt first+i and takes its seeds, so that a step split over data-parallel ranks
// samples what the whole step sampled in one process would.
func (m *Model) SampleAt(ctx context.Context, reqs []Request, first, n int, p Params) ([][]rollout.Completion, error) {
	return m.sample(ctx, reqs, n, p, func(i, g int) uint32 { return SequenceSeed(p.Seed, first+i, g) })
}

func (m *Model) sample(ctx context.Context, reqs []Request, n int, p Params, seedOf func(i, g int) uint32) ([][]rollout.Completion, error) {
	if m.vocabOnly {
		return nil, errors.New("sample: the model was loaded without its weights (LoadVocab)")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("completions per prompt must be >= 1, got %d", n)
	}
	if n > m.opt.MaxSequences {
		return nil, fmt.Errorf("%d completions per prompt exceed the %d sequences the sampler decodes together; raise MaxSequences", n, m.opt.MaxSequences)
	}
	limit := m.seqLimit()
	prompts := make([][]int32, len(reqs))
	cost := make([]int, len(reqs))
	maxNew := make([]int, len(reqs))
	for i, r := range reqs {
		toks, err := m.PromptTokens(r)
		if err != nil {
			return nil, err
		}
		if err := m.CheckPromptLen(len(toks)); err != nil {
			return nil, fmt.Errorf("prompt %d: %w", i, err)
		}
		prompts[i] = toks
		maxNew[i] = min(p.MaxTokens, limit-len(toks))
		cost[i] = len(toks) + n*maxNew[i]
		if cost[i] > m.opt.ContextSize {
			return nil, fmt.Errorf("prompt %d needs %d KV cells (%d prompt + %d x %d new tokens) but the sampler context holds %d; raise the context size or lower max tokens", i, cost[i], len(toks), n, maxNew[i], m.opt.ContextSize)
		}
	}

	out := make([][]rollout.Completion, len(reqs))
	prog := &progress{total: len(reqs) * n, report: p.Progress}
	for start := 0; start < len(reqs); {
		// A wave: as many groups as the KV cache and the sequence slots hold. The cache is
		// filled in order and cleared between waves, so it never fragments.
		end, cells := start, 0
		for end < len(reqs) && (end-start+1)*n <= m.opt.MaxSequences && cells+cost[end] <= m.opt.ContextSize {
			cells += cost[end]
			end++
		}
		if err := m.sampleWave(ctx, reqs[start:end], prompts[start:end], maxNew[start:end], start, n, p, seedOf, out[start:end], prog); err != nil {
			return nil, err
		}
		start = end
	}
	return out, nil
}

func (m *Model) sampleWave(ctx context.Context, reqs []Request, prompts [][]int32, maxNew []int, first, n int, p Params, seedOf func(i, g int) uint32, out [][]rollout.Completion, prog *progress) error {
	C.llama_kv_self_clear(m.ctx)
	var seqs []*sequence
	defer func() {
		for _, s := range seqs {
			s.free()
		}
	}()
	chain := m.usesChain(p)
	invTemp := invTempOf(p.Temperature)
	var st C.rlif_stats
	for i, toks := range prompts {
		base := C.llama_seq_id(i * n)
		idx, err := m.decodePrompt(toks, base)
		if err != nil {
			return err
		}
		out[i] = make([]rollout.Completion, n)
		for g := 0; g < n; g++ {
			if g > 0 {
				C.llama_kv_self_seq_cp(m.ctx, base, base+C.llama_seq_id(g), -1, -1)
			}
			c := &out[i][g]
			c.Prompt = reqs[i].Prompt
			c.PromptTokens = toks
			c.Tokens = make([]int32, 0, min(maxNew[i], 512))
			seed := seedOf(first+i, g)
			s := &sequence{id: base + C.llama_seq_id(g), rng: splitmix64(seed), pos: len(toks), maxNew: maxNew[i], out: c}
			if chain {
				s.chain = newChain(p, seed)
			}
			seqs = append(seqs, s)
			tok := m.next(s, p, idx, invTemp, &st)
			if err := m.checkFinite(&st); err != nil {
				return err
			}
			m.accept(s, tok, &st, p.Stop)
			prog.add(1, s.done)
		}
	}
	prog.emit()

	active := make([]*sequence, 0, len(seqs))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		active = active[:0]
		for _, s := range seqs {
			if !s.done {
				active = append(active, s)
			}
		}
		if len(active) == 0 {
			break
		}
		m.batch.n_tokens = 0
		for _, s := range active {
			m.batchAdd(s.out.Tokens[len(s.out.Tokens)-1], s.pos, s.id, true)
			s.pos++
		}
		if rc := C.llama_decode(m.ctx, m.batch); rc != 0 {
			return fmt.Errorf("llama_decode of %d sequences failed (code %d)", len(active), int(rc))
		}
		for j, s := range active {
			tok := m.next(s, p, j, invTemp, &st)
			if err := m.checkFinite(&st); err != nil {
				return err
			}
			m.accept(s, tok, &st, p.Stop)
			prog.add(1, s.done)
		}
		prog.emit()
	}
	for i := range out {
		for g := range out[i] {
			out[i][g].Finalize()
		}
	}
	return nil
}

// ErrNotFinite is the error of a model whose next-token logits hold NaN or infinities:
// its weights are damaged (a broken file, or an update that diverged), and nothing it
// samples or scores means anything.
var ErrNotFinite = errors.New("the model's outputs are not finite (NaN or infinite logits): its weights are damaged; use an intact copy of the model")

// checkFinite returns ErrNotFinite, naming the model, when the statistics of a token are
// not finite: self-certainty (logsumexp(z) − mean(z) − log V) is NaN or infinite as soon
// as one logit is, so it checks the whole distribution at no cost.
func (m *Model) checkFinite(st *C.rlif_stats) error {
	if m.noStats {
		return nil
	}
	sc, h := float64(st.self_certainty), float64(st.entropy)
	if !num.Finite(sc) || !num.Finite(h) {
		return fmt.Errorf("model %s: %w", m.info.Path, ErrNotFinite)
	}
	return nil
}

// accept records a sampled token and decides whether the sequence is finished.
func (m *Model) accept(s *sequence, tok int32, st *C.rlif_stats, stops []string) {
	s.out.Append(tok, statsOf(st))
	finish := ""
	if m.IsEOG(tok) {
		finish = rollout.FinishEOS
	} else {
		prev := len(s.text)
		s.text = m.appendPiece(s.text, tok)
		for _, stop := range stops {
			from := max(0, prev-len(stop)+1)
			if k := bytes.Index(s.text[from:], []byte(stop)); k >= 0 {
				s.text = s.text[:from+k]
				finish = rollout.FinishStop
				break
			}
		}
		if finish == "" && len(s.out.Tokens) >= s.maxNew {
			finish = rollout.FinishLength
		}
	}
	s.ends = append(s.ends, len(s.text))
	if finish != "" {
		s.done = true
		s.out.FinishReason = finish
		// Stop strings were matched on the bytes; the text handed on must be valid UTF-8
		// (protobuf strings, JSON), whatever bytes the tokens spelled.
		s.out.Text, s.out.TokenEnds = rollout.TextOf(s.text, s.ends)
	}
}

// invTempOf is 1/T for the statistics: T <= 0 (greedy) reports them at T = 1.
func invTempOf(temperature float64) C.float {
	if temperature <= 0 {
		return 1
	}
	return C.float(1 / temperature)
}

func statsOf(st *C.rlif_stats) rollout.TokenStats {
	return rollout.TokenStats{
		LogProb:        float64(st.logprob),
		SampledLogProb: float64(st.sampled_logprob),
		RawLogProb:     float64(st.raw_logprob),
		Entropy:        float64(st.entropy),
		SelfCertainty:  float64(st.self_certainty),
	}
}

// newChain builds llama.cpp's sampler chain for one sequence: top-k, top-p, min-p,
// temperature, then a draw with the sequence's own seed (or greedy at T = 0). Sampling
// uses it only with top-k or top-p (see usesChain), and the benchmarks' no-statistics loop.
func newChain(p Params, seed uint32) *C.struct_llama_sampler {
	cp := C.llama_sampler_chain_default_params()
	cp.no_perf = true
	chain := C.llama_sampler_chain_init(cp)
	if p.Temperature <= 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
		return chain
	}
	if p.TopK > 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
	}
	if p.TopP > 0 && p.TopP < 1 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(C.float(p.TopP), 1))
	}
	if p.MinP > 0 {
		C.llama_sampler_chain_add(chain, C.llama_sampler_init_min_p(C.float(p.MinP), 1))
	}
	C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(C.float(p.Temperature)))
	C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(C.uint32_t(seed)))
	return chain
}

// batchAdd appends one token to the batch.
func (m *Model) batchAdd(tok int32, pos int, seq C.llama_seq_id, logits bool) {
	b := &m.batch
	i := int(b.n_tokens)
	unsafe.Slice(b.token, i+1)[i] = C.llama_token(tok)
	unsafe.Slice(b.pos, i+1)[i] = C.llama_pos(pos)
	unsafe.Slice(b.n_seq_id, i+1)[i] = 1
	unsafe.Slice(unsafe.Slice(b.seq_id, i+1)[i], 1)[0] = seq
	var l C.int8_t
	if logits {
		l = 1
	}
	unsafe.Slice(b.logits, i+1)[i] = l
	b.n_tokens++
}

func (m *Model) batchCap() int { return max(m.opt.BatchSize, m.opt.MaxSequences) }

// decodePrompt decodes toks into sequence seq (in chunks of the batch size), with logits
// only for the last token, and returns that token's index in the last batch.
func (m *Model) decodePrompt(toks []int32, seq C.llama_seq_id) (int, error) {
	step := m.batchCap()
	for start := 0; start < len(toks); start += step {
		end := min(start+step, len(toks))
		m.batch.n_tokens = 0
		for i := start; i < end; i++ {
			m.batchAdd(toks[i], i, seq, i == len(toks)-1)
		}
		if rc := C.llama_decode(m.ctx, m.batch); rc != 0 {
			return 0, fmt.Errorf("llama_decode of a %d-token prompt failed (code %d)", len(toks), int(rc))
		}
	}
	return int(m.batch.n_tokens) - 1, nil
}

// Score runs the model over tokens with teacher forcing and returns, for every position
// i >= promptLen, the statistics of tokens[i] under the distribution computed from
// tokens[:i], at the given temperature (LogProb; T <= 0 means 1) and at T = 1.
func (m *Model) Score(tokens []int32, promptLen int, temperature float64) ([]rollout.TokenStats, error) {
	if m.vocabOnly {
		return nil, errors.New("score: the model was loaded without its weights (LoadVocab)")
	}
	if promptLen < 1 || promptLen > len(tokens) {
		return nil, fmt.Errorf("score: prompt length %d out of range [1, %d]", promptLen, len(tokens))
	}
	if len(tokens) > m.seqLimit() {
		return nil, fmt.Errorf("score: %d tokens exceed the %d positions a sequence holds", len(tokens), m.seqLimit())
	}
	invTemp := invTempOf(temperature)
	C.llama_kv_self_clear(m.ctx)
	stats := make([]rollout.TokenStats, 0, len(tokens)-promptLen)
	var st C.rlif_stats
	step := m.batchCap()
	for start := 0; start < len(tokens)-1; start += step {
		end := min(start+step, len(tokens)-1) // the last token's logits predict nothing asked for
		m.batch.n_tokens = 0
		for i := start; i < end; i++ {
			m.batchAdd(tokens[i], i, 0, i >= promptLen-1)
		}
		if rc := C.llama_decode(m.ctx, m.batch); rc != 0 {
			return nil, fmt.Errorf("score: llama_decode failed (code %d)", int(rc))
		}
		for i := max(start, promptLen-1); i < end; i++ {
			logits := C.llama_get_logits_ith(m.ctx, C.int32_t(i-start))
			C.rlif_token_stats(logits, C.int32_t(m.info.VocabSize), C.int32_t(tokens[i+1]), invTemp, &st)
			if err := m.checkFinite(&st); err != nil {
				return nil, err
			}
			stats = append(stats, statsOf(&st))
		}
	}
	C.llama_kv_self_clear(m.ctx)
	return stats, nil
}

// progress counts what Sample has done for Params.Progress.
type progress struct {
	done, total, tokens int
	report              func(done, total, tokens int)
}

func (p *progress) add(tokens int, finished bool) {
	p.tokens += tokens
	if finished {
		p.done++
	}
}

func (p *progress) emit() {
	if p.report != nil {
		p.report(p.done, p.total, p.tokens)
	}
}
