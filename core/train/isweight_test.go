package train

import (
	"context"
	"math"
	"path/filepath"
	"testing"
)

// With top-k or min-p, the truncated importance weight min(π_old/π_sampler, C) divides by
// the probability in the truncated, renormalized distribution each token was drawn from.
// On the f32 stories model, synced at f32 and learned in f32, the learner's π_old equals
// the sampler's untruncated probability to float32 rounding, so the step's mean weight must be the mean of
// min(exp(LogProb - SampledLogProb), C) over the step's tokens (with the pre-truncation
// log-prob it would be 1).
func TestISWeightUsesSampledDistribution(t *testing.T) {
	for _, tc := range []struct {
		name string
		topK int
		minP float64
	}{{"min-p", 0, 0.3}, {"top-k", 4, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			cfg := storiesRun(t, out, 1)
			cfg.Sampling.TopK, cfg.Sampling.MinP = tc.topK, tc.minP
			cfg.Learner.Precision, cfg.Sync.Precision = "f32", "f32"
			if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
				t.Fatal(err)
			}
			got := readMetrics(t, filepath.Join(out, "metrics.jsonl"))[0]["is_weight/mean"]
			_, comps := resampleStep1(t, cfg)
			sum, n := 0.0, 0
			for _, c := range comps {
				for k := range c.Tokens {
					sum += math.Min(math.Exp(c.LogProb[k]-c.SampledLogProb[k]), cfg.Learner.ISCap)
					n++
				}
			}
			want := sum / float64(n)
			if want > 0.99 {
				t.Fatalf("mean weight %.4f: the truncation cut too little for the test to tell", want)
			}
			t.Logf("is_weight/mean %.6f, expected %.6f", got, want)
			if math.Abs(got-want) > 1e-3 {
				t.Fatalf("is_weight/mean %.6f, want %.6f (the weight of the truncated distribution)", got, want)
			}
		})
	}
}
