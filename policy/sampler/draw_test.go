package sampler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/rlif/rlif/policy/rollout"
)

// wantProbs is the distribution the draw must follow, in float64: softmax(z/T) over the
// tokens min-p keeps (p >= minP * p_max under the raw logits), zero elsewhere.
func wantProbs(z []float32, temp, minP float64) []float64 {
	zmax := math.Inf(-1)
	for _, v := range z {
		zmax = math.Max(zmax, float64(v))
	}
	keep := math.Inf(-1)
	if minP > 0 {
		keep = zmax + math.Log(minP)
	}
	p := make([]float64, len(z))
	sum := 0.0
	for i, v := range z {
		if float64(v) >= keep {
			p[i] = math.Exp((float64(v) - zmax) / temp)
			sum += p[i]
		}
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// The draw is an inverse CDF: sweeping u evenly over [0, 1) must hit every token in
// exactly the share of u that its probability is (up to the grid's resolution), so this
// checks the distribution itself, with no sampling noise.
func TestDrawFollowsDistribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]float32, 1000)
	for i := range random {
		random[i] = float32(rng.NormFloat64() * 3)
	}
	cases := []struct {
		name       string
		z          []float32
		temp, minP float64
	}{
		{"small T=1", []float32{1, 2, 3, 0.5, -1, 2}, 1, 0},
		{"small T=0.5", []float32{1, 2, 3, 0.5, -1, 2}, 0.5, 0},
		{"small T=2 min-p 0.2", []float32{1, 2, 3, 0.5, -1, 2}, 2, 0.2},
		{"peaked T=0.9", []float32{20, 0, 0, 0, 19, -5}, 0.9, 0},
		{"1000 tokens T=0.9", random, 0.9, 0},
		{"1000 tokens T=1.3 min-p 0.05", random, 1.3, 0.05},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20000
			counts := make([]int, len(tc.z))
			for k := 0; k < n; k++ {
				u := (float64(k) + 0.5) / n
				tok, st := drawToken(tc.z, tc.temp, tc.minP, u)
				counts[tok]++
				if k%997 == 0 {
					// The statistics are those of the drawn token, as rlif_token_stats gives.
					want := tokenStats(tc.z, tok, tc.temp)
					checkStats(t, "draw", st, want, 1e-12)
					checkStats(t, "draw vs float64", st, refStats(tc.z, tok, tc.temp), 1e-6)
				}
			}
			p := wantProbs(tc.z, tc.temp, tc.minP)
			for j := range p {
				got := float64(counts[j]) / n
				if math.Abs(got-p[j]) > 2.0/n+1e-6 {
					t.Errorf("token %d drawn for %.5f of u, want probability %.5f", j, got, p[j])
				}
				if p[j] == 0 && counts[j] > 0 {
					t.Errorf("token %d is cut by min-p but was drawn %d times", j, counts[j])
				}
			}
		})
	}
}

func TestDrawEdges(t *testing.T) {
	z := []float32{0, 5, 1, 5, -2}
	// Greedy takes the first of tied maxima, whatever u is, and reports T = 1 statistics.
	for _, u := range []float64{0, 0.5, 0.999} {
		if tok, st := drawToken(z, 0, 0, u); tok != 1 {
			t.Errorf("greedy with u=%g drew %d, want 1 (first argmax)", u, tok)
		} else {
			checkStats(t, "greedy", st, refStats(z, 1, 1), 1e-6)
		}
	}
	// u at the very ends of [0, 1) stays inside the kept tokens.
	if tok, _ := drawToken(z, 1, 0, 0); tok != 0 {
		t.Errorf("u=0 drew %d, want the first token", tok)
	}
	if tok, _ := drawToken(z, 1, 0.5, math.Nextafter(1, 0)); tok != 3 {
		t.Errorf("u→1 with min-p 0.5 drew %d, want the last kept token 3", tok)
	}
	// A token with probability that underflows to 0 in float32 is never drawn.
	far := []float32{0, -200, 0}
	for k := 0; k < 1000; k++ {
		if tok, _ := drawToken(far, 1, 0, float64(k)/1000); tok == 1 {
			t.Fatalf("u=%g drew a token of probability e^-200", float64(k)/1000)
		}
	}
}

func TestSplitmixUniform(t *testing.T) {
	r := splitmix64(42)
	const n = 100000
	var bins [10]int
	for i := 0; i < n; i++ {
		u := r.float64()
		if u < 0 || u >= 1 {
			t.Fatalf("draw %d: %g outside [0, 1)", i, u)
		}
		bins[int(u*10)]++
	}
	// Chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile.
	chi := 0.0
	for _, c := range bins {
		d := float64(c) - n/10
		chi += d * d / (n / 10)
	}
	if chi > 27.9 {
		t.Fatalf("chi-square %.1f over 10 bins: not uniform (%v)", chi, bins)
	}
}

// drawnProbs is, in float64, the distribution a token is drawn from under p: llama.cpp's
// chain order (top-k, then top-p over the kept tokens' softmax at T = 1, then min-p, all
// on the raw logits), then softmax(z/T) renormalized over what is kept; zero elsewhere.
// Greedy puts all the mass on the first argmax.
func drawnProbs(z []float32, p Params) []float64 {
	order := make([]int, len(z))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return z[order[a]] > z[order[b]] })
	probs := make([]float64, len(z))
	if p.Temperature <= 0 {
		probs[order[0]] = 1
		return probs
	}
	kept := order
	if p.TopK > 0 && p.TopK < len(kept) {
		kept = kept[:p.TopK]
	}
	zmax := float64(z[kept[0]])
	if p.TopP > 0 && p.TopP < 1 {
		sum := 0.0
		for _, i := range kept {
			sum += math.Exp(float64(z[i]) - zmax)
		}
		cum := 0.0
		for k, i := range kept {
			cum += math.Exp(float64(z[i])-zmax) / sum
			if cum >= p.TopP {
				kept = kept[:k+1]
				break
			}
		}
	}
	if p.MinP > 0 {
		from := zmax + math.Log(p.MinP)
		k := 1
		for k < len(kept) && float64(z[kept[k]]) >= from {
			k++
		}
		kept = kept[:k]
	}
	sum := 0.0
	for _, i := range kept {
		probs[i] = math.Exp((float64(z[i]) - zmax) / p.Temperature)
		sum += probs[i]
	}
	for _, i := range kept {
		probs[i] /= sum
	}
	return probs
}

// truncates reports whether p cuts the distribution (top-k, top-p or min-p on, or greedy).
func truncates(p Params) bool {
	return p.Temperature <= 0 || p.TopK > 0 || (p.TopP > 0 && p.TopP < 1) || p.MinP > 0
}

// checkSampledLogProb checks the statistics of token tok drawn under p from logits z: its
// SampledLogProb is the log of its probability in the truncated, renormalized
// distribution (float64 reference), LogProb stays the untruncated one, and the two are
// the same number when nothing truncates. It reports whether truncation moved the value.
func checkSampledLogProb(t *testing.T, what string, z []float32, tok int32, st rollout.TokenStats, p Params, tol float64) bool {
	t.Helper()
	want := drawnProbs(z, p)
	if want[tok] == 0 {
		t.Errorf("%s: drew token %d, which %+v cuts", what, tok, p)
		return false
	}
	lw := math.Log(want[tok])
	if d := math.Abs(st.SampledLogProb - lw); !(d <= tol*math.Max(1, math.Abs(lw))) {
		t.Errorf("%s: token %d sampled_logprob %.9g, float64 reference %.9g (|Δ| %.3g)", what, tok, st.SampledLogProb, lw, d)
	}
	if ref := refStats(z, tok, p.Temperature).LogProb; math.Abs(st.LogProb-ref) > tol*math.Max(1, math.Abs(ref)) {
		t.Errorf("%s: token %d logprob %.9g, untruncated float64 reference %.9g", what, tok, st.LogProb, ref)
	}
	if !truncates(p) && st.SampledLogProb != st.LogProb {
		t.Errorf("%s: no truncation, but sampled_logprob %.17g != logprob %.17g", what, st.SampledLogProb, st.LogProb)
	}
	return st.SampledLogProb-st.LogProb > 1e-3
}

// The sampled log-prob is that of the distribution the token was drawn from, in both
// draws: rlif's own (temperature, min-p, greedy) and llama.cpp's chain (top-k, top-p).
func TestSampledLogProb(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]float32, 1000)
	for i := range random {
		random[i] = float32(rng.NormFloat64() * 3)
	}
	small := []float32{1, 2, 3, 0.5, -1, 2.5}
	cases := []struct {
		name  string
		z     []float32
		p     Params
		chain bool
	}{
		{"T=0.9", random, Params{Temperature: 0.9}, false},
		{"T=1", small, Params{Temperature: 1}, false},
		{"greedy", small, Params{}, false},
		{"T=0.9 min-p 0.05", random, Params{Temperature: 0.9, MinP: 0.05}, false},
		{"T=1 min-p 0.3", small, Params{Temperature: 1, MinP: 0.3}, false},
		{"T=0.9 top-k 40", random, Params{Temperature: 0.9, TopK: 40}, true},
		{"T=1.3 top-p 0.9", random, Params{Temperature: 1.3, TopP: 0.9}, true},
		{"T=0.7 top-k 3", small, Params{Temperature: 0.7, TopK: 3}, true},
		{"T=0.7 top-k 100 top-p 0.95 min-p 0.02", random, Params{Temperature: 0.7, TopK: 100, TopP: 0.95, MinP: 0.02}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chain != (&Model{}).usesChain(tc.p) {
				t.Fatalf("%+v: chain %v, but sampling would use the other draw", tc.p, tc.chain)
			}
			moved := 0
			for k := 0; k < 300; k++ {
				var tok int32
				var st rollout.TokenStats
				if tc.chain {
					tok, st = chainDraw(tc.z, tc.p, uint32(k))
				} else {
					tok, st = drawToken(tc.z, tc.p.Temperature, tc.p.MinP, (float64(k)+0.5)/300)
				}
				if checkSampledLogProb(t, fmt.Sprintf("draw %d", k), tc.z, tok, st, tc.p, 1e-6) {
					moved++
				}
			}
			// Where the truncation cuts mass, it must show in the recorded value.
			if truncates(tc.p) && moved == 0 {
				t.Errorf("%+v truncates, but no draw's sampled_logprob differs from its logprob", tc.p)
			}
		})
	}
}
