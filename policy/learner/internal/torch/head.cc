// The output layer's log-softmax, fused: log p(target) from a chunk of logits in one
// read of them, and its gradient with respect to the logits in one more. Composed from
// ATen ops, the same work walks the [rows, V] logits about ten times (a float32 copy, the
// temperature, logsumexp's max, shift, exp and sum, and in the backward its exp again,
// the gather's scatter and the casts); at V = 49k those walks cost more than the output
// layer's matmuls on a CPU. Everything here computes in float32 whatever the logits'
// type: the maximum shift, the exponentials and the sums.
#include "shim_internal.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <cstring>

// On glibc x86-64, expf has vector variants in libmvec: this declaration lets the compiler
// call them from the lane loops below (with -fopenmp-simd), 16 exps per call.
#if defined(__GLIBC__) && defined(__x86_64__)
#pragma omp declare simd notinbranch
extern "C" float expf(float) noexcept;
#define RLIF_SIMD _Pragma("omp simd")
#else
#define RLIF_SIMD
#endif

namespace {

constexpr int kLanes = 16;

inline float load(const float* p, int64_t j) { return p[j]; }
inline float load(const uint16_t* p, int64_t j) {
	const uint32_t u = uint32_t(p[j]) << 16;  // bfloat16 is the top half of a float32
	float f;
	std::memcpy(&f, &u, sizeof f);
	return f;
}
inline void store(float* p, int64_t j, float v) { p[j] = v; }
inline void store(uint16_t* p, int64_t j, float v) {
	uint32_t u;
	std::memcpy(&u, &v, sizeof u);
	if (v != v) u = 0x7fc00000;      // a quiet NaN stays one
	else u += 0x7fff + ((u >> 16) & 1);  // round to nearest even, as c10::BFloat16 does
	p[j] = uint16_t(u >> 16);
}

// row_lse is logsumexp_j(z_j / T) of one row of n logits.
template <typename E>
float row_lse(const E* z, int64_t n, float temperature) {
	float mx = -INFINITY;
	for (int64_t j = 0; j < n; j++) mx = std::fmax(mx, load(z, j));
	if (std::isinf(mx)) return mx;
	const float m = mx / temperature;
	float lane[kLanes] = {0};
	int64_t j = 0;
	for (; j + kLanes <= n; j += kLanes) {
		RLIF_SIMD
		for (int k = 0; k < kLanes; k++) lane[k] += expf(load(z, j + k) / temperature - m);
	}
	float s = 0;
	for (; j < n; j++) s += expf(load(z, j) / temperature - m);
	for (int k = 0; k < kLanes; k++) s += lane[k];
	return m + std::log(s);
}

// row_grad writes dz_j = g (1[j = t] − e^(z_j/T − lse)) / T for one row.
template <typename E>
void row_grad(const E* z, E* dz, int64_t n, int64_t t, float lse, float g, float temperature) {
	const float c = -g / temperature;
	int64_t j = 0;
	for (; j + kLanes <= n; j += kLanes) {
		float e[kLanes];
		RLIF_SIMD
		for (int k = 0; k < kLanes; k++) e[k] = c * expf(load(z, j + k) / temperature - lse);
		for (int k = 0; k < kLanes; k++) store(dz, j + k, e[k]);
	}
	for (; j < n; j++) store(dz, j, c * expf(load(z, j) / temperature - lse));
	store(dz, t, g / temperature * (1 - expf(load(z, t) / temperature - lse)));
}

template <typename E>
const E* rows_of(const at::Tensor& z) {
	return reinterpret_cast<const E*>(z.data_ptr());
}

void check_logits(const at::Tensor& z, const at::Tensor& tgt) {
	if (z.dim() != 2 || !z.is_contiguous() || !z.device().is_cpu())
		rlif::fail("fused head: logits must be a contiguous CPU [rows, V] tensor");
	if (z.scalar_type() != at::kFloat && z.scalar_type() != at::kBFloat16)
		rlif::fail("fused head: logits must be float32 or bfloat16");
	if (tgt.dim() != 1 || tgt.size(0) != z.size(0) || tgt.scalar_type() != at::kLong)
		rlif::fail("fused head: one int64 target per row");
}

}  // namespace

namespace rlif {

std::pair<at::Tensor, at::Tensor> fused_target_logprobs(const at::Tensor& z, const at::Tensor& tgt, double temperature) {
	if (!z.device().is_cpu()) {  // a GPU's kernels make the same passes cheaply: ATen ops
		at::Tensor zt = z.to(at::kFloat) / temperature, lse = at::logsumexp(zt, -1);
		return {zt.gather(1, tgt.unsqueeze(1)).squeeze(1) - lse, lse};
	}
	check_logits(z, tgt);
	const int64_t N = z.size(0), V = z.size(1);
	at::Tensor t = tgt.contiguous();
	at::Tensor lp = at::empty({N}, z.options().dtype(at::kFloat)), lse = at::empty({N}, z.options().dtype(at::kFloat));
	const int64_t* tp = t.data_ptr<int64_t>();
	float *lpp = lp.data_ptr<float>(), *lsep = lse.data_ptr<float>();
	const float T = float(temperature);
	const bool bf16 = z.scalar_type() == at::kBFloat16;
	at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
		for (int64_t i = lo; i < hi; i++) {
			const int64_t ti = tp[i];
			if (ti < 0 || ti >= V) continue;  // checked by the caller; never read out of range
			float l, zt;
			if (bf16) {
				const uint16_t* row = rows_of<uint16_t>(z) + i * V;
				l = row_lse(row, V, T);
				zt = load(row, ti);
			} else {
				const float* row = rows_of<float>(z) + i * V;
				l = row_lse(row, V, T);
				zt = load(row, ti);
			}
			lsep[i] = l;
			lpp[i] = zt / T - l;
		}
	});
	return {lp, lse};
}

at::Tensor fused_target_logprobs_grad(const at::Tensor& z, const at::Tensor& tgt, const at::Tensor& lse, const at::Tensor& g,
                                      double temperature) {
	if (!z.device().is_cpu()) {
		at::Tensor gt = (g.to(at::kFloat) / temperature).unsqueeze(1);
		at::Tensor dz = -at::exp(z.to(at::kFloat) / temperature - lse.unsqueeze(1)) * gt;
		return dz.scatter_add_(1, tgt.unsqueeze(1), gt).to(z.scalar_type());
	}
	check_logits(z, tgt);
	const int64_t N = z.size(0), V = z.size(1);
	at::Tensor t = tgt.contiguous(), l = lse.to(at::kFloat).contiguous(), gg = g.to(at::kFloat).contiguous();
	at::Tensor dz = at::empty_like(z);
	const int64_t* tp = t.data_ptr<int64_t>();
	const float *lp = l.data_ptr<float>(), *gp = gg.data_ptr<float>();
	const float T = float(temperature);
	const bool bf16 = z.scalar_type() == at::kBFloat16;
	at::parallel_for(0, N, 1, [&](int64_t lo, int64_t hi) {
		for (int64_t i = lo; i < hi; i++) {
			const int64_t ti = tp[i];
			if (ti < 0 || ti >= V) continue;
			if (bf16)
				row_grad(rows_of<uint16_t>(z) + i * V, reinterpret_cast<uint16_t*>(dz.data_ptr()) + i * V, V, ti, lp[i], gp[i], T);
			else
				row_grad(rows_of<float>(z) + i * V, dz.data_ptr<float>() + i * V, V, ti, lp[i], gp[i], T);
		}
	});
	return dz;
}

}  // namespace rlif

extern "C" char* rl_head_logprobs(const float* z, int64_t N, int64_t V, const int64_t* tgt, float temperature, int32_t bf16,
                                  const float* g, float* lp, float* dz) {
	return rlif::guard([&] {
		at::Tensor zt = at::from_blob(const_cast<float*>(z), {N, V}, at::kFloat);
		if (bf16) zt = zt.to(at::kBFloat16);
		at::Tensor tt = at::from_blob(const_cast<int64_t*>(tgt), {N}, at::kLong);
		auto r = rlif::fused_target_logprobs(zt, tt, temperature);
		std::memcpy(lp, r.first.data_ptr<float>(), sizeof(float) * N);
		at::Tensor gt = at::from_blob(const_cast<float*>(g), {N}, at::kFloat);
		at::Tensor d = rlif::fused_target_logprobs_grad(zt, tt, r.second, gt, temperature).to(at::kFloat).contiguous();
		std::memcpy(dz, d.data_ptr<float>(), sizeof(float) * N * V);
	});
}
