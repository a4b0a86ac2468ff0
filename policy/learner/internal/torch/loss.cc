// The GRPO loss on the trained tokens' log-probs: everything rl_loss_backward computes
// after the output layer (shim.cc runs the model and the backward through it). Kept apart
// from the model so that the policy-optimization options read as one piece of code.
#include "shim_internal.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace rlif {

namespace {

// kKLLogRatioBound bounds |log π_ref − log π| in the k3 KL: exp(20) ≈ 4.9e8 is finite in
// float32 and bfloat16 alike.
constexpr double kKLLogRatioBound = 20.0;

}  // namespace

at::Tensor LossContext::tokens(const double* p) const {
	return at::from_blob(const_cast<double*>(p), {B, T}, at::kDouble)
	    .narrow(1, 1, T - 1)
	    .to(sel.device())
	    .to(at::kFloat)
	    .masked_select(sel);
}

at::Tensor LossContext::rows(const float* p) const {
	return at::from_blob(const_cast<float*>(p), {B}, at::kFloat).to(sel.device()).index_select(0, row);
}

at::Tensor policy_loss(const LossContext& c, const at::Tensor& lp, LossTerms& out) {
	const rl_loss_args* a = c.a;
	at::Tensor old = a->old_logprob ? c.tokens(a->old_logprob) : lp.detach();
	out.adv = c.rows(a->advantages);
	out.ratio = at::exp(lp - old);
	at::Tensor clipped = at::clamp(out.ratio, 1.0 - a->eps_low, 1.0 + a->eps_high);
	at::Tensor tl = -at::min(out.ratio * out.adv, clipped * out.adv);
	if (a->sampler_logprob) {
		// Truncated importance sampling: the sampler ran quantized weights, so its
		// tokens came from a slightly different policy.
		at::Tensor slp = c.tokens(a->sampler_logprob);
		out.isw = at::clamp_max(at::exp(old - slp), a->is_cap);
		tl = tl * out.isw;
	}
	if (a->beta != 0) {
		// k3 estimator of KL(π‖π_ref). The log-ratio is clamped (as verl does) so
		// that exp cannot overflow on a token the reference finds very unlikely;
		// a clamped token contributes a constant and no gradient.
		out.d = c.tokens(a->ref_logprob) - lp;
		at::Tensor dc = at::clamp(out.d, -kKLLogRatioBound, kKLLogRatioBound);
		out.kl = at::exp(dc) - dc - 1;
		tl = tl + double(a->beta) * out.kl;
	}
	// The aggregation (grpo, bnpo, dapo, dr_grpo) is the caller's: a weight per row.
	at::Tensor loss = (tl * c.rows(a->row_weight)).sum();
	if (!std::isfinite(loss.item<double>())) fail("non-finite loss");
	return loss;
}

void loss_stats(const LossContext& c, const LossTerms& t, rl_loss_stats* st) {
	const rl_loss_args* a = c.a;
	at::NoGradGuard ng;
	at::Tensor ratio = t.ratio.detach();
	st->ratio_sum = ratio.sum().item<double>();
	// Clipped where the clip removed the gradient: a ratio below 1−ε_low matters only
	// for A < 0, one above 1+ε_high only for A > 0 (elsewhere min() takes the ratio).
	st->clip_low = ((ratio < 1.0 - a->eps_low) & (t.adv < 0)).sum().item<double>();
	st->clip_high = ((ratio > 1.0 + a->eps_high) & (t.adv > 0)).sum().item<double>();
	if (t.kl.defined()) {
		st->kl_sum = t.kl.detach().sum().item<double>();
		st->kl_clamped = (t.d.detach().abs() > kKLLogRatioBound).sum().item<double>();
	}
	if (t.isw.defined()) st->is_sum = t.isw.detach().sum().item<double>();
}

}  // namespace rlif
