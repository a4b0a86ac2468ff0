package train

import "github.com/rlif/rlif/internal/meminfo"

// The metrics.jsonl keys of each phase's peak memory (Metrics.Peak), in GiB: the
// resident-set high-water mark of the trainer process from the phase's start to its
// end: the models, the learner's state, the KV cache and, in learning, the activations
// (the reward plugins' processes are not in it).
const (
	PeakSampleKey = "memory/peak_sample_gib"
	PeakLearnKey  = "memory/peak_learn_gib"
	PeakSyncKey   = "memory/peak_sync_gib"
)

// phasePeak measures one phase's peak memory: call it at the phase's start, and the
// function it returns at the end. Where the kernel refuses to reset the mark, the peak
// is the process's so far, an upper bound.
func phasePeak() func() int64 {
	meminfo.ResetPeak()
	return func() int64 {
		n, err := meminfo.PeakRSS()
		if err != nil {
			return 0
		}
		return n
	}
}

func gib(bytes int64) float64 { return float64(bytes) / (1 << 30) }
