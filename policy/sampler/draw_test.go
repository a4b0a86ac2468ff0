package sampler

import (
	"math"
	"math/rand/v2"
	"testing"
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
