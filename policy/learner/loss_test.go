package learner

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// The tests in this file check the GRPO loss, its gradients and whole training steps
// against an independent float64 implementation (tinyRef) on a model small enough to
// work out by hand: a vocabulary of 4 tokens, 4 embedding dimensions and one block whose
// attention values, attention output and FFN are zero, so that the block adds nothing
// (and gets no gradient) and the logits after input token a are
//
//	z = W · (rms(E[a]) ⊙ n) / T
//
// with E the token embeddings, n the output norm and W the LM head. Their ratios, importance
// weights and KL gaps are chosen per token to land on every branch of the loss.

// lossPrecision is one compute mode the loss tests run in, with its tolerances; the
// reference is float64 throughout.
type lossPrecision struct {
	name    string
	opts    Options
	loss    float64 // relative tolerance on loss values and statistics
	grad    float64 // absolute tolerance on gradient entries (of size ~0.1-1)
	weights float64 // absolute tolerance on the weights after a step
	// firstPass compares only the first pass of a μ > 1 step: from the second on, the
	// weights have moved by a gradient with this precision's error, so the ratios are
	// those of another policy than the reference's (f32 checks every pass).
	firstPass bool
}

var lossPrecisions = []lossPrecision{
	{name: "f32", opts: Options{Threads: 1, Precision: PrecisionF32}, loss: 1e-5, grad: 2e-6, weights: 2e-5},
	// bf16 rounds each matmul operand to 8 significant bits (relative error ≤ 2⁻⁹) and
	// its output once more: ≤ 3·2⁻⁹ ≈ 6e-3 of a logit or gradient entry, before the
	// f32 softmax and loss. Losses and statistics within 4e-3 (relative; the loss
	// averages many such errors), gradient entries (≤ 0.5 here) within 3e-3 absolute;
	// the weights' tolerance follows from the gradient's (see TestStepAgainstReference).
	{name: "bf16", opts: Options{Threads: 1, Precision: PrecisionBF16}, loss: 4e-3, grad: 3e-3, firstPass: true},
}

const (
	tinyV, tinyD = 4, 4
	tinyEps      = 1e-5 // RMS norm ε
)

// tinyRef is the tiny model's trainable state in float64: the only tensors that get a
// gradient. Rows are tokens.
type tinyRef struct {
	E, W [tinyV][tinyD]float64
	N    [tinyD]float64
}

func tinyInit() *tinyRef {
	r := &tinyRef{
		// near-one-hot embeddings: rms(E[a]) ≈ 2·e_a, so row a of the logits is roughly
		// 2·W[:, a] (logits within about ±1.6)
		E: [tinyV][tinyD]float64{{1.9, 0.3, -0.2, 0.1}, {-0.4, 2.1, 0.2, 0}, {0.1, -0.3, 1.8, 0.5}, {0.2, 0.1, -0.5, 2}},
		W: [tinyV][tinyD]float64{{0.8, -0.3, 0.5, 0.1}, {-0.2, 0.6, -0.4, 0.9}, {0.4, 0.2, 0.7, -0.6}, {-0.5, 0.4, 0.1, 0.3}},
		N: [tinyD]float64{1, 0.9, 1.1, 1.05},
	}
	// the learner holds float32 weights: start the reference from the same values
	for v := range tinyV {
		for d := range tinyD {
			r.E[v][d], r.W[v][d] = float64(float32(r.E[v][d])), float64(float32(r.W[v][d]))
		}
	}
	for d := range tinyD {
		r.N[d] = float64(float32(r.N[d]))
	}
	return r
}

// writeTinyModel writes r as a llama GGUF whose single block is the identity.
func writeTinyModel(t testing.TB, r *tinyRef) string {
	t.Helper()
	const H, hd, FF = 2, 2, 2
	kv := map[string]any{
		"general.architecture":                   "llama",
		"general.name":                           "rlif loss test",
		"general.alignment":                      uint32(32),
		"general.file_type":                      uint32(0),
		"llama.context_length":                   uint32(64),
		"llama.embedding_length":                 uint32(tinyD),
		"llama.block_count":                      uint32(1),
		"llama.feed_forward_length":              uint32(FF),
		"llama.attention.head_count":             uint32(H),
		"llama.attention.head_count_kv":          uint32(H),
		"llama.attention.layer_norm_rms_epsilon": float32(tinyEps),
		"llama.rope.freq_base":                   float32(10000),
		"llama.rope.dimension_count":             uint32(hd),
	}
	mat := func(name string, in, out int, f func(o, i int) float64) gguf.Tensor {
		ts := gguf.Tensor{Name: name, Shape: []uint64{uint64(in), uint64(out)}, Data: make([]float32, in*out)}
		for o := range out {
			for i := range in {
				ts.Data[o*in+i] = float32(f(o, i))
			}
		}
		return ts
	}
	vec := func(name string, x []float64) gguf.Tensor {
		ts := gguf.Tensor{Name: name, Shape: []uint64{uint64(len(x))}, Data: make([]float32, len(x))}
		for i, v := range x {
			ts.Data[i] = float32(v)
		}
		return ts
	}
	zero := func(o, i int) float64 { return 0 }
	some := func(o, i int) float64 { return 0.1 * float64((3*o+i)%5-2) } // irrelevant once values are zero
	ones := []float64{1, 1, 1, 1}
	ts := []gguf.Tensor{
		mat("token_embd.weight", tinyD, tinyV, func(v, d int) float64 { return r.E[v][d] }),
		mat("output.weight", tinyD, tinyV, func(v, d int) float64 { return r.W[v][d] }),
		vec("output_norm.weight", r.N[:]),
		vec("blk.0.attn_norm.weight", ones),
		vec("blk.0.ffn_norm.weight", ones),
		mat("blk.0.attn_q.weight", tinyD, H*hd, some),
		mat("blk.0.attn_k.weight", tinyD, H*hd, some),
		mat("blk.0.attn_v.weight", tinyD, H*hd, zero),      // no values: attention adds 0, q and k get no gradient
		mat("blk.0.attn_output.weight", H*hd, tinyD, zero), // and neither do v and o (each multiplies the other)
		mat("blk.0.ffn_gate.weight", tinyD, FF, zero),      // silu(0) = 0: the FFN adds 0
		mat("blk.0.ffn_up.weight", tinyD, FF, some),
		mat("blk.0.ffn_down.weight", FF, tinyD, zero),
	}
	f32, err := gguf.ParsePrecision("f32")
	must(t, err)
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	must(t, gguf.WriteModel(path, kv, ts, f32))
	return path
}

// tokenFwd is the forward pass of one prediction: input token a, target b.
type tokenFwd struct {
	a, b int
	x, u [tinyD]float64 // embedding, and its RMS-normalized value
	rs   float64        // 1/rms(x)
	h    [tinyD]float64 // u ⊙ n
	p    [tinyV]float64 // softmax of the tempered logits
	lp   float64        // log p[b]
}

func (r *tinyRef) forward(a, b int, temp float64) tokenFwd {
	f := tokenFwd{a: a, b: b, x: r.E[a]}
	ms := 0.0
	for _, x := range f.x {
		ms += x * x
	}
	f.rs = 1 / math.Sqrt(ms/tinyD+tinyEps)
	for d := range tinyD {
		f.u[d] = f.x[d] * f.rs
		f.h[d] = f.u[d] * r.N[d]
	}
	var z [tinyV]float64
	zmax := math.Inf(-1)
	for v := range tinyV {
		for d := range tinyD {
			z[v] += r.W[v][d] * f.h[d]
		}
		z[v] /= temp
		zmax = math.Max(zmax, z[v])
	}
	sum := 0.0
	for v := range tinyV {
		sum += math.Exp(z[v] - zmax)
	}
	lse := zmax + math.Log(sum)
	for v := range tinyV {
		f.p[v] = math.Exp(z[v] - lse)
	}
	f.lp = z[b] - lse
	return f
}

// backward adds g·∂log p[b]/∂θ to grad.
func (r *tinyRef) backward(f tokenFwd, g, temp float64, grad *tinyRef) {
	var dz [tinyV]float64
	for v := range tinyV {
		dz[v] = -g * f.p[v] // ∂lp/∂z_v = [v = b] − p_v
		if v == f.b {
			dz[v] += g
		}
	}
	r.backwardZ(f, dz, temp, grad)
}

// backwardEntropy adds g·∂H/∂θ to grad, H the entropy of the tempered distribution:
// ∂H/∂z_v = −p_v (log p_v + H) in the tempered logits z.
func (r *tinyRef) backwardEntropy(f tokenFwd, g, temp float64, grad *tinyRef) {
	h := entropy(f.p)
	var dz [tinyV]float64
	for v := range tinyV {
		dz[v] = -g * f.p[v] * (math.Log(f.p[v]) + h)
	}
	r.backwardZ(f, dz, temp, grad)
}

// backwardZ adds the gradient of a function of the tempered logits, given its derivatives
// dz in them, to grad.
func (r *tinyRef) backwardZ(f tokenFwd, dz [tinyV]float64, temp float64, grad *tinyRef) {
	var dh [tinyD]float64
	for v := range tinyV {
		for d := range tinyD {
			grad.W[v][d] += dz[v] * f.h[d] / temp
			dh[d] += dz[v] * r.W[v][d] / temp
		}
	}
	var du [tinyD]float64
	dot := 0.0
	for d := range tinyD {
		grad.N[d] += dh[d] * f.u[d]
		du[d] = dh[d] * r.N[d]
		dot += f.x[d] * du[d]
	}
	// u = x·(mean(x²)+ε)^(−1/2): ∂u_i/∂x_j = rs·[i = j] − rs³·x_i·x_j/D
	for d := range tinyD {
		grad.E[f.a][d] += f.rs*du[d] - f.rs*f.rs*f.rs*f.x[d]*dot/tinyD
	}
}

// tokenTerms are one token's inputs to the loss besides log π.
type tokenTerms struct {
	old, ref, sampler float64 // log-probs; ref and sampler used only when on
	adv               float64
}

// lossSettings are the loss's options, as the learner passes them to the shim.
type lossSettings struct {
	epsLow, epsHigh, beta, isCap float64 // isCap 0: no importance weight
	pol                          torch.PolicyOpts
}

// tokenStats count a token's branches.
type tokenStats struct {
	clipLow, clipHigh, klClamped bool
	isMasked, offPolicyMasked    bool
	entropyMasked                bool
	ratio, kl, isw               float64
	// nearEdge: within rounding of a branch point, where float32 and float64 may disagree
	nearEdge bool
}

// near says whether x lies within rounding of the branch point at edge.
func near(x, edge float64) bool { return math.Abs(x-edge) < 1e-4*(1+math.Abs(edge)) }

// seqLoss is the loss of one sequence's tokens at log π = lp[t], ℓ = Σ_t ℓ_t, and its
// derivatives dl[t] = ∂ℓ/∂lp[t]:
//
//	ℓ_t = g(ρ_t, A) · keep · keep_t · w_t + β·k3_t
//
//	ρ_t = π/π_old (token level), or exp(mean_s log π_s/π_old,s) for every t (sequence level)
//	g   = −min(min(ρ, δ)·A, clip(ρ, 1−ε_low, 1+ε_high)·A)   clipped surrogate (δ: ∞ when off)
//	      −sg(min(ρ, ε_high))·A·log π                          CISPO
//	      −(4/τ)·σ(τ(ρ−1))·A, τ = τ_pos if A > 0 else τ_neg    SAPO
//	keep   = 0 when A < 0 and mean_t(log π_sampler − log π) > the off-policy threshold
//	keep_t = [H_t ≥ entThr] (entThr: −∞ when the entropy mask is off)
//	w_t    = π_old/π_sampler per token or per sequence (the product over its tokens),
//	         clamped to [C_min, C] (truncate) or zeroed outside it (mask)
//	k3_t   = e^δ − δ − 1 with δ = clamp(log π_ref − log π, ±20)
func seqLoss(s lossSettings, lp []float64, in []tokenTerms, ent []float64, entThr float64) (l float64, dl []float64, st []tokenStats) {
	n := len(lp)
	dl, st = make([]float64, n), make([]tokenStats, n)
	if n == 0 {
		return 0, dl, st
	}
	p := s.pol
	adv := in[0].adv
	rho := make([]float64, n)
	mean := 0.0
	for t := range n {
		rho[t] = math.Exp(lp[t] - in[t].old)
		mean += (lp[t] - in[t].old) / float64(n)
	}
	if p.SequenceRatio {
		for t := range n {
			rho[t] = math.Exp(mean)
		}
	}
	keep := 1.0
	if p.OffPolicyMask {
		kl := 0.0
		for t := range n {
			sampled := in[t].old
			if s.isCap > 0 {
				sampled = in[t].sampler
			}
			kl += (sampled - lp[t]) / float64(n)
		}
		if adv < 0 && kl > float64(p.OffPolicyThreshold) {
			keep = 0
		}
		st[0].nearEdge = adv < 0 && near(kl, float64(p.OffPolicyThreshold))
	}
	w := make([]float64, n)
	seqIS := 0.0
	for t := range n {
		seqIS += in[t].old - in[t].sampler
	}
	for t := range n {
		w[t] = 1
		if s.isCap == 0 {
			continue
		}
		x := math.Exp(in[t].old - in[t].sampler)
		if p.ISMode == torch.ISSequenceTruncate || p.ISMode == torch.ISSequenceMask {
			x = math.Exp(seqIS)
		}
		lo := float64(p.ISMin)
		st[t].nearEdge = st[t].nearEdge || near(x, s.isCap) || (lo > 0 && near(x, lo))
		switch p.ISMode {
		case torch.ISTokenMask, torch.ISSequenceMask:
			if x > s.isCap || x < lo {
				x, st[t].isMasked = 0, true
			}
		default:
			x = math.Max(math.Min(x, s.isCap), lo)
		}
		w[t] = x
		st[t].isw = x
	}
	seqSum := 0.0 // Σ_t m_t·∂g_t/∂ρ, for the sequence ratio
	for t := range n {
		m := keep * w[t]
		st[t].offPolicyMasked = keep == 0
		if p.EntropyQuantile > 0 {
			if ent[t] < entThr {
				m, st[t].entropyMasked = 0, true
			}
			// exact ties are kept alike in float32 (equal inputs give equal entropies)
			d := math.Abs(ent[t] - entThr)
			st[t].nearEdge = st[t].nearEdge || (d > 1e-12 && d < 1e-4)
		}
		r := rho[t]
		st[t].ratio = r
		var g, dg float64 // g and ∂g/∂ρ
		switch p.Objective {
		case torch.ObjectiveClip:
			lo, hi := 1-s.epsLow, 1+s.epsHigh
			st[t].nearEdge = st[t].nearEdge || near(r, lo) || near(r, hi)
			u, du := r, 1.0
			if p.Delta > 0 {
				st[t].nearEdge = st[t].nearEdge || near(r, float64(p.Delta))
				if r > float64(p.Delta) {
					u, du = float64(p.Delta), 0
				}
			}
			c, dc := math.Min(math.Max(r, lo), hi), 0.0
			if r > lo && r < hi {
				dc = 1
			}
			if u*adv <= c*adv {
				g, dg = -u*adv, -du*adv
			} else {
				g, dg = -c*adv, -dc*adv
			}
			st[t].clipLow = adv < 0 && r < lo
			st[t].clipHigh = adv > 0 && r > hi
		case torch.ObjectiveCISPO:
			st[t].nearEdge = st[t].nearEdge || near(r, s.epsHigh)
			c := math.Min(r, s.epsHigh)
			g = -c * adv * lp[t]
			dl[t] += m * -c * adv // the weight is a constant: no path through ρ
			st[t].clipHigh = r > s.epsHigh
		case torch.ObjectiveSAPO:
			tau := float64(p.SAPOTempNeg)
			if adv > 0 {
				tau = float64(p.SAPOTempPos)
			}
			sg := 1 / (1 + math.Exp(-tau*(r-1)))
			g, dg = -4/tau*sg*adv, -4*sg*(1-sg)*adv
		}
		l += m * g
		if p.SequenceRatio {
			seqSum += m * dg
		} else {
			dl[t] += m * dg * r // ∂ρ_t/∂lp_t = ρ_t
		}
		if s.beta != 0 {
			delta := in[t].ref - lp[t]
			st[t].klClamped = math.Abs(delta) > 20
			st[t].nearEdge = st[t].nearEdge || math.Abs(math.Abs(delta)-20) < 1e-3
			dc := math.Max(-20, math.Min(20, delta))
			st[t].kl = math.Exp(dc) - dc - 1
			l += s.beta * st[t].kl
			if !st[t].klClamped {
				dl[t] += s.beta * -(math.Exp(delta) - 1) // ∂k3/∂δ = e^δ − 1, ∂δ/∂lp = −1
			}
		}
	}
	if p.SequenceRatio {
		// ρ = exp(mean_s(lp_s − old_s)): ∂ρ/∂lp_t = ρ/n for every t
		for t := range n {
			dl[t] += seqSum * rho[t] / float64(n)
		}
	}
	return l, dl, st
}

// entropy is the entropy of a token's (tempered) distribution p.
func entropy(p [tinyV]float64) float64 {
	h := 0.0
	for _, x := range p {
		if x > 0 {
			h -= x * math.Log(x)
		}
	}
	return h
}

// quantile is torch.quantile's linear interpolation between the order statistics.
func quantile(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	pos := q * float64(len(s)-1)
	lo := math.Floor(pos)
	hi := math.Ceil(pos)
	return s[int(lo)] + (s[int(hi)]-s[int(lo)])*(pos-lo)
}

// refSeq is one sequence of a reference batch.
type refSeq struct {
	tokens    []int32
	promptLen int
}

// completion returns the (input, target) pairs of the completion tokens.
func (s refSeq) completion() [][2]int {
	var out [][2]int
	for k := s.promptLen; k < len(s.tokens); k++ {
		out = append(out, [2]int{int(s.tokens[k-1]), int(s.tokens[k])})
	}
	return out
}

func (r *tinyRef) logProbs(seqs []refSeq, temp float64) [][]float64 {
	out := make([][]float64, len(seqs))
	for i, s := range seqs {
		for _, ab := range s.completion() {
			out[i] = append(out[i], r.forward(ab[0], ab[1], temp).lp)
		}
	}
	return out
}

// refSums are a loss evaluation's sums over tokens.
type refSums struct {
	tokens, entropy                          float64
	loss, kl, ratio, isw                     float64
	clipLow, clipHigh, clamped               float64
	isMasked, offPolicyMasked, entropyMasked float64
	nearEdge                                 bool
}

// lossGrad evaluates Σ weight(i)·ℓ(i, t) over the sequences' completion tokens and adds its
// gradient to grad; weight(i) is the aggregation's factor for sequence i's tokens. The
// sequences are one micro-batch: the entropy mask's quantile is taken over them.
func (r *tinyRef) lossGrad(seqs []refSeq, terms [][]tokenTerms, s lossSettings, temp float64, weight func(i int) float64, grad *tinyRef) refSums {
	var sum refSums
	fw := make([][]tokenFwd, len(seqs))
	ents := make([][]float64, len(seqs))
	var all []float64
	for i, sq := range seqs {
		for _, ab := range sq.completion() {
			f := r.forward(ab[0], ab[1], temp)
			fw[i] = append(fw[i], f)
			ents[i] = append(ents[i], entropy(f.p))
		}
		all = append(all, ents[i]...)
	}
	entThr := math.Inf(-1)
	if s.pol.EntropyQuantile > 0 && len(all) > 0 {
		entThr = quantile(all, float64(s.pol.EntropyQuantile))
	}
	for i := range seqs {
		w := weight(i)
		lp := make([]float64, len(fw[i]))
		for t, f := range fw[i] {
			lp[t] = f.lp
		}
		l, dl, sts := seqLoss(s, lp, terms[i], ents[i], entThr)
		sum.loss += w * l
		for t, f := range fw[i] {
			r.backward(f, w*dl[t], temp, grad)
			st := sts[t]
			sum.tokens++
			sum.entropy += ents[i][t]
			if ew := float64(s.pol.EntropyWeight); ew != 0 && !st.entropyMasked {
				// the bonus −c·H on the tokens the entropy mask keeps, outside the row weight
				sum.loss -= ew * ents[i][t]
				r.backwardEntropy(f, -ew, temp, grad)
			}
			sum.kl += st.kl
			sum.ratio += st.ratio
			sum.isw += st.isw
			sum.clipLow += b2f(st.clipLow)
			sum.clipHigh += b2f(st.clipHigh)
			sum.clamped += b2f(st.klClamped)
			sum.isMasked += b2f(st.isMasked)
			sum.offPolicyMasked += b2f(st.offPolicyMasked)
			sum.entropyMasked += b2f(st.entropyMasked)
			sum.nearEdge = sum.nearEdge || st.nearEdge
		}
	}
	return sum
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// each visits the trainable tensors by GGUF name, row-major as the learner stores them.
func (r *tinyRef) each(f func(name string, vals []*float64)) {
	var e, w, n []*float64
	for v := range tinyV {
		for d := range tinyD {
			e, w = append(e, &r.E[v][d]), append(w, &r.W[v][d])
		}
	}
	for d := range tinyD {
		n = append(n, &r.N[d])
	}
	f("token_embd.weight", e)
	f("output.weight", w)
	f("output_norm.weight", n)
}

// compareTensors checks the learner's tensors (or their gradients) against r.
func compareTensors(t *testing.T, m *Model, r *tinyRef, grad bool, tol float64, what string) {
	t.Helper()
	r.each(func(name string, vals []*float64) {
		got := make([]float32, len(vals))
		must(t, m.t.Tensor(name, got, false, grad))
		for i, p := range vals {
			if d := math.Abs(float64(got[i]) - *p); d > tol || math.IsNaN(d) {
				t.Errorf("%s: %s[%d] = %.7g, reference %.7g", what, name, i, got[i], *p)
			}
		}
	})
}

// maxDiff is the largest difference between two states' entries.
func maxDiff(a, b *tinyRef) float64 {
	var xs, ys []*float64
	a.each(func(_ string, v []*float64) { xs = append(xs, v...) })
	b.each(func(_ string, v []*float64) { ys = append(ys, v...) })
	d := 0.0
	for i := range xs {
		d = math.Max(d, math.Abs(*xs[i]-*ys[i]))
	}
	return d
}

func closeRel(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*(1+math.Abs(want))
}

// tinySeqs are the sequences of the single-call loss cases: 5 and 4 completion tokens
// after one prompt token, every token of the vocabulary as input and as target.
var tinySeqs = []refSeq{
	{tokens: []int32{0, 1, 2, 3, 1, 0}, promptLen: 1},
	{tokens: []int32{2, 3, 0, 1, 3}, promptLen: 1},
}

// fourSeqs add two sequences (4 and 5 completion tokens) to tinySeqs, for the
// sequence-level cases: one per sign of the advantage and side of the clip.
var fourSeqs = append(slices.Clone(tinySeqs),
	refSeq{tokens: []int32{1, 0, 3, 2, 2}, promptLen: 1},
	refSeq{tokens: []int32{3, 1, 1, 2, 0, 1}, promptLen: 1},
)

// TestLossBranches runs one loss-and-backward call per case and checks the loss value,
// the branch counts and the gradients of every trainable tensor against the float64
// reference, and where the case says, against a value worked out by hand.
func TestLossBranches(t *testing.T) {
	type perToken [][]float64 // one value per completion token of each sequence
	cases := []struct {
		name string
		seqs []refSeq // nil: tinySeqs
		adv  []float64
		pol  torch.PolicyOpts
		// ratio π/π_old per token (nil: no π_old passed, so the ratio is exactly 1);
		// isw π_old/π_sampler before the cap (nil: IS off); gap log π_ref − log π (nil: β = 0)
		ratio, isw, gap          *perToken
		epsLow, epsHigh          float64
		beta, isCap, temp        float64
		seqMean                  bool
		denom                    float64
		wantLoss                 float64 // worked out by hand; NaN: the reference only
		wantLow, wantHigh, clamp float64 // branch counts, by hand
		// tokens masked by the IS band, the off-policy mask and the entropy mask, by hand
		wantISMasked, wantOffPolicy, wantEntropy float64
		// bf16Grad, when set, is the bf16 gradient tolerance: the entropy's gradient reaches
		// every logit through log p, not the target's alone, and gathers more of their bf16
		// rounding (3.4e-3 measured on an entry of 0.245, against 1.2e-3 without the bonus).
		bf16Grad float64
	}{
		{
			// A = +1: ρ 0.5 and 0.85 lie below 1−ε_low but keep their gradient (min takes ρA);
			// 1.2 is inside [0.9, 1.3] (it would be clipped were ε_low and ε_high swapped);
			// 1.5 is clipped to 1.3: ℓ = −(0.5+0.85+1+1.2+1.3) = −4.85.
			// A = −0.5: 0.5 and 0.85 are clipped to 0.9 (0.85 would not be under swapped ε),
			// 1.2 stays, 1.5 keeps its gradient: ℓ = 0.5·(0.9+0.9+1.2+1.5) = 2.25.
			// Token mean over 9 tokens: (−4.85 + 2.25)/9.
			name: "clip both sides and both signs, ε_low ≠ ε_high",
			adv:  []float64{1, -0.5}, ratio: &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 1.5}},
			epsLow: 0.1, epsHigh: 0.3, temp: 0.8, denom: 9,
			wantLoss: (-4.85 + 2.25) / 9, wantLow: 2, wantHigh: 1,
		},
		{
			// ρ = 1; weights min(w, 2): {0.5, 1.5, 2, 2, 1} and {0.25, 2, 1, 2}.
			// Per-sequence means: −(0.5+1.5+2+2+1)/5 = −1.4 and 0.5·(0.25+2+1+2)/4 = 0.65625,
			// over 2 sequences: −0.371875. (With π_sampler/π_old instead, no weight would reach the cap.)
			name: "importance weight below and above the cap, per-sequence mean",
			adv:  []float64{1, -0.5}, isw: &perToken{{0.5, 1.5, 3, 10, 1}, {0.25, 4, 1, 2.5}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, seqMean: true, denom: 2,
			wantLoss: (-1.4 + 0.65625) / 2,
		},
		{
			// A = 0 leaves the KL alone: β·Σ(e^δ − δ − 1)/9 with the δ below, Σ k3 =
			// 6.993876540852918 + 17.973179451571067 (the reverse direction, e^−δ + δ − 1, sums to 9.6675).
			name: "k3 KL direction",
			adv:  []float64{0, 0}, gap: &perToken{{-1, 0.5, 2, -0.5, 1.5}, {0.25, 1, -2, 3}},
			epsLow: 0.2, epsHigh: 0.2, beta: 0.1, temp: 1, denom: 9,
			wantLoss: 0.1 * (6.993876540852918 + 17.973179451571067) / 9,
		},
		{
			// δ = 100, −30 and 25 are clamped to ±20 (no gradient); exp(100) overflows float32.
			name: "k3 KL clamp",
			adv:  []float64{0.5, -1}, gap: &perToken{{100, -30, 0.5, 2, -1}, {25, 0, 1, -2}},
			epsLow: 0.2, epsHigh: 0.2, beta: 0.02, temp: 0.9, denom: 9,
			wantLoss: (-0.5*5 + 1*4 + 0.02*970330374.5788546) / 9, clamp: 3,
		},
		{
			name: "everything at once",
			adv:  []float64{-0.75, 1.25}, ratio: &perToken{{0.6, 1.1, 1.4, 0.95, 1.25}, {0.7, 1.35, 0.9, 1.02}},
			isw: &perToken{{0.8, 1.7, 1.1, 0.6, 1.3}, {2.2, 1, 0.9, 1.45}}, gap: &perToken{{0.3, -0.4, 1.2, -25, 0.1}, {-0.2, 0.7, 0.05, -1}},
			epsLow: 0.2, epsHigh: 0.28, beta: 0.04, isCap: 1.5, temp: 0.7, seqMean: true, denom: 2,
			wantLoss: math.NaN(), wantLow: 1, wantHigh: 1, clamp: 1,
		},
		// GSPO: one ratio per sequence, the geometric mean of its tokens' ratios. S0's
		// tokens range over 0.5…1.6 (a token ratio would clip some) but their mean log is
		// 0.0058: ρ = 1.0059, inside. S1: ρ = 1.4457 > 1.28 with A > 0, clipped (4 tokens
		// high); S2: ρ = 0.7085 < 0.8 with A < 0, clipped (4 low); S3: ρ = 1.554 with A < 0
		// keeps its gradient (min takes ρA).
		{
			name: "GSPO sequence ratio inside and outside the clip, both signs",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{SequenceRatio: true},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			epsLow: 0.2, epsHigh: 0.28, temp: 0.8, seqMean: true, denom: 4,
			wantLoss: (-math.Exp(math.Log(0.5*1.6*1.3*0.9*1.1)/5) - 1.28*0.5 + 0.8 + 0.5*math.Exp(math.Log(1.5*2.0*1.2*1.8*1.4)/5)) / 4,
			wantLow:  4, wantHigh: 4,
		},
		{
			// The same with the KL, IS weights and a micro-batch token mean: the sequence ratio
			// multiplies each token's weight, and its gradient reaches every token.
			name: "GSPO with KL and IS",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{SequenceRatio: true},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			isw:    &perToken{{0.8, 1.7, 1.1, 0.6, 1.3}, {2.2, 1, 0.9, 1.45}, {1.2, 0.7, 1, 1.1}, {0.9, 1.3, 2.5, 1, 0.8}},
			gap:    &perToken{{0.3, -0.4, 1.2, -0.5, 0.1}, {-0.2, 0.7, 0.05, -1}, {0.4, 0.2, -0.3, 0.6}, {-0.1, 0.5, 0.3, -0.6, 0.2}},
			epsLow: 0.2, epsHigh: 0.28, beta: 0.04, isCap: 1.5, temp: 0.7, denom: 18,
			wantLoss: math.NaN(), wantLow: 4, wantHigh: 4,
		},
		{
			// δ = 1.5 caps S3's ρ = 1.554 (A < 0): ℓ = 0.5·1.5 per token, no gradient.
			name: "GSPO with the two-sided clip",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{SequenceRatio: true, Delta: 1.5},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			epsLow: 0.2, epsHigh: 0.28, temp: 0.8, seqMean: true, denom: 4,
			wantLoss: (-math.Exp(math.Log(0.5*1.6*1.3*0.9*1.1)/5) - 1.28*0.5 + 0.8 + 0.5*1.5) / 4,
			wantLow:  4, wantHigh: 4,
		},
		{
			// Token level, δ = 3: A = +1 as in the first case (3.5 is clipped to 1.3 either way);
			// A = −0.5: 0.5 → 0.9, 2.5 keeps its gradient, 1.2 stays, 4 is capped at δ = 3:
			// ℓ = 0.5·(0.9+2.5+1.2+3) = 3.8.
			name: "two-sided clip δ, token level",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{Delta: 3},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 3.5}, {0.5, 2.5, 1.2, 4}},
			epsLow: 0.1, epsHigh: 0.3, temp: 0.8, denom: 9,
			wantLoss: (-4.85 + 3.8) / 9, wantLow: 1, wantHigh: 1,
		},
		{
			// CISPO: weight min(ρ, ε_high = 1.4) without gradient, times −A·log π; 1.5, 2 and
			// 1.6 are capped (clip high counts capped weights, whatever the sign of A).
			name: "CISPO weight cap and stop-gradient",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{Objective: torch.ObjectiveCISPO},
			ratio:  &perToken{{0.5, 1.2, 1.5, 0.9, 2}, {0.7, 1.6, 1.1, 1.3}},
			epsLow: 0.2, epsHigh: 1.4, temp: 0.9, denom: 9,
			wantLoss: math.NaN(), wantHigh: 3,
		},
		{
			name: "CISPO with the sequence ratio and KL",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{Objective: torch.ObjectiveCISPO, SequenceRatio: true},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			gap:    &perToken{{0.3, -0.4, 1.2, -0.5, 0.1}, {-0.2, 0.7, 0.05, -1}, {0.4, 0.2, -0.3, 0.6}, {-0.1, 0.5, 0.3, -0.6, 0.2}},
			epsLow: 0.2, epsHigh: 1.5, beta: 0.05, temp: 1, denom: 18,
			wantLoss: math.NaN(), wantHigh: 5,
		},
		{
			// SAPO at ρ = 1 (no π_old) is GRPO's value: ℓ = −(4/τ)·σ(0)·A = −2A/τ per token.
			name: "SAPO gate at ρ = 1",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{Objective: torch.ObjectiveSAPO, SAPOTempPos: 1, SAPOTempNeg: 1.05},
			epsLow: 0.2, epsHigh: 0.2, temp: 1, denom: 9,
			wantLoss: (-2*5 + 2*0.5*4/1.05) / 9,
		},
		{
			name: "SAPO gate, TRL's temperatures",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{Objective: torch.ObjectiveSAPO, SAPOTempPos: 1, SAPOTempNeg: 1.05},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 3}},
			epsLow: 0.2, epsHigh: 0.2, temp: 0.8, denom: 9, wantLoss: math.NaN(),
		},
		{
			name: "SAPO gate, sharp temperatures",
			adv:  []float64{-1, 0.75}, pol: torch.PolicyOpts{Objective: torch.ObjectiveSAPO, SAPOTempPos: 8, SAPOTempNeg: 4},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 3}},
			epsLow: 0.2, epsHigh: 0.2, temp: 0.8, seqMean: true, denom: 2, wantLoss: math.NaN(),
		},
		{
			name: "SAPO gate, soft temperatures, with KL and the sequence ratio",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{Objective: torch.ObjectiveSAPO, SAPOTempPos: 0.3, SAPOTempNeg: 0.5, SequenceRatio: true},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			gap:    &perToken{{0.3, -0.4, 1.2, -0.5, 0.1}, {-0.2, 0.7, 0.05, -1}, {0.4, 0.2, -0.3, 0.6}, {-0.1, 0.5, 0.3, -0.6, 0.2}},
			epsLow: 0.2, epsHigh: 0.2, beta: 0.05, temp: 1, denom: 18, wantLoss: math.NaN(),
		},
		{
			// ρ = 1; the band [0.5, 2] zeroes 0.4, 3, 10, 0.25 and 2.5 (IcePop):
			// ℓ = (−(1.5+1) + 0.5·(1+1.8))/9.
			name: "IS token mask, two-sided band",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{ISMode: torch.ISTokenMask, ISMin: 0.5},
			isw:    &perToken{{0.4, 1.5, 3, 10, 1}, {0.25, 2.5, 1, 1.8}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, denom: 9,
			wantLoss: (-(1.5 + 1) + 0.5*(1+1.8)) / 9, wantISMasked: 5,
		},
		{
			// clamp to [0.5, 2]: {0.5, 1.5, 2, 2, 1} and {0.5, 2, 1, 1.8}.
			name: "IS token truncate, two-sided",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{ISMode: torch.ISTokenTruncate, ISMin: 0.5},
			isw:    &perToken{{0.4, 1.5, 3, 10, 1}, {0.25, 2.5, 1, 1.8}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, denom: 9,
			wantLoss: (-(0.5 + 1.5 + 2 + 2 + 1) + 0.5*(0.5+2+1+1.8)) / 9,
		},
		{
			// Sequence weights: S0 1.1·0.9·1.2·1.05·0.95 = 1.18503, S1 1.5·1.6·1.2·1.1 = 3.168,
			// truncated to 2: ℓ = (−1.18503·5 + 0.5·2·4)/9.
			name: "IS sequence truncate",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{ISMode: torch.ISSequenceTruncate},
			isw:    &perToken{{1.1, 0.9, 1.2, 1.05, 0.95}, {1.5, 1.6, 1.2, 1.1}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, denom: 9,
			wantLoss: (-1.1*0.9*1.2*1.05*0.95*5 + 0.5*2*4) / 9,
		},
		{
			// The same weights, masked: S1 (3.168 > 2) is dropped, all 4 of its tokens.
			name: "IS sequence mask",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{ISMode: torch.ISSequenceMask},
			isw:    &perToken{{1.1, 0.9, 1.2, 1.05, 0.95}, {1.5, 1.6, 1.2, 1.1}},
			ratio:  &perToken{{0.9, 1.1, 1, 1.05, 0.95}, {0.85, 1.1, 1.15, 1.05}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, denom: 9,
			wantLoss: -1.1 * 0.9 * 1.2 * 1.05 * 0.95 * (0.9 + 1.1 + 1 + 1.05 + 0.95) / 9, wantISMasked: 4,
		},
		{
			// Without IS the drift is log π_old − log π = −log ρ: S1 (A < 0) has mean −log ρ =
			// 0.462 > 0.3 and is dropped; S0 (A > 0) stays whatever its drift, its ratios
			// below 1−ε_low keeping their gradient: ℓ = −(0.5+0.6+1+0.7+0.75).
			name: "off-policy sequence mask",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{OffPolicyMask: true, OffPolicyThreshold: 0.3},
			ratio:  &perToken{{0.5, 0.6, 1, 0.7, 0.75}, {0.5, 0.6, 0.7, 0.75}},
			epsLow: 0.2, epsHigh: 0.2, temp: 1, denom: 9,
			wantLoss: -(0.5 + 0.6 + 1 + 0.7 + 0.75) / 9, wantOffPolicy: 4, wantLow: 4, // counted, masked or not
		},
		{
			// With the sampler's log-probs the drift is −log ρ − log(π_old/π_sampler): S1's
			// −log ρ ≈ 0.04 alone would pass 0.3, its weights push it over (0.04 + 0.36).
			name: "off-policy sequence mask against the sampler",
			seqs: fourSeqs, adv: []float64{1, -0.5, -1, 0.5}, pol: torch.PolicyOpts{OffPolicyMask: true, OffPolicyThreshold: 0.3},
			ratio:  &perToken{{0.9, 1.1, 1, 1.05, 0.95}, {0.95, 1.0, 0.9, 1.0}, {1.1, 1.05, 1, 0.95}, {0.5, 0.6, 0.7, 0.85, 0.9}},
			isw:    &perToken{{1, 1, 1, 1, 1}, {0.7, 0.7, 0.7, 0.7}, {1.2, 1, 1, 1}, {0.5, 0.5, 0.5, 0.5, 0.5}},
			epsLow: 0.2, epsHigh: 0.2, isCap: 2, temp: 1, denom: 18, wantLoss: math.NaN(), wantOffPolicy: 4,
		},
		{
			// Top 20% of the tokens by entropy (TRL's top_entropy_quantile = 0.2): the threshold
			// is the 0.8 quantile of the micro-batch's 9 entropies. A token's entropy depends
			// on its input token alone; input 1, the most uncertain, is 3 of the 9 (sorted
			// places 6 to 8, the threshold between 6 and 7 equals it): 3 train, 6 are masked.
			name: "top-entropy mask, quantile 0.2",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{EntropyQuantile: entropyThresholdQuantile(0.2)},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 1.5}},
			epsLow: 0.1, epsHigh: 0.3, temp: 0.8, denom: 9,
			wantLoss: math.NaN(), wantLow: 2, wantHigh: 1, wantEntropy: 6,
		},
		{
			// The bonus −c·Σ H (c = 0.05/9: the mean entropy's share) adds its gradient
			// through every logit, not just the target's.
			name: "entropy bonus",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{EntropyWeight: 0.05 / 9},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 1.5}},
			epsLow: 0.1, epsHigh: 0.3, temp: 0.8, denom: 9, bf16Grad: 5e-3,
			wantLoss: math.NaN(), wantLow: 2, wantHigh: 1,
		},
		{
			// The bonus on the tokens the entropy mask keeps only, as TRL's.
			name: "entropy bonus with the top-entropy mask and KL",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{EntropyWeight: 0.5, EntropyQuantile: entropyThresholdQuantile(0.2)},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 1.5}},
			gap:    &perToken{{0.3, -0.4, 1.2, -0.5, 0.1}, {-0.2, 0.7, 0.05, -1}},
			epsLow: 0.1, epsHigh: 0.3, beta: 0.04, temp: 1.3, seqMean: true, denom: 2, bf16Grad: 5e-3,
			wantLoss: math.NaN(), wantLow: 2, wantHigh: 1, wantEntropy: 6,
		},
		{
			// Quantile 1 keeps every token: the first case's loss.
			name: "top-entropy mask, quantile 1.0",
			adv:  []float64{1, -0.5}, pol: torch.PolicyOpts{EntropyQuantile: entropyThresholdQuantile(1)},
			ratio:  &perToken{{0.5, 0.85, 1, 1.2, 1.5}, {0.5, 0.85, 1.2, 1.5}},
			epsLow: 0.1, epsHigh: 0.3, temp: 0.8, denom: 9,
			wantLoss: (-4.85 + 2.25) / 9, wantLow: 2, wantHigh: 1,
		},
		{
			name: "top-entropy mask, quantile 0.5, with KL, IS and the sequence ratio",
			seqs: fourSeqs, adv: []float64{1, 0.5, -1, -0.5}, pol: torch.PolicyOpts{SequenceRatio: true, EntropyQuantile: entropyThresholdQuantile(0.5)},
			ratio:  &perToken{{0.5, 1.6, 1.3, 0.9, 1.1}, {1.5, 1.4, 1.6, 1.3}, {0.6, 0.7, 0.8, 0.75}, {1.5, 2.0, 1.2, 1.8, 1.4}},
			isw:    &perToken{{0.8, 1.7, 1.1, 0.6, 1.3}, {2.2, 1, 0.9, 1.45}, {1.2, 0.7, 1, 1.1}, {0.9, 1.3, 2.5, 1, 0.8}},
			gap:    &perToken{{0.3, -0.4, 1.2, -0.5, 0.1}, {-0.2, 0.7, 0.05, -1}, {0.4, 0.2, -0.3, 0.6}, {-0.1, 0.5, 0.3, -0.6, 0.2}},
			epsLow: 0.2, epsHigh: 0.28, beta: 0.04, isCap: 1.5, temp: 0.7, denom: 18,
			wantLoss: math.NaN(), wantLow: 4, wantHigh: 4, wantEntropy: 8,
		},
	}
	for _, prec := range lossPrecisions {
		for _, c := range cases {
			t.Run(prec.name+"/"+c.name, func(t *testing.T) {
				ref := tinyInit()
				m, err := Load(writeTinyModel(t, ref), prec.opts)
				must(t, err)
				defer m.Close()
				rs := c.seqs
				if rs == nil {
					rs = tinySeqs
				}
				seqs := make([]Sequence, len(rs))
				for i, s := range rs {
					seqs[i] = Sequence{Tokens: s.tokens, PromptLen: s.promptLen}
				}
				b, err := m.batch(seqs)
				must(t, err)
				lp := ref.logProbs(rs, c.temp)
				a := &torch.LossArgs{
					Mask: make([]float32, b.B*b.T), Advantages: make([]float32, len(rs)),
					Temperature: float32(c.temp), EpsLow: float32(c.epsLow), EpsHi: float32(c.epsHigh),
					Beta: float32(c.beta), ISCap: float32(c.isCap), Policy: c.pol,
				}
				for i := range rs {
					a.Advantages[i] = float32(c.adv[i])
				}
				if c.ratio != nil {
					a.OldLogProb = make([]float64, b.B*b.T)
				}
				if c.isw != nil {
					a.SamplerLogProb = make([]float64, b.B*b.T)
				}
				if c.gap != nil {
					a.RefLogProb = make([]float64, b.B*b.T)
				}
				terms := make([][]tokenTerms, len(rs))
				tokens := 0.0
				for i, s := range rs {
					for j := range lp[i] {
						tokens++
						k := i*b.T + s.promptLen + j
						a.Mask[k] = 1
						tt := tokenTerms{old: lp[i][j], adv: float64(a.Advantages[i])}
						if c.ratio != nil {
							tt.old = lp[i][j] - math.Log((*c.ratio)[i][j])
							a.OldLogProb[k] = tt.old
						}
						if c.isw != nil {
							tt.sampler = tt.old - math.Log((*c.isw)[i][j])
							a.SamplerLogProb[k] = tt.sampler
						}
						if c.gap != nil {
							tt.ref = lp[i][j] + (*c.gap)[i][j]
							a.RefLogProb[k] = tt.ref
						}
						terms[i] = append(terms[i], tt)
					}
				}
				grad := &tinyRef{}
				s := lossSettings{epsLow: float64(a.EpsLow), epsHigh: float64(a.EpsHi), beta: float64(a.Beta), isCap: float64(a.ISCap), pol: c.pol}
				want := ref.lossGrad(rs, terms, s, c.temp, func(i int) float64 {
					if c.seqMean {
						return 1 / (float64(len(terms[i])) * c.denom)
					}
					return 1 / c.denom
				}, grad)
				if want.nearEdge {
					t.Fatal("a token sits on a branch point of the loss: choose other values for the case")
				}
				if !math.IsNaN(c.wantLoss) && !closeRel(want.loss, c.wantLoss, 1e-6) {
					t.Fatalf("the reference computes loss %.9g, worked out by hand %.9g", want.loss, c.wantLoss)
				}
				if want.clipLow != c.wantLow || want.clipHigh != c.wantHigh || want.clamped != c.clamp {
					t.Fatalf("the reference counts %v low, %v high, %v clamped; by hand %v, %v, %v", want.clipLow, want.clipHigh, want.clamped, c.wantLow, c.wantHigh, c.clamp)
				}
				if want.isMasked != c.wantISMasked || want.offPolicyMasked != c.wantOffPolicy || want.entropyMasked != c.wantEntropy {
					t.Fatalf("the reference masks %v (IS), %v (off-policy), %v (entropy) tokens; by hand %v, %v, %v",
						want.isMasked, want.offPolicyMasked, want.entropyMasked, c.wantISMasked, c.wantOffPolicy, c.wantEntropy)
				}

				a.RowWeight = rowWeights(a.Mask, b.B, b.T, c.seqMean, c.denom)
				st, err := m.t.LossBackward(b, a)
				must(t, err)
				defer func() { must(t, m.t.ZeroGrad()) }()
				if !closeRel(st.Loss, want.loss, prec.loss) {
					t.Errorf("loss %.9g, reference %.9g", st.Loss, want.loss)
				}
				if st.ClipLow != want.clipLow || st.ClipHigh != want.clipHigh || st.KLClamped != want.clamped || st.Tokens != tokens {
					t.Errorf("clipped low %v, high %v, KL clamped %v of %v tokens; want %v, %v, %v of %v",
						st.ClipLow, st.ClipHigh, st.KLClamped, st.Tokens, want.clipLow, want.clipHigh, want.clamped, tokens)
				}
				if c.pol.EntropyQuantile > 0 || c.pol.EntropyWeight != 0 {
					if !closeRel(st.EntropySum, want.entropy, prec.loss) {
						t.Errorf("entropy sum %.9g, reference %.9g", st.EntropySum, want.entropy)
					}
				}
				if st.ISMasked != want.isMasked || st.OffPolicyMasked != want.offPolicyMasked || st.EntropyMasked != want.entropyMasked {
					t.Errorf("masked %v (IS), %v (off-policy), %v (entropy) tokens; reference %v, %v, %v",
						st.ISMasked, st.OffPolicyMasked, st.EntropyMasked, want.isMasked, want.offPolicyMasked, want.entropyMasked)
				}
				for _, q := range []struct {
					name      string
					got, want float64
				}{{"ratio sum", st.RatioSum, want.ratio}, {"KL sum", st.KLSum, want.kl}, {"IS weight sum", st.ISSum, want.isw}} {
					if !closeRel(q.got, q.want, prec.loss) {
						t.Errorf("%s %.9g, reference %.9g", q.name, q.got, q.want)
					}
				}
				tol := prec.grad
				if c.bf16Grad > 0 && prec.firstPass {
					tol = c.bf16Grad
				}
				compareTensors(t, m, grad, true, tol, "gradient")
			})
		}
	}
}

// refStepSample is a Trainer sample, with the π_old/π_sampler weight that its sampler
// log-probs are made to give (0: IS off).
type refStepSample struct {
	seq       refSeq
	adv       float64
	isw       []float64
	truncated bool
}

// refStep plays Trainer.Step on the reference: π_old and π_ref are the policy before the
// first optimizer step, the batch is split in order into StepsPerGeneration parts of one
// optimizer step each (μ passes over them), the aggregation weights come from the DESIGN's
// definitions over each part, truncated completions train no token under
// MaskTruncatedCompletions, and AdamW (with bias correction, without weight decay) updates
// E, W and n after each optimizer step. The entropy mask's quantile is taken over each
// part whole: cases with it use one micro-batch.
func refStep(ref *tinyRef, samples []refStepSample, c TrainConfig) (passes []refSums, gradNorms []float64) {
	if c.WeightDecay != 0 || c.Schedule != ScheduleConstant || c.WarmupSteps != 0 || c.WarmupRatio != 0 {
		panic("refStep models a constant learning rate without weight decay")
	}
	seqs := make([]refSeq, len(samples))
	for i, s := range samples {
		seqs[i] = s.seq
	}
	lp0 := ref.logProbs(seqs, c.Temperature)
	terms := make([][]tokenTerms, len(samples))
	lens := make([]int, len(samples)) // trained tokens
	for i, s := range samples {
		for j, lp := range lp0[i] {
			tt := tokenTerms{old: lp, ref: lp, adv: s.adv}
			if c.ISCap > 0 {
				tt.sampler = lp - math.Log(s.isw[j])
			}
			terms[i] = append(terms[i], tt)
		}
		lens[i] = len(lp0[i])
		if c.MaskTruncatedCompletions && s.truncated {
			lens[i] = 0
		}
	}
	k := max(c.StepsPerGeneration, 1)
	type part struct {
		seqs   []refSeq
		terms  [][]tokenTerms
		weight func(i int) float64
		tokens int
	}
	var parts []part
	for j := range k {
		lo, hi := j*len(samples)/k, (j+1)*len(samples)/k
		n := hi - lo
		total, longest := 0, 0
		for i := lo; i < hi; i++ {
			total += lens[i]
			longest = max(longest, len(lp0[i]))
		}
		if c.MaxCompletionLen > 0 {
			longest = c.MaxCompletionLen
		}
		mb := c.MicroBatch
		if mb == 0 || mb > n {
			mb = n
		}
		nMB := (n + mb - 1) / mb
		// weight is the factor of sample lo+i's tokens
		weight := func(i int) float64 {
			switch c.aggregation() {
			case LossGRPO: // mean over the sequence's tokens, then over sequences
				return 1 / float64(lens[lo+i]*n)
			case LossBNPO: // token mean within the micro-batch, then mean over micro-batches
				first := i / mb * mb
				t := 0
				for q := first; q < min(first+mb, n); q++ {
					t += lens[lo+q]
				}
				return 1 / float64(t*nMB)
			case LossDAPO: // token mean over the part
				return 1 / float64(total)
			case LossDrGRPO: // sum / (sequences × max length)
				return 1 / float64(n*longest)
			case LossSeqSum: // sum over the sequence's tokens, mean over sequences
				return 1 / float64(n)
			}
			panic("unknown loss " + c.Loss)
		}
		// The truncated sequences train nothing: they are left out (weight keeps the index).
		p := part{tokens: total}
		var idx []int
		for i := lo; i < hi; i++ {
			if lens[i] > 0 {
				p.seqs, p.terms = append(p.seqs, seqs[i]), append(p.terms, terms[i])
				idx = append(idx, i-lo)
			}
		}
		p.weight = func(i int) float64 { return weight(idx[i]) }
		parts = append(parts, p)
	}
	s := lossSettings{epsLow: c.EpsLow, epsHigh: c.EpsHigh, beta: c.Beta, isCap: c.ISCap, pol: c.policyOpts()}
	var m1, m2 tinyRef
	step := 0
	for range c.Mu {
		for _, p := range parts {
			step++
			grad := &tinyRef{}
			sp := s
			if c.EntropyCoef != 0 {
				sp.pol.EntropyWeight = float32(c.EntropyCoef / float64(max(p.tokens, 1)))
			}
			sums := ref.lossGrad(p.seqs, p.terms, sp, c.Temperature, p.weight, grad)
			passes = append(passes, sums)
			sq := 0.0
			grad.each(func(_ string, g []*float64) {
				for _, x := range g {
					sq += *x * *x
				}
			})
			norm := math.Sqrt(sq)
			gradNorms = append(gradNorms, norm)
			clip := 1.0
			if c.MaxGradNorm > 0 && norm > c.MaxGradNorm {
				clip = c.MaxGradNorm / (norm + 1e-6)
			}
			bc1, bc2 := 1-math.Pow(c.Beta1, float64(step)), 1-math.Pow(c.Beta2, float64(step))
			var gs, ps, m1s, m2s [][]*float64
			grad.each(func(_ string, v []*float64) { gs = append(gs, v) })
			ref.each(func(_ string, v []*float64) { ps = append(ps, v) })
			m1.each(func(_ string, v []*float64) { m1s = append(m1s, v) })
			m2.each(func(_ string, v []*float64) { m2s = append(m2s, v) })
			for k := range gs {
				for i := range gs[k] {
					g := *gs[k][i] * clip
					*m1s[k][i] = c.Beta1**m1s[k][i] + (1-c.Beta1)*g
					*m2s[k][i] = c.Beta2**m2s[k][i] + (1-c.Beta2)*g*g
					*ps[k][i] -= *m1s[k][i] / (math.Sqrt(*m2s[k][i])/math.Sqrt(bc2) + c.AdamEps) * (c.LR / bc1)
				}
			}
		}
	}
	return passes, gradNorms
}

// TestStepAgainstReference runs Trainer.Step on the tiny model for each loss aggregation,
// with micro-batches, μ > 1 (π_old fixed at the policy before the first pass), the KL to
// the frozen initial weights, importance weights and gradient clipping, and checks each
// pass's loss and statistics and the weights after the step against the reference.
func TestStepAgainstReference(t *testing.T) {
	// 3 sequences of 4, 2 and 5 completion tokens: the aggregations all weigh them differently.
	samples := []refStepSample{
		{seq: refSeq{tokens: []int32{0, 1, 2, 3, 1}, promptLen: 1}, adv: 1, isw: []float64{0.7, 1.2, 2.5, 1}},
		{seq: refSeq{tokens: []int32{2, 1, 0, 3}, promptLen: 2}, adv: -0.5, isw: []float64{1.8, 0.4}},
		{seq: refSeq{tokens: []int32{3, 2, 2, 1, 0, 3}, promptLen: 1}, adv: 0.25, isw: []float64{1, 3, 0.9, 1.3, 0.5}},
	}
	base := TrainConfig{LR: 0.1, AdamEps: 0.1, Temperature: 0.9, EpsLow: 0.2, EpsHigh: 0.28}
	with := func(f func(c *TrainConfig)) TrainConfig {
		c := base
		f(&c)
		return c
	}
	cases := []struct {
		name string
		cfg  TrainConfig
		// wantClip: some pass of the reference clips (μ > 1 cases must reach the clip)
		wantClip  bool
		truncated int // 1 + the index of a sample that hit the length limit; 0: none
		// f32Only: a sequence-level IS weight exponentiates the sum of its tokens' log-prob
		// errors against the sampler's (float64 here), 5 × ~6e-3 in bf16: beyond bf16's
		// tolerance by construction, not by a fault.
		f32Only bool
	}{
		{name: "grpo", cfg: with(func(c *TrainConfig) { c.Loss = LossGRPO })},
		{name: "grpo, micro-batches of 1", cfg: with(func(c *TrainConfig) { c.Loss, c.MicroBatch = LossGRPO, 1 })},
		{name: "bnpo, micro-batches of 2", cfg: with(func(c *TrainConfig) { c.Loss, c.MicroBatch = LossBNPO, 2 })},
		{name: "bnpo, one batch", cfg: with(func(c *TrainConfig) { c.Loss = LossBNPO })},
		{name: "dapo, micro-batches of 2", cfg: with(func(c *TrainConfig) { c.Loss, c.MicroBatch = LossDAPO, 2 })},
		{name: "dr_grpo", cfg: with(func(c *TrainConfig) { c.Loss = LossDrGRPO })},
		{name: "dr_grpo, max length 8", cfg: with(func(c *TrainConfig) { c.Loss, c.MaxCompletionLen, c.MicroBatch = LossDrGRPO, 8, 1 })},
		{name: "grpo, μ = 3, KL, IS, grad clip, micro-batches", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.Mu, c.Beta, c.ISCap, c.MaxGradNorm, c.MicroBatch, c.EpsLow, c.EpsHigh = LossGRPO, 3, 0.1, 1.5, 0.3, 2, 0.03, 0.05
		})},
		{name: "dapo, μ = 2, KL", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.Mu, c.Beta, c.EpsLow, c.EpsHigh = LossDAPO, 2, 0.05, 0.03, 0.05
		})},
		// steps_per_generation: the parts [s0] and [s1, s2], one optimizer step each, π_old
		// the policy before the first; the second part's ratios have moved by then.
		{name: "grpo, 2 steps per generation, KL, IS", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.StepsPerGeneration, c.Beta, c.ISCap, c.EpsLow, c.EpsHigh = LossGRPO, 2, 0.05, 1.5, 0.03, 0.05
		})},
		{name: "bnpo, 3 steps per generation, μ = 2", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.StepsPerGeneration, c.Mu, c.EpsLow, c.EpsHigh = LossBNPO, 3, 2, 0.03, 0.05
		})},
		{name: "gspo, μ = 2, KL, micro-batches", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.ImportanceSamplingLevel, c.Mu, c.Beta, c.MicroBatch, c.EpsLow, c.EpsHigh = LossGRPO, LevelSequence, 2, 0.05, 2, 0.01, 0.02
		})},
		{name: "gspo, 2 steps per generation, two-sided clip", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.ImportanceSamplingLevel, c.StepsPerGeneration, c.Delta, c.EpsLow, c.EpsHigh = LossDAPO, LevelSequence, 2, 1.03, 0.01, 0.02
		})},
		{name: "cispo, 3 steps per generation, IS", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.StepsPerGeneration, c.ISCap, c.EpsHigh = LossCISPO, 3, 1.5, 1.02
		})},
		{name: "sapo, μ = 2, KL", cfg: with(func(c *TrainConfig) {
			c.Loss, c.Mu, c.Beta, c.SAPOTemperaturePos, c.SAPOTemperatureNeg = LossSAPO, 2, 0.05, 2, 3
		})},
		{name: "verl seq-mean-token-sum, sequence-mask IS, off-policy mask", f32Only: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.ISCap, c.ISMode, c.ISMin, c.OffPolicyMaskThreshold = "seq-mean-token-sum", 2, "sequence_mask", 0.5, 0.1
		})},
		{name: "verl token-mean, token-mask IS, μ = 2", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.ISCap, c.ISMode, c.ISMin, c.Mu, c.EpsLow, c.EpsHigh = "token-mean", 2, "token_mask", 0.45, 2, 0.03, 0.05
		})},
		{name: "top entropy 0.5, μ = 2", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.TopEntropyQuantile, c.Mu, c.EpsLow, c.EpsHigh = LossGRPO, 0.5, 2, 0.03, 0.05
		})},
		{name: "grpo, entropy bonus, μ = 2, KL", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.EntropyCoef, c.Mu, c.Beta, c.EpsLow, c.EpsHigh = LossGRPO, 0.2, 2, 0.05, 0.03, 0.05
		})},
		{name: "dapo, entropy bonus and top entropy 0.5, 2 steps per generation", wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.EntropyCoef, c.TopEntropyQuantile, c.StepsPerGeneration, c.EpsLow, c.EpsHigh = LossDAPO, 0.3, 0.5, 2, 0.03, 0.05
		})},
		{name: "grpo, truncated completion masked", truncated: 3, cfg: with(func(c *TrainConfig) {
			c.Loss, c.MaskTruncatedCompletions = LossGRPO, true
		})},
		{name: "dapo, truncated completion masked, 2 steps per generation", truncated: 2, wantClip: true, cfg: with(func(c *TrainConfig) {
			c.Loss, c.MaskTruncatedCompletions, c.StepsPerGeneration, c.MicroBatch = LossDAPO, true, 2, 1
		})},
		{name: "grpo, truncated completion kept", truncated: 3, cfg: with(func(c *TrainConfig) { c.Loss = LossGRPO })},
	}
	for _, prec := range lossPrecisions {
		for _, c := range cases {
			t.Run(prec.name+"/"+c.name, func(t *testing.T) {
				if c.f32Only && prec.firstPass {
					t.Skip("f32 only (see f32Only)")
				}
				ref := tinyInit()
				m, err := Load(writeTinyModel(t, ref), prec.opts)
				must(t, err)
				defer m.Close()
				tr, err := NewTrainer(m, c.cfg)
				must(t, err)
				defer tr.Close()
				cfg := tr.Config()

				seqs := make([]refSeq, len(samples))
				for i, s := range samples {
					seqs[i] = s.seq
				}
				lp0 := ref.logProbs(seqs, cfg.Temperature)
				var in []Sample
				samples := slices.Clone(samples)
				if c.truncated > 0 {
					samples[c.truncated-1].truncated = true
				}
				for i, s := range samples {
					smp := Sample{Prompt: s.seq.tokens[:s.seq.promptLen], Completion: s.seq.tokens[s.seq.promptLen:], Advantage: s.adv, Truncated: s.truncated}
					if cfg.ISCap > 0 {
						for j, lp := range lp0[i] {
							smp.SamplerLogProb = append(smp.SamplerLogProb, lp-math.Log(s.isw[j]))
						}
					}
					in = append(in, smp)
				}
				passes, norms := refStep(ref, samples, cfg)
				clipped := false
				for _, p := range passes {
					if p.nearEdge {
						t.Fatal("a token sits on a branch point of the loss: choose other values for the case")
					}
					clipped = clipped || p.clipLow+p.clipHigh > 0
				}
				if clipped != c.wantClip {
					t.Fatalf("the reference clips: %v, want %v (the case does not test what it says)", clipped, c.wantClip)
				}

				st, err := tr.Step(in)
				must(t, err)
				if len(st.Passes) != cfg.Mu*cfg.StepsPerGeneration {
					t.Fatalf("%d optimizer steps, want %d", len(st.Passes), cfg.Mu*cfg.StepsPerGeneration)
				}
				for k, p := range st.Passes {
					if k > 0 && prec.firstPass {
						break
					}
					w := passes[k]
					n := w.tokens
					for _, q := range []struct {
						name      string
						got, want float64
					}{
						{"loss", p.Loss, w.loss}, {"KL", p.KL, w.kl / n}, {"ratio", p.RatioMean, w.ratio / n},
						{"IS weight", p.ISMean, w.isw / n}, {"grad norm", p.GradNorm, norms[k]},
						{"clip low", p.ClipLow, w.clipLow / n}, {"clip high", p.ClipHigh, w.clipHigh / n},
						{"clip region", p.ClipRegion, (w.clipLow + w.clipHigh) / n},
					} {
						if !closeRel(q.got, q.want, prec.loss) {
							t.Errorf("pass %d: %s %.9g, reference %.9g", k, q.name, q.got, q.want)
						}
					}
					t.Logf("pass %d: loss %.6f ratio %.4f clip low %.3f high %.3f KL %.3g grad norm %.4f", k, p.Loss, p.RatioMean, p.ClipLow, p.ClipHigh, p.KL, p.GradNorm)
				}
				if moved := maxDiff(ref, tinyInit()); moved < 0.01 {
					t.Fatalf("the reference step moves no weight by more than %.3g: the case checks nothing", moved)
				}
				tol := prec.weights
				if prec.firstPass {
					if len(st.Passes) > 1 {
						return // later passes are another policy's (see firstPass)
					}
					// One AdamW step moves a weight by lr·g/(√v̂+ε) with √v̂ = |g| at step 1:
					// its derivative in g is at most lr/ε, so a gradient error δ moves the
					// weight by at most lr·δ/ε.
					tol = cfg.LR * prec.grad / cfg.AdamEps
				}
				compareTensors(t, m, ref, false, tol, fmt.Sprintf("after %d optimizer steps", len(st.Passes)))
			})
		}
	}
}
