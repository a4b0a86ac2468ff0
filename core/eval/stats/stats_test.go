package stats

import (
	"errors"
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// Hand-computed Wilson intervals: with p = s/n and z = 1.959964,
// center = (p + z²/2n)/(1 + z²/n), half = z·√(p(1−p)/n + z²/4n²)/(1 + z²/n).
func TestWilson(t *testing.T) {
	tests := []struct {
		name   string
		s, n   int
		lo, hi float64
	}{
		// p = 0.4, z²/n = 0.1920730: center 0.4960365/1.1920730 = 0.4161125,
		// half 1.959964·√(0.012 + 0.0024009)/1.1920730 = 0.1973060.
		{"8 of 20", 8, 20, 0.2188065, 0.6134185},
		// p = 0: lo = 0, hi = (z²/n)/(1 + z²/n) = 0.384146/1.384146.
		{"0 of 10", 0, 10, 0, 0.2775328},
		// symmetric to the case above
		{"10 of 10", 10, 10, 0.7224672, 1},
		// p = 0.5, n = 100: center 0.5, half 1.959964·√(0.0025 + 0.0000960)/1.0384146 = 0.0961685.
		{"50 of 100", 50, 100, 0.4038315, 0.5961685},
		{"no trials", 0, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := Wilson(tt.s, tt.n, Z95)
			if !near(lo, tt.lo, 1e-7) || !near(hi, tt.hi, 1e-7) {
				t.Errorf("Wilson(%d, %d) = [%.7f, %.7f], want [%.7f, %.7f]", tt.s, tt.n, lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

// Hand-computed pass@k = 1 − C(n−c, k)/C(n, k).
func TestPassAtK(t *testing.T) {
	tests := []struct {
		name    string
		n, c, k int
		want    float64
	}{
		{"k=1 is the fraction correct", 10, 3, 1, 0.3},
		{"1 - C(7,5)/C(10,5) = 1 - 21/252", 10, 3, 5, 1 - 21.0/252},
		{"1 - C(6,2)/C(8,2) = 1 - 15/28", 8, 2, 2, 1 - 15.0/28},
		{"none correct", 16, 0, 4, 0},
		{"all correct", 4, 4, 4, 1},
		{"fewer wrong than k", 10, 8, 3, 1},
		{"k = n with one correct", 5, 1, 5, 1},
		// C(199,100)/C(200,100) = 100/200: binomials of this size overflow float64
		// factorials; the product form does not.
		{"large n: 1 - C(199,100)/C(200,100)", 200, 1, 100, 0.5},
		// C(998,500)/C(1000,500) = (500·499)/(1000·999)
		{"large n, two correct", 1000, 2, 500, 1 - (500.0*499)/(1000*999)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PassAtK(tt.n, tt.c, tt.k)
			if err != nil {
				t.Fatal(err)
			}
			if !near(got, tt.want, 1e-12) {
				t.Errorf("PassAtK(%d, %d, %d) = %.15f, want %.15f", tt.n, tt.c, tt.k, got, tt.want)
			}
		})
	}
}

func TestPassAtKRejectsBadArguments(t *testing.T) {
	for _, a := range [][3]int{{0, 0, 1}, {5, 6, 1}, {5, -1, 1}, {5, 2, 0}, {5, 2, 6}} {
		if _, err := PassAtK(a[0], a[1], a[2]); err == nil {
			t.Errorf("PassAtK(%d, %d, %d): want an error", a[0], a[1], a[2])
		}
	}
}

// Published worked examples of the Mann–Whitney U test by the normal approximation.
func TestMannWhitneyU(t *testing.T) {
	tests := []struct {
		name       string
		source     string
		x, y       []float64
		continuity bool
		u, p       float64
		ptol       float64
	}{
		{
			// scipy.stats.mannwhitneyu documentation, Examples (ages at diagnosis of type
			// II diabetes, from Conover via Wikipedia): U1 = 17 and, with
			// method="asymptotic" (continuity-corrected, no ties), p = 0.11134688653314041.
			name:       "scipy docs, males vs females",
			source:     "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.mannwhitneyu.html",
			x:          []float64{19, 22, 16, 29, 24},
			y:          []float64{20, 11, 17, 12},
			continuity: true,
			u:          17, p: 0.11134688653314041, ptol: 1e-12,
		},
		{
			// STHDA, "Unpaired Two-Samples Wilcoxon Test in R": wilcox.test(women, men)
			// prints W = 15, p-value = 0.02712 with "cannot compute exact p-value with
			// ties" (63.4 and 73.3 appear in both samples), i.e. the normal approximation
			// with the tie-corrected variance and the continuity correction.
			name:       "STHDA wilcox.test with ties",
			source:     "http://www.sthda.com/english/wiki/unpaired-two-samples-wilcoxon-test-in-r",
			x:          []float64{38.9, 61.2, 73.3, 21.8, 63.4, 64.6, 48.4, 48.8, 48.5},
			y:          []float64{67.8, 60, 63.4, 76, 89.4, 73.3, 67.3, 61.3, 62.4},
			continuity: true,
			u:          15, p: 0.02712, ptol: 5e-6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MannWhitneyU(tt.x, tt.y, tt.continuity)
			if err != nil {
				t.Fatal(err)
			}
			if got.U != tt.u || !near(got.P, tt.p, tt.ptol) {
				t.Errorf("U = %g, p = %.12f; want U = %g, p = %.12f (%s)", got.U, got.P, tt.u, tt.p, tt.source)
			}
			// The test is symmetric: swapping the samples gives U2 and the same p.
			sw, err := MannWhitneyU(tt.y, tt.x, tt.continuity)
			if err != nil {
				t.Fatal(err)
			}
			if sw.U != float64(len(tt.x)*len(tt.y))-got.U || !near(sw.P, got.P, 1e-15) || !near(sw.R, -got.R, 1e-15) {
				t.Errorf("swapped: U = %g, p = %g, r = %g; want U = %g, p = %g, r = %g", sw.U, sw.P, sw.R, float64(len(tt.x)*len(tt.y))-got.U, got.P, -got.R)
			}
			if want := got.Z / math.Sqrt(float64(len(tt.x)+len(tt.y))); !near(got.R, want, 1e-15) {
				t.Errorf("r = %g, want Z/sqrt(N) = %g", got.R, want)
			}
		})
	}
}

// The tie correction by hand: x = {1, 2, 2}, y = {2, 3}. Ranks: 1→1, the three 2s→3,
// 3→5. R1 = 1+3+3 = 7, U = 7 − 6 = 1, mean 3, Σ(t³−t) = 24, N = 5,
// variance = 6/12·(6 − 24/20) = 2.4, Z = (1 − 3)/√2.4 without continuity correction,
// and (1 − 3 + 0.5)/√2.4 with it.
func TestMannWhitneyTieCorrection(t *testing.T) {
	x, y := []float64{1, 2, 2}, []float64{2, 3}
	for _, tt := range []struct {
		continuity bool
		z          float64
	}{{false, -2 / math.Sqrt(2.4)}, {true, -1.5 / math.Sqrt(2.4)}} {
		got, err := MannWhitneyU(x, y, tt.continuity)
		if err != nil {
			t.Fatal(err)
		}
		wantP := math.Erfc(math.Abs(tt.z) / math.Sqrt2)
		if got.U != 1 || !near(got.Z, tt.z, 1e-12) || !near(got.P, wantP, 1e-12) || !near(got.AUC, 1.0/6, 1e-15) {
			t.Errorf("continuity %v: U = %g, Z = %g, p = %g, AUC = %g; want 1, %g, %g, 1/6", tt.continuity, got.U, got.Z, got.P, got.AUC, tt.z, wantP)
		}
	}
}

func TestMannWhitneyEdgeCases(t *testing.T) {
	if _, err := MannWhitneyU(nil, []float64{1}, true); !errors.Is(err, ErrTooFew) {
		t.Errorf("empty x: err = %v, want ErrTooFew", err)
	}
	if _, err := MannWhitneyU([]float64{math.NaN()}, []float64{1}, true); err == nil {
		t.Error("NaN: want an error")
	}
	got, err := MannWhitneyU([]float64{2, 2}, []float64{2, 2, 2}, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.U != 3 || got.Z != 0 || got.P != 1 {
		t.Errorf("all tied: U = %g, Z = %g, p = %g; want 3, 0, 1", got.U, got.Z, got.P)
	}
	// Complete separation in a large sample: p is tiny but not 0, r close to its bound.
	x, y := make([]float64, 100), make([]float64, 100)
	for i := range x {
		x[i], y[i] = float64(100+i), float64(i)
	}
	got, err = MannWhitneyU(x, y, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.U != 10000 || got.AUC != 1 || !(got.P > 0 && got.P < 1e-30) || !(got.R > 0.86 && got.R < 0.87) {
		t.Errorf("separated: U = %g, AUC = %g, p = %g, r = %g", got.U, got.AUC, got.P, got.R)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}}
	for _, tt := range tests {
		if got := Median(tt.xs); got != tt.want {
			t.Errorf("Median(%v) = %g, want %g", tt.xs, got, tt.want)
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("empty: want NaN")
	}
}

func TestMcNemarExact(t *testing.T) {
	for _, tc := range []struct {
		b, c int
		want float64
		src  string
	}{
		// binom.test(2, 10) in R: 0.1094; by hand 2·(1+10+45)/1024.
		{2, 8, 112.0 / 1024, "R binom.test(2, 10)"},
		{8, 2, 112.0 / 1024, "symmetric"},
		// binom.test(1, 13): 2·(1+13)/8192.
		{1, 12, 28.0 / 8192, "R binom.test(1, 13)"},
		// binom.test(7, 20) in R: 0.2632; by hand 2·137980/2^20.
		{7, 13, 2 * 137980.0 / 1048576, "R binom.test(7, 20)"},
		{5, 5, 1, "equal counts: capped at 1"},
		{0, 0, 1, "no discordant items"},
		{0, 1000, 2 * math.Pow(2, -1000), "large n does not overflow"},
	} {
		got, err := McNemarExact(tc.b, tc.c)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got-tc.want) > 1e-12*math.Max(tc.want, 1e-300) && math.Abs(got-tc.want) > 1e-300 {
			t.Errorf("McNemarExact(%d, %d) = %.10g, want %.10g (%s)", tc.b, tc.c, got, tc.want, tc.src)
		}
	}
	if _, err := McNemarExact(-1, 3); err == nil {
		t.Error("negative count: no error")
	}
}
