package torch

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// bf16Round rounds x to bfloat16 (to nearest, ties to even), as c10::BFloat16 does.
func bf16Round(x float32) float32 {
	u := math.Float32bits(x)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// TestHeadLogProbs checks the fused output-layer log-softmax and its gradient against the
// same quantities worked in float64 from the definitions: lp = z_t/T − log Σ_j e^(z_j/T)
// and ∂(g·lp)/∂z_j = g (1[j = t] − p_j) / T. Vocabulary sizes cover a row shorter than the
// kernels' 16 lanes, rows with a remainder after them, and the default model's 49,152.
func TestHeadLogProbs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, V := range []int{1, 7, 16, 33, 49152 + 5} {
		for _, bf16 := range []bool{false, true} {
			t.Run(fmt.Sprintf("V=%d/bf16=%v", V, bf16), func(t *testing.T) {
				const n, temp = 5, float32(0.7)
				z := make([]float32, n*V)
				for i := range z {
					z[i] = float32(rng.NormFloat64() * 4)
				}
				z[3] = 60 // one large logit: the max shift matters
				tgt := make([]int64, n)
				g := make([]float32, n)
				for i := range tgt {
					tgt[i] = int64(rng.IntN(V))
					g[i] = float32(rng.NormFloat64())
				}
				tgt[0] = min(3, int64(V-1))
				lp, dz, err := HeadLogProbs(z, n, V, tgt, temp, bf16, g)
				if err != nil {
					t.Fatal(err)
				}
				// float32 sums in 16 lanes of V/16 terms each: relative error at most
				// (V/16 + 16)·2⁻²⁴ for the sum, which the log makes absolute; expf adds a
				// few ulp per term. The gradient is stored in the logits' type: 2⁻⁸ relative
				// in bfloat16, float32 rounding otherwise.
				lpTol := 4 * (float64(V)/16 + 16) * 0x1p-24
				dzRel := 1e-5
				if bf16 {
					dzRel = 0x1p-8
				}
				for i := 0; i < n; i++ {
					row := make([]float64, V)
					mx := math.Inf(-1)
					for j := range row {
						x := z[i*V+j]
						if bf16 {
							x = bf16Round(x)
						}
						row[j] = float64(x) / float64(temp)
						mx = math.Max(mx, row[j])
					}
					s := 0.0
					for _, r := range row {
						s += math.Exp(r - mx)
					}
					lse := mx + math.Log(s)
					want := row[tgt[i]] - lse
					if d := math.Abs(float64(lp[i]) - want); !(d <= lpTol*(1+math.Abs(want))) {
						t.Fatalf("row %d: log-prob %.9g, float64 %.9g (|Δ| %.3g > %.3g)", i, lp[i], want, d, lpTol*(1+math.Abs(want)))
					}
					for j, r := range row {
						p := math.Exp(r - lse)
						w := -float64(g[i]) * p / float64(temp)
						if int64(j) == tgt[i] {
							w += float64(g[i]) / float64(temp)
						}
						got := float64(dz[i*V+j])
						if d := math.Abs(got - w); !(d <= dzRel*math.Abs(w)+1e-6*math.Abs(float64(g[i]))/float64(temp)*p+1e-30) {
							t.Fatalf("row %d, logit %d: gradient %.9g, float64 %.9g", i, j, got, w)
						}
					}
				}
			})
		}
	}
}

func TestHeadLogProbsRefusesBadInput(t *testing.T) {
	if _, _, err := HeadLogProbs([]float32{1, 2}, 1, 2, []int64{2}, 1, false, []float32{1}); err == nil {
		t.Error("a target outside the vocabulary was accepted")
	}
	if _, _, err := HeadLogProbs([]float32{1, 2, 3}, 1, 2, []int64{0}, 1, false, []float32{1}); err == nil {
		t.Error("logits of the wrong size were accepted")
	}
}

// ReleaseFreeMemory hands the allocator's free memory back: what it holds free afterwards
// is no more than before (with tcmalloc, where freed matmul buffers stay in its page
// heap, much less).
func TestReleaseFreeMemory(t *testing.T) {
	if _, err := MatmulBench(1024, 2, 1, false); err != nil {
		t.Fatal(err)
	}
	before := AllocatorFreeBytes()
	ReleaseFreeMemory()
	if after := AllocatorFreeBytes(); after > before {
		t.Errorf("allocator free bytes %d after release, %d before", after, before)
	}
}
