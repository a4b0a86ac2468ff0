package sampler

/*
#include "ggml-cpu.h"
*/
import "C"

// FastestPrecision is the weight precision this build samples groups fastest from, for the
// trainer's exports (sync.precision = "auto"): bf16 where ggml's CPU kernels were built
// with AVX-512 BF16 (its tiled GEMM multiplies bf16 natively there), f16 elsewhere, where
// ggml has no native bf16 product and f16's F16C/FMA kernels win. With layers offloaded to
// a GPU (gpuLayers != 0) it is f16, the type ggml's GPU backends are tuned for. Measured
// by BenchmarkSyncPrecision (README, "Speed").
func FastestPrecision(gpuLayers int) string {
	if gpuLayers == 0 && C.ggml_cpu_has_avx512_bf16() != 0 {
		return "bf16"
	}
	return "f16"
}
