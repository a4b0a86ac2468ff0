// Package stats holds the statistics of an evaluation: the Wilson score interval of an
// accuracy, the unbiased pass@k estimator, and the Mann–Whitney U test with its effect
// size. It is pure Go and depends on nothing else of rlif.
package stats

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Z95 is the two-sided 95% quantile of the standard normal distribution, Φ⁻¹(0.975).
const Z95 = 1.959963984540054

// Wilson returns the Wilson score interval of a binomial proportion with the given
// number of successes out of n trials, at the normal quantile z (Z95 for 95%). The
// interval stays inside [0, 1] and is not degenerate at 0 or n successes, unlike the
// Wald interval. With n = 0 it returns [0, 1].
func Wilson(successes, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	nf := float64(n)
	p := float64(successes) / nf
	z2 := z * z
	denom := 1 + z2/nf
	center := (p + z2/(2*nf)) / denom
	half := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / denom
	lo, hi = math.Max(0, center-half), math.Min(1, center+half)
	// Exact ends: the formula gives them up to rounding.
	if successes <= 0 {
		lo = 0
	}
	if successes >= n {
		hi = 1
	}
	return lo, hi
}

// PassAtK is the unbiased estimator of pass@k (Chen et al. 2021, "Evaluating Large
// Language Models Trained on Code", eq. 1) from n samples of which c are correct:
// 1 − C(n−c, k)/C(n, k). The ratio of binomials is computed as the product
// Π_{i=n−c+1}^{n} (1 − k/i), which neither overflows nor cancels for large n.
func PassAtK(n, c, k int) (float64, error) {
	switch {
	case n < 1:
		return 0, fmt.Errorf("pass@k: need at least one sample, got n = %d", n)
	case c < 0 || c > n:
		return 0, fmt.Errorf("pass@k: correct count %d out of range [0, %d]", c, n)
	case k < 1 || k > n:
		return 0, fmt.Errorf("pass@k: k = %d out of range [1, %d]", k, n)
	}
	if n-c < k {
		return 1, nil // every draw of k samples holds a correct one
	}
	miss := 1.0
	for i := n - c + 1; i <= n; i++ {
		miss *= 1 - float64(k)/float64(i)
	}
	return 1 - miss, nil
}

// MannWhitney is the result of a two-sided Mann–Whitney U test of samples x and y by
// the normal approximation.
type MannWhitney struct {
	N1 int `json:"n1"` // size of x
	N2 int `json:"n2"` // size of y
	// U is the statistic of x: the number of pairs (xi, yj) with xi > yj, ties counting
	// one half; U2 = N1·N2 − U is the statistic of y.
	U float64 `json:"u"`
	// Z is the standardized U (with the tie-corrected variance, and the continuity
	// correction when asked for); positive when x tends to be larger than y.
	Z float64 `json:"z"`
	// P is the two-sided p-value 2·(1 − Φ(|Z|)).
	P float64 `json:"p"`
	// R is the effect size Z/√(N1+N2) (Rosenthal 1991), signed like Z.
	R float64 `json:"r"`
	// AUC is U/(N1·N2): the probability that a random x exceeds a random y (ties half),
	// the area under the ROC curve of x versus y.
	AUC float64 `json:"auc"`
	// Continuity reports whether the continuity correction was applied.
	Continuity bool `json:"continuity"`
}

// ErrTooFew is returned by MannWhitneyU when a sample is empty.
var ErrTooFew = errors.New("mann-whitney: each sample needs at least one value")

// MannWhitneyU runs the two-sided Mann–Whitney U test of x against y with the normal
// approximation: mean N1·N2/2 and variance N1·N2/12·((N+1) − Σ(t³−t)/(N(N−1))), the
// sum over groups of t tied values. With continuity, |U − mean| is reduced by 1/2
// before dividing (scipy.stats.mannwhitneyu's and R's wilcox.test default for the
// asymptotic method): U moves in steps of 1/2, and the correction makes the normal tail
// a better match of the discrete one in small samples; in large samples it makes no
// difference. When every value is tied the variance is 0: Z is 0 and P is 1.
func MannWhitneyU(x, y []float64, continuity bool) (MannWhitney, error) {
	n1, n2 := len(x), len(y)
	if n1 == 0 || n2 == 0 {
		return MannWhitney{}, ErrTooFew
	}
	type obs struct {
		v     float64
		fromX bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range x {
		if math.IsNaN(v) {
			return MannWhitney{}, errors.New("mann-whitney: x holds NaN")
		}
		all = append(all, obs{v, true})
	}
	for _, v := range y {
		if math.IsNaN(v) {
			return MannWhitney{}, errors.New("mann-whitney: y holds NaN")
		}
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })

	// Midranks, and the tie term Σ(t³ − t).
	rankSumX, ties := 0.0, 0.0
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		mid := float64(i+j+1) / 2 // ranks i+1 … j, averaged
		for k := i; k < j; k++ {
			if all[k].fromX {
				rankSumX += mid
			}
		}
		t := float64(j - i)
		ties += t*t*t - t
		i = j
	}
	f1, f2 := float64(n1), float64(n2)
	n := f1 + f2
	u := rankSumX - f1*(f1+1)/2
	res := MannWhitney{N1: n1, N2: n2, U: u, AUC: u / (f1 * f2), P: 1, Continuity: continuity}
	mean := f1 * f2 / 2
	variance := f1 * f2 / 12 * ((n + 1) - ties/(n*(n-1)))
	if n < 2 || variance <= 0 {
		return res, nil
	}
	d := u - mean
	if continuity {
		if a := math.Abs(d) - 0.5; a > 0 {
			d = math.Copysign(a, d)
		} else {
			d = 0
		}
	}
	res.Z = d / math.Sqrt(variance)
	res.P = math.Min(1, math.Erfc(math.Abs(res.Z)/math.Sqrt2))
	res.R = res.Z / math.Sqrt(n)
	return res, nil
}

// Median returns the median of xs (the mean of the two middle values for an even
// count), or NaN for an empty slice. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// McNemarExact is the two-sided exact McNemar test of two classifiers scored on the same
// items: of the discordant items, b are right only under the first and c only under the
// second. Under the null hypothesis (equal accuracy) b is Binomial(b+c, ½), so the p-value
// is 2·P(X ≤ min(b, c)), capped at 1 (R: binom.test(b, b + c)). It is the test to use for
// two evaluations of one item set, where the unpaired Wilson intervals overlap long before
// a difference stops being significant. With no discordant items it returns 1.
func McNemarExact(b, c int) (float64, error) {
	if b < 0 || c < 0 {
		return 0, fmt.Errorf("McNemar: negative counts %d, %d", b, c)
	}
	n, k := b+c, min(b, c)
	if n == 0 {
		return 1, nil
	}
	// Σ_{i ≤ k} C(n, i) / 2ⁿ, each term in log space so that large n neither overflows
	// nor underflows before the sum.
	lgN, _ := math.Lgamma(float64(n + 1))
	tail := 0.0
	for i := 0; i <= k; i++ {
		lgI, _ := math.Lgamma(float64(i + 1))
		lgNI, _ := math.Lgamma(float64(n - i + 1))
		tail += math.Exp(lgN - lgI - lgNI - float64(n)*math.Ln2)
	}
	return math.Min(1, 2*tail), nil
}
