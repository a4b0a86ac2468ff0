// C++-only helpers shared by the shim's translation units (shim.cc: the model;
// loss.cc: the loss; dist.cc: the process group). Nothing here crosses the C ABI.
#ifndef RLIF_SHIM_INTERNAL_HPP
#define RLIF_SHIM_INTERNAL_HPP

#include <ATen/ATen.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "shim.h"

namespace rlif {

inline char* dup(const std::string& s) {
	char* p = static_cast<char*>(std::malloc(s.size() + 1));
	if (p) std::memcpy(p, s.c_str(), s.size() + 1);
	return p;
}

// guard runs f and turns every exception into an error string.
template <typename F>
char* guard(F&& f) {
	try {
		f();
		return nullptr;
	} catch (const c10::Error& e) {
		return dup(std::string("libtorch: ") + e.what_without_backtrace());
	} catch (const std::exception& e) {
		return dup(e.what());
	} catch (...) {
		return dup("unknown C++ exception");
	}
}

[[noreturn]] inline void fail(const std::string& msg) { throw std::runtime_error(msg); }

// trainable_tensors are the model's trainable tensors in their fixed order (the order of
// rl_trainable_info and of the optimizer state); the process group reduces their gradients.
std::vector<at::Tensor>& trainable_tensors(rl_model* m);

// optimizer_moment is Adam's first (kind 1) or second (kind 2) moment of trainable tensor
// i, created as zeros when the optimizer has taken no step yet.
at::Tensor& optimizer_moment(rl_model* m, int64_t i, int kind);

// fused_target_logprobs returns log p(tgt) at temperature, and the logsumexp of each row,
// for logits z [rows, V] (float32 or bfloat16), in float32 (head.cc).
std::pair<at::Tensor, at::Tensor> fused_target_logprobs(const at::Tensor& z, const at::Tensor& tgt, double temperature);

// fused_target_logprobs_grad is the gradient with respect to z, in z's type, of
// Σ g · log p(tgt), given the rows' logsumexp from fused_target_logprobs.
at::Tensor fused_target_logprobs_grad(const at::Tensor& z, const at::Tensor& tgt, const at::Tensor& lse, const at::Tensor& g,
                                      double temperature);

// LossContext locates a micro-batch's trained tokens for the loss (loss.cc): sel [B, T-1]
// selects the predicted positions t >= 1 that train, row [N] is each selected token's row.
struct LossContext {
	const rl_loss_args* a;
	int64_t B, T;
	at::Tensor sel, row;

	// tokens reads a per-position float64 input [B*T] at the selected tokens, as float32 [N].
	at::Tensor tokens(const double* p) const;
	// rows spreads a per-row input [B] over the selected tokens [N].
	at::Tensor rows(const float* p) const;
	// row_sum and row_mean are the sum and mean of x [N] over each token's row, spread
	// back over the tokens [N].
	at::Tensor row_sum(const at::Tensor& x) const;
	at::Tensor row_mean(const at::Tensor& x) const;
};

// LossTerms are the per-token tensors [N] the loss computed, kept for its statistics.
struct LossTerms {
	at::Tensor ratio, adv, kl, d, isw;
	at::Tensor is_masked, off_policy_keep, entropy_keep;  // where those options are on
	at::Tensor entropy;                                   // where the mask or the bonus needs it
};

// policy_loss is the micro-batch's loss from the selected tokens' log-probs lp [N] (with
// gradient) and, for the entropy mask, their entropies [N] (without; else undefined), its
// per-token terms left in out (loss.cc).
at::Tensor policy_loss(const LossContext& c, const at::Tensor& lp, const at::Tensor& entropy, LossTerms& out);

// loss_stats fills the branch counts and sums of st from the loss's terms.
void loss_stats(const LossContext& c, const LossTerms& t, rl_loss_stats* st);

}  // namespace rlif

#endif
