// The policy loss on the trained tokens' log-probs: everything rl_loss_backward computes
// after the output layer (shim.cc runs the model and the backward through it). Kept apart
// from the model so that the policy-optimization options read as one piece of code.
//
// Per token t of row i, with ρ the importance ratio π/π_old (token level) or GSPO's
// exp(mean over row i of log π/π_old) (sequence level):
//
//	ℓ = objective(ρ, A_i) · keep_i · keep_t · w_t + β·k3_t
//
// where objective is the clipped surrogate (with the two-sided cap δ), CISPO's or SAPO's,
// keep_i the off-policy sequence mask, keep_t the entropy mask and w_t the sampler/learner
// mismatch weight; TRL's GRPOTrainer._compute_loss applies them in the same order. The
// entropy bonus −c·Σ H_t is added to the aggregated loss.
#include "shim_internal.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

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

at::Tensor LossContext::row_sum(const at::Tensor& x) const {
	// index_add is differentiable: each token of a row gets the gradient of the row's sum.
	return at::zeros({B}, x.options()).index_add(0, row, x).index_select(0, row);
}

at::Tensor LossContext::row_mean(const at::Tensor& x) const {
	at::Tensor n = at::zeros({B}, x.options()).index_add(0, row, at::ones_like(x)).index_select(0, row);
	return row_sum(x) / n;
}

at::Tensor policy_loss(const LossContext& c, const at::Tensor& lp, const at::Tensor& entropy, LossTerms& out) {
	const rl_loss_args* a = c.a;
	const rl_policy_opts& o = a->opt;
	at::Tensor old = a->old_logprob ? c.tokens(a->old_logprob) : lp.detach();
	out.adv = c.rows(a->advantages);
	// GSPO: one ratio per sequence, the geometric mean of its tokens' ratios, so that a
	// sequence-level reward is corrected at the level it was given; its gradient reaches
	// every token of the row.
	out.ratio = o.sequence_ratio ? at::exp(c.row_mean(lp - old)) : at::exp(lp - old);
	at::Tensor tl;
	switch (o.objective) {
		case RL_OBJ_CLIP: {
			at::Tensor clipped = at::clamp(out.ratio, 1.0 - a->eps_low, 1.0 + a->eps_high);
			// The two-sided clip (INTELLECT-2; verl's dual clip): for A < 0 the unclipped
			// term grows without bound in ρ, so ρ is capped at δ; for A > 0 min() already
			// takes the clipped term there.
			at::Tensor r = o.delta > 0 ? at::clamp_max(out.ratio, o.delta) : out.ratio;
			tl = -at::min(r * out.adv, clipped * out.adv);
			break;
		}
		case RL_OBJ_CISPO:
			// The weight, not the update, is clipped, and carries no gradient: every token
			// keeps a REINFORCE gradient A·∇log π, scaled by min(ρ, ε_high).
			tl = -at::clamp_max(out.ratio, a->eps_high).detach() * out.adv * lp;
			break;
		case RL_OBJ_SAPO: {
			// A smooth gate instead of a hard clip: the gradient is A·ρ·4σ(1−σ)·∇log π with
			// σ = σ(τ(ρ−1)), equal to GRPO's at ρ = 1 and fading as ρ leaves 1, faster for
			// larger τ.
			at::Tensor tau = at::where(out.adv > 0, at::full_like(out.adv, o.sapo_tau_pos), at::full_like(out.adv, o.sapo_tau_neg));
			tl = -at::sigmoid(tau * (out.ratio - 1)) * 4 / tau * out.adv;
			break;
		}
		default:
			fail("unknown policy objective " + std::to_string(o.objective));
	}
	if (o.off_policy_mask) {
		// Off-policy sequence masking (DeepSeek-V3.2): a sequence with a negative advantage
		// whose tokens the current policy has drifted far from (mean log π_sampler − log π
		// above the threshold) teaches little but noise; it is dropped.
		at::Tensor sampled = a->sampler_logprob ? c.tokens(a->sampler_logprob) : old;
		at::Tensor kl = c.row_mean(sampled - lp.detach());
		out.off_policy_keep = ((out.adv >= 0) | (kl <= o.off_policy_threshold)).to(tl.scalar_type());
		tl = tl * out.off_policy_keep;
	}
	if ((o.entropy_q > 0 || o.entropy_weight != 0) && !entropy.defined()) fail("the entropy mask and bonus need the tokens' entropies");
	if (entropy.defined()) out.entropy = entropy;
	if (o.entropy_q > 0) {
		// Beyond the 80/20 rule: only the high-entropy "forking" tokens get a policy
		// gradient; the threshold is the quantile over this micro-batch's trained tokens.
		at::Tensor thr = at::quantile(entropy.detach(), double(o.entropy_q));
		out.entropy_keep = (entropy.detach() >= thr).to(tl.scalar_type());
		tl = tl * out.entropy_keep;
	}
	if (a->sampler_logprob) {
		// Importance sampling against the sampler: it ran quantized weights, so its tokens
		// came from a slightly different policy. Truncated IS bounds the weight; masked IS
		// drops the tokens (or sequences) whose weight leaves the band.
		at::Tensor slp = c.tokens(a->sampler_logprob);
		const bool seq = o.is_mode == RL_IS_SEQUENCE_TRUNCATE || o.is_mode == RL_IS_SEQUENCE_MASK;
		const bool mask = o.is_mode == RL_IS_TOKEN_MASK || o.is_mode == RL_IS_SEQUENCE_MASK;
		if (o.is_mode < RL_IS_TOKEN_TRUNCATE || o.is_mode > RL_IS_SEQUENCE_MASK)
			fail("unknown importance sampling mode " + std::to_string(o.is_mode));
		at::Tensor w = at::exp(seq ? c.row_sum(old - slp) : old - slp);
		if (mask) {
			at::Tensor in = (w <= a->is_cap) & (w >= o.is_min);
			out.is_masked = ~in;
			out.isw = w * in.to(w.scalar_type());
		} else if (o.is_min > 0) {
			out.isw = at::clamp(w, o.is_min, a->is_cap);
		} else {
			out.isw = at::clamp_max(w, a->is_cap);
		}
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
	if (o.entropy_weight != 0) {
		// The entropy bonus (TRL's entropy_coef, verl's entropy_coeff): the caller's weight
		// makes it coef × the mean entropy of the step's trained tokens; on the tokens the
		// entropy mask keeps, as TRL does.
		at::Tensor h = out.entropy_keep.defined() ? entropy * out.entropy_keep : entropy;
		loss = loss - double(o.entropy_weight) * h.sum();
	}
	if (!std::isfinite(loss.item<double>())) fail("non-finite loss");
	return loss;
}

void loss_stats(const LossContext& c, const LossTerms& t, rl_loss_stats* st) {
	const rl_loss_args* a = c.a;
	at::NoGradGuard ng;
	at::Tensor ratio = t.ratio.detach();
	st->ratio_sum = ratio.sum().item<double>();
	switch (a->opt.objective) {
		case RL_OBJ_CLIP:
			// Clipped where the clip removed the gradient: a ratio below 1−ε_low matters
			// only for A < 0, one above 1+ε_high only for A > 0 (elsewhere min() takes the
			// ratio).
			st->clip_low = ((ratio < 1.0 - a->eps_low) & (t.adv < 0)).sum().item<double>();
			st->clip_high = ((ratio > 1.0 + a->eps_high) & (t.adv > 0)).sum().item<double>();
			break;
		case RL_OBJ_CISPO:
			st->clip_high = (ratio > a->eps_high).sum().item<double>();
			break;
	}
	if (t.kl.defined()) {
		st->kl_sum = t.kl.detach().sum().item<double>();
		st->kl_clamped = (t.d.detach().abs() > kKLLogRatioBound).sum().item<double>();
	}
	if (t.isw.defined()) st->is_sum = t.isw.detach().sum().item<double>();
	if (t.is_masked.defined()) st->is_masked = t.is_masked.sum().item<double>();
	if (t.off_policy_keep.defined()) st->off_policy_masked = (1 - t.off_policy_keep).sum().item<double>();
	if (t.entropy_keep.defined()) st->entropy_masked = (1 - t.entropy_keep).sum().item<double>();
	if (t.entropy.defined()) st->entropy_sum = t.entropy.detach().sum().item<double>();
}

}  // namespace rlif
