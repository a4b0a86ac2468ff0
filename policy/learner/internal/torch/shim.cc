// rlif's libtorch shim: a decoder-only transformer (llama, qwen2, qwen3, olmo2 as
// llama.cpp builds them), its per-token statistics, the loss's forward and backward pass
// (the loss itself is loss.cc's) and AdamW. Only ATen headers are used (not torch/torch.h)
// to keep compile times reasonable on small machines.
#include "shim.h"
#include "shim_internal.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <chrono>
#include <dlfcn.h>
#include <malloc.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace {

using rlif::fail;
using rlif::guard;

struct Lora {
	at::Tensor a, b;  // [r, in], [out, r]
	double scale = 0;
};

struct Linear {
	std::string name;
	at::Tensor w, bias;
	std::shared_ptr<Lora> lora;
};

struct Layer {
	at::Tensor attn_norm, ffn_norm, q_norm, k_norm, post_attn_norm, post_ffn_norm;
	Linear q, k, v, o, gate, up, down;
};

std::string shape_str(at::IntArrayRef s) {
	std::ostringstream o;
	o << "[";
	for (size_t i = 0; i < s.size(); i++) o << (i ? " " : "") << s[i];
	o << "]";
	return o.str();
}

}  // namespace

struct rl_model {
	rl_config cfg{};
	at::TensorOptions opts;
	std::map<std::string, at::Tensor> params;  // by GGUF name
	std::map<std::string, std::shared_ptr<Lora>> loras;  // by base weight name
	std::vector<Layer> layers;
	at::Tensor tok_embd, output_norm, output, rope_freqs;
	at::Tensor rope_cos, rope_sin;  // [n_pos, head_dim/2], float32
	bool finalized = false;
	// optimizer state
	std::vector<at::Tensor> trainable, m1, m2;
	std::vector<std::string> trainable_names;
	std::vector<bool> decay;
	int64_t steps = 0;

	// init_moments creates Adam's moments (zeros, float32) before the first step.
	void init_moments() {
		if (!m1.empty()) return;
		for (auto& p : trainable) {
			m1.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
			m2.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
		}
	}

	at::Tensor get(const std::string& name, std::vector<int64_t> shape, bool required) {
		auto it = params.find(name);
		if (it == params.end()) {
			if (required) fail("missing tensor " + name);
			return at::Tensor();
		}
		if (it->second.sizes() != at::IntArrayRef(shape))
			fail("tensor " + name + " has shape " + shape_str(it->second.sizes()) + ", want " + shape_str(shape));
		return it->second;
	}

	Linear linear(const std::string& name, int64_t in, int64_t out, bool bias) {
		Linear l;
		l.name = name + ".weight";
		l.w = get(l.name, {out, in}, true);
		l.bias = get(name + ".bias", {out}, bias);
		return l;
	}

	// rope_tables returns cos and sin for positions [0, n), computed the way ggml's CPU
	// rope does (float32, the angle advanced by repeated multiplication), so that the
	// rotation matches llama.cpp to the last bits.
	void rope_tables(int64_t n) {
		if (rope_cos.defined() && rope_cos.size(0) >= n) return;
		const int64_t hd = cfg.head_dim;
		at::Tensor c = at::empty({n, hd / 2}, at::kFloat), s = at::empty({n, hd / 2}, at::kFloat);
		float* cp = c.data_ptr<float>();
		float* sp = s.data_ptr<float>();
		const float theta_scale = powf(cfg.rope_base, -2.0f / float(hd));
		const float* ff = rope_freqs.defined() ? rope_freqs.data_ptr<float>() : nullptr;
		for (int64_t p = 0; p < n; p++) {
			float theta = float(p);
			for (int64_t i = 0; i < hd / 2; i++) {
				float t = (ff ? theta / ff[i] : theta) * cfg.rope_freq_scale;
				cp[p * (hd / 2) + i] = cosf(t);
				sp[p * (hd / 2) + i] = sinf(t);
				theta *= theta_scale;
			}
		}
		rope_cos = c.to(opts.device()).to(opts.dtype());
		rope_sin = s.to(opts.device()).to(opts.dtype());
	}
};

namespace {

// rms normalizes in float32 whatever the compute precision: a bf16 mean of squares over
// thousands of values would lose most of its bits.
at::Tensor rms(const at::Tensor& x, const at::Tensor& w, double eps) {
	at::Tensor xf = x.to(at::kFloat);
	return xf * at::rsqrt(xf.pow(2).mean(-1, true) + eps) * w;
}

// Compute is the precision of one shim call: under bf16, autocast runs the matmuls
// (linear, matmul) in bfloat16 over the float32 master weights, casting each weight once
// per call (autocast's cache) and accumulating in float32 inside the kernels; every
// other op sees float32 (norms, softmax, the loss, all reductions), because the code
// around the matmuls converts or asks for float32 explicitly. Autocast state is
// thread-local, and a CPU backward runs on the calling thread, so the guard covers the
// recomputation and backward of the same call.
// autocast's switches: per device type since torch 2.4, whose 2.x releases warn at every
// call of the older per-kind names that Debian's libtorch 1.13 has only.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
static void autocast_bf16(bool cuda, bool on) {
	const auto dev = cuda ? at::kCUDA : at::kCPU;
	if (on) at::autocast::set_autocast_dtype(dev, at::kBFloat16);
	at::autocast::set_autocast_enabled(dev, on);
}
static bool autocast_any() {
	return at::autocast::is_autocast_enabled(at::kCPU) || at::autocast::is_autocast_enabled(at::kCUDA);
}
#else
static void autocast_bf16(bool cuda, bool on) {
	if (cuda) {
		if (on) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
		at::autocast::set_enabled(on);
	} else {
		if (on) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
		at::autocast::set_cpu_enabled(on);
	}
}
static bool autocast_any() { return at::autocast::is_cpu_enabled() || at::autocast::is_enabled(); }
#endif

struct Compute {
	bool on, cuda;
	explicit Compute(const rl_model& m) : on(m.cfg.compute_bf16 != 0), cuda(m.cfg.cuda >= 0) {
		if (!on) return;
		autocast_bf16(cuda, true);
		at::autocast::increment_nesting();
	}
	~Compute() {
		if (!on) return;
		// The cast weights must not outlive the call: the optimizer changes the masters.
		if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
		autocast_bf16(cuda, false);
	}
	Compute(const Compute&) = delete;
	Compute& operator=(const Compute&) = delete;
};

at::Tensor apply(const Linear& l, const at::Tensor& x, bool no_lora) {
	at::Tensor y = at::linear(x, l.w, l.bias.defined() ? c10::optional<at::Tensor>(l.bias) : c10::nullopt);
	if (l.lora && !no_lora) y = y + at::linear(at::linear(x, l.lora->a), l.lora->b) * l.lora->scale;
	return y;
}

// rope rotates x [B, T, H, hd] by the position tables, its positions starting at off.
at::Tensor rope(const rl_model& m, const at::Tensor& x, int64_t off) {
	const int64_t T = x.size(1), hd = x.size(3);
	at::Tensor c = m.rope_cos.narrow(0, off, T).view({1, T, 1, hd / 2});
	at::Tensor s = m.rope_sin.narrow(0, off, T).view({1, T, 1, hd / 2});
	if (m.cfg.rope_neox) {
		at::Tensor x0 = x.narrow(-1, 0, hd / 2), x1 = x.narrow(-1, hd / 2, hd / 2);
		return at::cat({x0 * c - x1 * s, x0 * s + x1 * c}, -1);
	}
	at::Tensor xv = x.reshape({x.size(0), T, x.size(2), hd / 2, 2});
	at::Tensor x0 = xv.select(-1, 0), x1 = xv.select(-1, 1);
	return at::stack({x0 * c - x1 * s, x0 * s + x1 * c}, -1).flatten(-2);
}

// attend is causal attention of q [B, H, Tq, hd] over k, v [B, H, off + Tq, hd]: query
// row i sits at position off + i and sees the keys up to it (off > 0: a completion after
// a shared prompt of off positions). It runs a block of query rows at a time: each block
// sees only the keys up to its last row, so the scores held at once are
// [B, H, block, ≤ off + Tq] instead of [B, H, Tq, off + Tq], and the blocks above the
// diagonal are never computed (about half of the work and of the memory autograd keeps,
// at large T). One batched GEMM makes each block's scores, scale · q kᵀ + bias, where
// bias is 0 on and below the diagonal and −inf above it (causal_bias): the scores are the
// largest tensors of the step, and a separate scaling and masking would each pass over
// them twice more (forward and backward). The softmax is float32 under bf16 too.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias, double scale,
                  int64_t off) {
	const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3), block = 256;
	std::vector<at::Tensor> parts;
	for (int64_t lo = 0; lo < T; lo += block) {
		const int64_t n = std::min(block, T - lo), hi = off + lo + n;
		at::Tensor qb = q.narrow(2, lo, n).reshape({B * H, n, hd});
		at::Tensor kc = k.narrow(2, 0, hi).reshape({B * H, hi, hd}), vc = v.narrow(2, 0, hi);
		at::Tensor att = at::baddbmm(bias.narrow(0, off + lo, n).narrow(1, 0, hi), qb, kc.transpose(1, 2), 1.0, scale);
		att = at::softmax(att.view({B, H, n, hi}), -1, at::kFloat);
		parts.push_back(at::matmul(att, vc));
	}
	return parts.size() == 1 ? parts[0] : at::cat(parts, 2);
}

// Layout is how a batch's positions are computed. Whole: every row [B, T] on its own.
// Shared: the rows of a group (consecutive, one prompt) compute the prompt once, as row g
// of prompts [U, P] (right-padded to the longest prompt), and their completions as rows of
// completions [B, C] (right-padded to the longest completion) that attend to their
// group's prompt keys and their own. The batch's [B, T] positions are gathered back from
// the two (gather), so everything after the last block is the same in both layouts; the
// gather's backward sums each shared prompt position's gradient over its rows.
struct Layout {
	int64_t B = 0, T = 0;
	bool shared = false;
	int64_t U = 0, P = 0, C = 0;
	std::vector<int64_t> lo, rows, plen;  // per group: first row, row count, prompt length
	at::Tensor tokens;                    // whole: [B, T]
	at::Tensor prompts, completions;      // shared: [U, P], [B, C]
	at::Tensor gather;                    // shared: [B*T] into cat(prompts, completions) positions

	// positions is the longest position count one attention sees (the causal bias's size).
	int64_t positions() const { return shared ? P + C : T; }
};

// Acts are the activations between blocks: whole uses c [B, T, D]; shared uses p [U, P, D]
// and c [B, C, D].
struct Acts {
	at::Tensor p, c;
};

// flat joins the activations into one vector, so that one backward() call takes both.
at::Tensor flat(const Acts& a) { return a.p.defined() ? at::cat({a.p.reshape(-1), a.c.reshape(-1)}) : a.c.reshape(-1); }

// leaf detaches the activations as leaves that collect their gradients.
Acts leaf(const Acts& a) {
	auto one = [](const at::Tensor& t) { return t.defined() ? t.detach().requires_grad_(true) : t; };
	return {one(a.p), one(a.c)};
}

// grads are a leaf's gradients, flattened as flat() orders them.
at::Tensor grads(const Acts& a) {
	auto one = [](const at::Tensor& t) { return t.grad().defined() ? t.grad() : at::zeros_like(t); };
	return a.p.defined() ? at::cat({one(a.p).reshape(-1), one(a.c).reshape(-1)}) : one(a.c).reshape(-1);
}

// layout lays out batch b, whose tokens batch_tokens has checked and converted (tok).
Layout layout(const rl_model& m, const rl_batch* b, const at::Tensor& tok) {
	Layout l;
	l.B = b->B;
	l.T = b->T;
	const auto dev = m.opts.device();
	if (!b->prompt_group) {
		l.tokens = tok;
		return l;
	}
	const int32_t* g = b->prompt_group;
	const int32_t* pl = b->prompt_length;
	if (!pl) fail("prompt groups without prompt lengths");
	for (int64_t i = 0; i < l.B; i++) {
		if (pl[i] < 1 || pl[i] > b->lengths[i]) fail("row " + std::to_string(i) + ": prompt length out of range");
		if (i == 0 ? g[i] != 0 : (g[i] != g[i - 1] && g[i] != g[i - 1] + 1))
			fail("row " + std::to_string(i) + ": prompt groups must number consecutive rows 0, 1, ...");
		if (i > 0 && g[i] == g[i - 1]) {
			if (pl[i] != pl[i - 1] || std::memcmp(b->tokens + i * l.T, b->tokens + (i - 1) * l.T, sizeof(int32_t) * pl[i]) != 0)
				fail("rows " + std::to_string(i - 1) + " and " + std::to_string(i) + " share a prompt group but not its tokens");
			l.rows.back()++;
			continue;
		}
		l.lo.push_back(i);
		l.rows.push_back(1);
		l.plen.push_back(pl[i]);
		l.P = std::max<int64_t>(l.P, pl[i]);
	}
	for (int64_t i = 0; i < l.B; i++) l.C = std::max<int64_t>(l.C, b->lengths[i] - pl[i]);
	l.C = std::max<int64_t>(l.C, 1);
	l.U = int64_t(l.lo.size());
	l.shared = true;
	at::Tensor pt = at::zeros({l.U, l.P}, at::kLong), ct = at::zeros({l.B, l.C}, at::kLong);
	at::Tensor gi = at::empty({l.B * l.T}, at::kLong);
	auto pa = pt.accessor<int64_t, 2>();
	auto ca = ct.accessor<int64_t, 2>();
	int64_t* gp = gi.data_ptr<int64_t>();
	for (int64_t u = 0; u < l.U; u++) {
		const int64_t P = l.plen[u];
		for (int64_t t = 0; t < P; t++) pa[u][t] = b->tokens[l.lo[u] * l.T + t];
		for (int64_t r = l.lo[u]; r < l.lo[u] + l.rows[u]; r++) {
			for (int64_t t = P; t < b->lengths[r]; t++) ca[r][t - P] = b->tokens[r * l.T + t];
			// Positions past a row's end are padding the loss never selects: any valid index.
			for (int64_t t = 0; t < l.T; t++)
				gp[r * l.T + t] = t < P ? u * l.P + t : l.U * l.P + r * l.C + std::min(t - P, l.C - 1);
		}
	}
	l.prompts = pt.to(dev);
	l.completions = ct.to(dev);
	l.gather = gi.to(dev);
	return l;
}

Acts embed(const rl_model& m, const Layout& l) {
	if (!l.shared) return {at::Tensor(), at::embedding(m.tok_embd, l.tokens)};
	return {at::embedding(m.tok_embd, l.prompts), at::embedding(m.tok_embd, l.completions)};
}

// whole returns the activations at the batch's [B, T] positions.
at::Tensor whole(const Layout& l, const Acts& a) {
	if (!l.shared) return a.c;
	const int64_t D = a.c.size(-1);
	return at::cat({a.p.reshape({-1, D}), a.c.reshape({-1, D})}).index_select(0, l.gather).view({l.B, l.T, D});
}

// Heads are a block's queries, keys and values [N, H, T, hd], rotated from position off.
struct Heads {
	at::Tensor q, k, v;
};

Heads heads(const rl_model& m, const Layer& L, const at::Tensor& h, bool no_lora) {
	const auto& c = m.cfg;
	const int64_t N = h.size(0), T = h.size(1), H = c.n_head, KV = c.n_head_kv, hd = c.head_dim;
	const bool olmo2 = c.arch == RL_ARCH_OLMO2;
	at::Tensor q = apply(L.q, h, no_lora), k = apply(L.k, h, no_lora), v = apply(L.v, h, no_lora);
	if (olmo2) {  // q/k norms over the whole projection, before the split into heads
		q = rms(q, L.q_norm, c.rms_eps);
		k = rms(k, L.k_norm, c.rms_eps);
	}
	q = q.view({N, T, H, hd});
	k = k.view({N, T, KV, hd});
	v = v.view({N, T, KV, hd});
	if (c.arch == RL_ARCH_QWEN3) {  // per-head q/k norms
		q = rms(q, L.q_norm, c.rms_eps);
		k = rms(k, L.k_norm, c.rms_eps);
	}
	return {q, k, v};
}

// rotate applies RoPE from position off and moves the heads ahead of the positions;
// query head i reads key/value head i / (H/KV), as ggml broadcasts.
Heads rotate(const rl_model& m, const Heads& x, int64_t off) {
	const int64_t rep = m.cfg.n_head / m.cfg.n_head_kv;
	at::Tensor k = rope(m, x.k, off).transpose(1, 2), v = x.v.transpose(1, 2);
	if (rep != 1) {
		k = k.repeat_interleave(rep, 1);
		v = v.repeat_interleave(rep, 1);
	}
	return {rope(m, x.q, off).transpose(1, 2), k, v};
}

// finish is the rest of block L after attention output o [N, H, T, hd] on input x.
at::Tensor finish(const rl_model& m, const Layer& L, at::Tensor x, const at::Tensor& o, bool no_lora) {
	const auto& c = m.cfg;
	const bool olmo2 = c.arch == RL_ARCH_OLMO2;
	at::Tensor a = apply(L.o, o.transpose(1, 2).reshape({x.size(0), x.size(1), c.n_head * c.head_dim}), no_lora);
	if (olmo2) a = rms(a, L.post_attn_norm, c.rms_eps);
	x = x + a;
	at::Tensor h = olmo2 ? x : rms(x, L.ffn_norm, c.rms_eps);
	at::Tensor f = apply(L.down, at::silu(apply(L.gate, h, no_lora)) * apply(L.up, h, no_lora), no_lora);
	if (olmo2) f = rms(f, L.post_ffn_norm, c.rms_eps);
	return x + f;
}

at::Tensor pre_norm(const rl_model& m, const Layer& L, const at::Tensor& x) {
	return m.cfg.arch == RL_ARCH_OLMO2 ? x : rms(x, L.attn_norm, m.cfg.rms_eps);
}

// layer applies transformer block L to the activations x in layout l.
Acts layer(const rl_model& m, const Layer& L, const Layout& l, const Acts& x, const at::Tensor& bias, bool no_lora) {
	const double scale = 1.0 / std::sqrt(double(m.cfg.head_dim));
	if (!l.shared) {
		Heads h = rotate(m, heads(m, L, pre_norm(m, L, x.c), no_lora), 0);
		return {at::Tensor(), finish(m, L, x.c, attend(h.q, h.k, h.v, bias, scale, 0), no_lora)};
	}
	Heads hp = rotate(m, heads(m, L, pre_norm(m, L, x.p), no_lora), 0);
	at::Tensor op = attend(hp.q, hp.k, hp.v, bias, scale, 0);
	Heads hc = heads(m, L, pre_norm(m, L, x.c), no_lora);
	std::vector<at::Tensor> oc;
	for (int64_t u = 0; u < l.U; u++) {
		const int64_t lo = l.lo[u], n = l.rows[u], P = l.plen[u];
		Heads g = rotate(m, {hc.q.narrow(0, lo, n), hc.k.narrow(0, lo, n), hc.v.narrow(0, lo, n)}, P);
		auto prompt = [&](const at::Tensor& t) { return t.narrow(0, u, 1).narrow(2, 0, P).expand({n, -1, -1, -1}); };
		at::Tensor k = at::cat({prompt(hp.k), g.k}, 2), v = at::cat({prompt(hp.v), g.v}, 2);
		oc.push_back(attend(g.q, k, v, bias, scale, P));
	}
	at::Tensor o = oc.size() == 1 ? oc[0] : at::cat(oc, 0);
	return {finish(m, L, x.p, op, no_lora), finish(m, L, x.c, o, no_lora)};
}

// causal_bias is attend's additive mask for T positions: 0 where query row i may see key
// j (j <= i), −inf above the diagonal.
at::Tensor causal_bias(rl_model& m, int64_t T) {
	m.rope_tables(T);
	at::Tensor above = at::ones({T, T}, at::TensorOptions().dtype(at::kBool).device(m.opts.device())).triu(1);
	return at::zeros({T, T}, m.opts).masked_fill(above, -INFINITY);
}

// hidden returns the final-normed hidden states [B, T, D] of the batch.
at::Tensor hidden(rl_model& m, const Layout& l, bool no_lora) {
	at::Tensor bias = causal_bias(m, l.positions());
	Acts x = embed(m, l);
	for (auto& L : m.layers) x = layer(m, L, l, x, bias, no_lora);
	return rms(whole(l, x), m.output_norm, m.cfg.rms_eps);
}

at::Tensor out_weight(const rl_model& m) { return m.output.defined() ? m.output : m.tok_embd; }

// head_logits are the output layer's logits of final hidden states hs [N, D], in the
// compute precision.
at::Tensor head_logits(const rl_model& m, const at::Tensor& hs) { return at::linear(hs, out_weight(m)).contiguous(); }

// target_logprobs is log p(tgt) at temperature for final hidden states hs [N, D], without
// gradients: the output layer in the compute precision, then float32 (head.cc). The loss
// (HeadLogprobs) runs the same two steps, so that π_old computed apart equals the loss's
// own log-probs bit for bit.
at::Tensor target_logprobs(const rl_model& m, const at::Tensor& hs, const at::Tensor& tgt, double temperature) {
	at::NoGradGuard ng;
	return rlif::fused_target_logprobs(head_logits(m, hs), tgt, temperature).first;
}

// head_rows is how many positions' logits fit the output layer's memory budget at once.
int64_t head_rows(const rl_model& m) {
	const int64_t budget = m.cfg.head_chunk_bytes > 0 ? m.cfg.head_chunk_bytes : (int64_t(256) << 20);
	return std::max<int64_t>(1, budget / (4 * int64_t(m.cfg.n_vocab)));
}

// HeadLogprobs gives the loss its log-probs as a leaf, and backward() pushes the leaf's
// gradient through the output layer and then, once, through the hidden states. The
// log-softmax and its gradient are head.cc's fused kernels, not autograd's ops. When the
// logits fit the memory budget they are kept from the forward for the backward; beyond it
// the forward runs chunk by chunk without gradients and backward() recomputes each chunk
// (one more output-layer forward), so that [N, V] logits are never held at once. The loss
// is a sum of per-token terms, so the chunks' gradients are exactly the whole one's.
struct HeadLogprobs {
	at::Tensor hs, hd, tgt, lp, lse, z;
	at::Tensor entropy;  // with_entropy: each row's entropy at temperature, float32, no gradient
	double temperature = 1;
	int64_t rows = 0;

	// entropy_of is the entropy at temperature of each row of logits z [n, V], in float32.
	static at::Tensor entropy_of(const at::Tensor& z, const at::Tensor& lse, double temperature) {
		at::NoGradGuard ng;
		at::Tensor zt = z.to(at::kFloat) / temperature;
		return lse - (at::softmax(zt, -1, at::kFloat) * zt).sum(-1);
	}

	// entropy_grad is the gradient with respect to logits z [n, V] of Σ gh·H, H each row's
	// entropy at temperature: ∂H/∂z_v = −p_v (log p_v + H) / T, in float32.
	static at::Tensor entropy_grad(const at::Tensor& z, const at::Tensor& gh, double temperature) {
		at::NoGradGuard ng;
		at::Tensor logp = at::log_softmax(z.to(at::kFloat) / temperature, -1, at::kFloat);
		at::Tensor p = logp.exp();
		at::Tensor H = -(p * logp).sum(-1, true);
		return p * (logp + H) * (-gh.unsqueeze(1) / temperature);
	}

	// The log-probs' leaf gradient through the output layer, plus the entropies' (the
	// bonus) where they have one, for the logits zc of rows [lo, lo + n).
	at::Tensor logits_grad(const at::Tensor& zc, int64_t lo, int64_t n) const {
		at::Tensor dz = rlif::fused_target_logprobs_grad(zc, tgt.narrow(0, lo, n), lse.narrow(0, lo, n),
		                                                 lp.grad().narrow(0, lo, n), temperature);
		// The two gradients summed in float32 and rounded to the logits' type once.
		if (entropy.defined() && entropy.grad().defined())
			dz = (dz.to(at::kFloat) + entropy_grad(zc, entropy.grad().narrow(0, lo, n), temperature)).to(zc.scalar_type());
		return dz;
	}

	// with_entropy computes the rows' entropies; entropy_grad makes them a leaf that takes
	// the loss's gradient (the entropy bonus).
	at::Tensor operator()(const rl_model& m, const at::Tensor& h, const at::Tensor& t, double temp, bool with_entropy,
	                      bool entropy_grad = false) {
		rows = head_rows(m);
		hs = h;
		tgt = t;
		temperature = temp;
		hd = h.detach();
		if (hd.size(0) <= rows) {
			hd.requires_grad_(true);
			z = head_logits(m, hd);
			std::tie(lp, lse) = rlif::fused_target_logprobs(z.detach(), tgt, temp);
			if (with_entropy) entropy = entropy_of(z.detach(), lse, temp);
		} else {
			at::NoGradGuard ng;
			std::vector<at::Tensor> lps, lses, ents;
			for (int64_t lo = 0; lo < hd.size(0); lo += rows) {
				const int64_t n = std::min(rows, hd.size(0) - lo);
				at::Tensor zc = head_logits(m, hd.narrow(0, lo, n));
				auto r = rlif::fused_target_logprobs(zc, tgt.narrow(0, lo, n), temp);
				lps.push_back(r.first);
				lses.push_back(r.second);
				if (with_entropy) ents.push_back(entropy_of(zc, r.second, temp));
			}
			lp = at::cat(lps);
			lse = at::cat(lses);
			if (with_entropy) entropy = at::cat(ents);
			// The no-grad pass cached bf16 weight casts without a gradient path.
			if (autocast_any()) at::autocast::clear_cache();
		}
		if (entropy.defined() && entropy_grad) entropy.requires_grad_(true);
		return lp.requires_grad_(true);
	}

	void backward(const rl_model& m) {
		if (!lp.defined() || !lp.grad().defined()) return;
		if (z.defined()) {
			z.backward(logits_grad(z.detach(), 0, z.size(0)));
			z = at::Tensor();
		} else {
			hd.requires_grad_(true);
			for (int64_t lo = 0; lo < hd.size(0); lo += rows) {
				const int64_t n = std::min(rows, hd.size(0) - lo);
				at::Tensor zc = head_logits(m, hd.narrow(0, lo, n));
				zc.backward(logits_grad(zc.detach(), lo, n));
			}
		}
		if (hs.requires_grad() && hd.grad().defined()) hs.backward(hd.grad());
	}
};

// completion_mask is the [B, T-1] selection of predicted positions (t >= 1) to score.
at::Tensor completion_mask(const rl_model& m, const float* mask, int64_t B, int64_t T) {
	return at::from_blob(const_cast<float*>(mask), {B, T}, at::kFloat).narrow(1, 1, T - 1).to(m.opts.device()) > 0.5;
}

at::Tensor batch_tokens(const rl_model& m, const rl_batch* b) {
	if (b->B <= 0 || b->T <= 0) fail("empty batch");
	at::Tensor t = at::from_blob(const_cast<int32_t*>(b->tokens), {b->B, b->T}, at::kInt).to(at::kLong);
	if (t.min().item<int64_t>() < 0 || t.max().item<int64_t>() >= m.cfg.n_vocab)
		fail("token id out of range [0, " + std::to_string(m.cfg.n_vocab) + ")");
	for (int32_t i = 0; i < b->B; i++)
		if (b->lengths[i] < 1 || b->lengths[i] > b->T) fail("sequence length out of range");
	return t.to(m.opts.device());
}

void check_ready(rl_model* m) {
	if (!m) fail("nil model");
	if (!m->finalized) fail("model not finalized");
}

}  // namespace

extern "C" {

char* rl_new(const rl_config* cfg, rl_model** out) {
	return guard([&] {
		*out = nullptr;
		const auto& c = *cfg;
		if (c.n_vocab <= 0 || c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0 ||
		    c.n_ff <= 0)
			fail("model dimensions must be positive");
		if (c.n_head % c.n_head_kv != 0) fail("head count is not a multiple of the KV head count");
		if (c.head_dim % 2 != 0) fail("head dimension must be even for RoPE");
		if (c.arch < 0 || c.arch >= RL_ARCH_COUNT) fail("unknown architecture code");
		if (c.bf16 && c.cuda < 0) fail("bfloat16 weights are only supported on a GPU");
		// The norms return float32, which only autocast feeds to bfloat16 weights.
		if (c.bf16 && !c.compute_bf16) fail("bfloat16 weights need bf16 compute (learner precision bf16 or auto)");
		if (c.threads > 0) at::set_num_threads(c.threads);
		auto m = std::make_unique<rl_model>();
		m->cfg = c;
		at::Device dev = c.cuda >= 0 ? at::Device(at::kCUDA, c.cuda) : at::Device(at::kCPU);
		m->opts = at::TensorOptions().dtype(c.bf16 ? at::kBFloat16 : at::kFloat).device(dev);
		at::empty({1}, m->opts);  // fails now, not later, when the device is unavailable
		*out = m.release();
	});
}

void rl_free(rl_model* m) { delete m; }

char* rl_set_tensor(rl_model* m, const char* name, const float* data, const int64_t* shape, int32_t ndim) {
	return guard([&] {
		std::vector<int64_t> s(shape, shape + ndim);
		at::Tensor t = at::from_blob(const_cast<float*>(data), s, at::kFloat).clone();
		if (m->finalized) {
			// Overwrite in place: the layer table and optimizer hold the same tensor.
			auto it = m->params.find(name);
			if (it == m->params.end()) fail(std::string("no tensor ") + name);
			if (it->second.sizes() != t.sizes())
				fail(std::string("tensor ") + name + " has shape " + shape_str(it->second.sizes()) + ", got " + shape_str(t.sizes()));
			at::NoGradGuard ng;
			it->second.copy_(t);
			return;
		}
		if (std::string(name) == "rope_freqs.weight") {
			m->rope_freqs = t;  // stays float32 on the CPU: it only feeds the tables
			return;
		}
		m->params[name] = t.to(m->opts.device()).to(m->opts.dtype());
	});
}

char* rl_finalize(rl_model* m) {
	return guard([&] {
		if (m->finalized) fail("model already finalized");
		const auto& c = m->cfg;
		const int64_t D = c.n_embd, hd = c.head_dim, qd = c.n_head * hd, kvd = c.n_head_kv * hd, F = c.n_ff;
		if (m->rope_freqs.defined() && m->rope_freqs.numel() != hd / 2)
			fail("rope_freqs.weight has " + std::to_string(m->rope_freqs.numel()) + " values, want " + std::to_string(hd / 2));
		m->tok_embd = m->get("token_embd.weight", {c.n_vocab, D}, true);
		m->output_norm = m->get("output_norm.weight", {D}, true);
		m->output = m->get("output.weight", {c.n_vocab, D}, c.arch == RL_ARCH_OLMO2);
		size_t used = m->output.defined() ? 3 : 2;
		for (int il = 0; il < c.n_layer; il++) {
			const std::string p = "blk." + std::to_string(il) + ".";
			Layer L;
			const bool olmo2 = c.arch == RL_ARCH_OLMO2, qwen2 = c.arch == RL_ARCH_QWEN2;
			if (!olmo2) {
				L.attn_norm = m->get(p + "attn_norm.weight", {D}, true);
				L.ffn_norm = m->get(p + "ffn_norm.weight", {D}, true);
			}
			// llama allows optional q/k/v biases; qwen2 requires them.
			bool bias = qwen2 || (c.arch == RL_ARCH_LLAMA && m->params.count(p + "attn_q.bias"));
			L.q = m->linear(p + "attn_q", D, qd, bias);
			L.k = m->linear(p + "attn_k", D, kvd, bias);
			L.v = m->linear(p + "attn_v", D, kvd, bias);
			L.o = m->linear(p + "attn_output", qd, D, false);
			L.gate = m->linear(p + "ffn_gate", D, F, false);
			L.up = m->linear(p + "ffn_up", D, F, false);
			L.down = m->linear(p + "ffn_down", F, D, false);
			used += 7 + (L.q.bias.defined() ? 1 : 0) + (L.k.bias.defined() ? 1 : 0) + (L.v.bias.defined() ? 1 : 0) +
			        (L.o.bias.defined() ? 1 : 0);
			if (!olmo2) used += 2;
			if (c.arch == RL_ARCH_QWEN3) {
				L.q_norm = m->get(p + "attn_q_norm.weight", {hd}, true);
				L.k_norm = m->get(p + "attn_k_norm.weight", {hd}, true);
				used += 2;
			}
			if (olmo2) {
				L.q_norm = m->get(p + "attn_q_norm.weight", {qd}, true);
				L.k_norm = m->get(p + "attn_k_norm.weight", {kvd}, true);
				L.post_attn_norm = m->get(p + "post_attention_norm.weight", {D}, true);
				L.post_ffn_norm = m->get(p + "post_ffw_norm.weight", {D}, true);
				used += 4;
			}
			m->layers.push_back(L);
		}
		if (used != m->params.size()) {
			// A tensor the forward pass would silently ignore means a model we don't
			// implement (MoE, extra biases, ...): refuse rather than be wrong.
			for (const auto& kv : m->params) {
				bool found = kv.first == "token_embd.weight" || kv.first == "output_norm.weight" ||
				             kv.first == "output.weight";
				for (const auto& L : m->layers) {
					for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
						if (l->w.is_same(kv.second) || (l->bias.defined() && l->bias.is_same(kv.second))) found = true;
					}
					for (const at::Tensor* t : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm, &L.post_attn_norm, &L.post_ffn_norm})
						if (t->defined() && t->is_same(kv.second)) found = true;
				}
				if (!found) fail("tensor " + kv.first + " is not used by this architecture's forward pass");
			}
		}
		for (auto& kv : m->params) {
			kv.second.requires_grad_(true);
			m->trainable.push_back(kv.second);
			m->trainable_names.push_back(kv.first);
			m->decay.push_back(kv.second.dim() >= 2);
		}
		m->finalized = true;
	});
}

char* rl_get_tensor(rl_model* m, const char* name, float* out, int64_t n, int32_t merged, int32_t grad) {
	return guard([&] {
		at::NoGradGuard ng;
		std::string s(name);
		at::Tensor t;
		auto suffix = [&](const std::string& suf) {
			return s.size() > suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
		};
		if (suffix(".lora_a") || suffix(".lora_b")) {
			auto it = m->loras.find(s.substr(0, s.size() - 7));
			if (it == m->loras.end()) fail("no LoRA adapter on " + s);
			t = suffix(".lora_a") ? it->second->a : it->second->b;
		} else {
			auto it = m->params.find(s);
			if (it == m->params.end()) fail("no tensor " + s);
			t = it->second;
			if (merged && !grad) {
				auto lt = m->loras.find(s);
				if (lt != m->loras.end()) t = t + at::matmul(lt->second->b, lt->second->a) * lt->second->scale;
			}
		}
		if (grad) t = t.grad().defined() ? t.grad() : at::zeros_like(t);
		if (t.numel() != n) fail("tensor " + s + " has " + std::to_string(t.numel()) + " elements, buffer " + std::to_string(n));
		at::Tensor c = t.detach().to(at::kCPU).to(at::kFloat).contiguous();
		std::memcpy(out, c.data_ptr<float>(), n * sizeof(float));
	});
}

char* rl_lora_enable(rl_model* m, int32_t rank, float alpha, const char* targets, uint64_t seed) {
	return guard([&] {
		check_ready(m);
		if (!m->loras.empty()) fail("LoRA is already enabled");
		if (rank <= 0) fail("LoRA rank must be positive");
		std::string ts(targets);
		auto want = [&](const char* t) { return ("," + ts + ",").find("," + std::string(t) + ",") != std::string::npos; };
		auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
		m->trainable.clear();
		m->trainable_names.clear();
		m->decay.clear();
		m->m1.clear();
		m->m2.clear();
		m->steps = 0;
		for (auto& kv : m->params) kv.second.requires_grad_(false);
		for (auto& L : m->layers) {
			std::pair<const char*, Linear*> ls[] = {{"q", &L.q}, {"k", &L.k}, {"v", &L.v}, {"o", &L.o},
			                                        {"gate", &L.gate}, {"up", &L.up}, {"down", &L.down}};
			for (auto& p : ls) {
				if (!want(p.first)) continue;
				const int64_t in = p.second->w.size(1), out = p.second->w.size(0);
				auto l = std::make_shared<Lora>();
				// PEFT's initialization: A uniform in ±1/sqrt(in), B zero, so that training
				// starts from the base model exactly.
				const double bound = 1.0 / std::sqrt(double(in));
				l->a = (at::rand({rank, in}, gen, at::kFloat) * (2 * bound) - bound).to(m->opts.device()).to(m->opts.dtype());
				l->b = at::zeros({out, rank}, m->opts);
				l->a.requires_grad_(true);
				l->b.requires_grad_(true);
				l->scale = double(alpha) / double(rank);
				p.second->lora = l;
				m->loras[p.second->name] = l;
				m->trainable.push_back(l->a);
				m->trainable.push_back(l->b);
				m->trainable_names.push_back(p.second->name + ".lora_a");
				m->trainable_names.push_back(p.second->name + ".lora_b");
				m->decay.push_back(true);
				m->decay.push_back(true);
			}
		}
		if (m->loras.empty()) fail("no LoRA target matched \"" + ts + "\" (use q,k,v,o,gate,up,down)");
	});
}

char* rl_logprobs(rl_model* m, const rl_batch* b, float temperature, int32_t no_lora, double* logprob, double* raw,
                  double* entropy, double* sc, double* zmax) {
	return guard([&] {
		check_ready(m);
		if (!(temperature > 0)) fail("temperature must be positive");
		at::NoGradGuard ng;
		Compute prec(*m);
		at::Tensor tok = batch_tokens(*m, b);
		at::Tensor h = hidden(*m, layout(*m, b, tok), no_lora != 0);
		const int64_t T = b->T;
		const double logV = std::log(double(m->cfg.n_vocab));
		at::Tensor W = out_weight(*m);
		std::vector<double*> outs = {logprob, raw, entropy, sc, zmax};
		for (double* o : outs)
			if (o) std::memset(o, 0, sizeof(double) * b->B * T);
		for (int64_t i = 0; i < b->B; i++) {
			const int64_t n = b->lengths[i] - 1;  // predictions of tokens 1..len-1
			if (n <= 0) continue;
			// float64 from the logits on: self-certainty sums V terms, which float32 rounds badly
			at::Tensor z = at::linear(h[i].narrow(0, 0, n), W).to(at::kCPU).to(at::kDouble);
			at::Tensor tgt = tok[i].narrow(0, 1, n).to(at::kCPU).unsqueeze(1);
			at::Tensor lse = at::logsumexp(z, -1);
			at::Tensor zt = z / double(temperature);
			at::Tensor lp = zt.gather(1, tgt).squeeze(1) - at::logsumexp(zt, -1);
			at::Tensor rl = z.gather(1, tgt).squeeze(1) - lse;
			at::Tensor ent = lse - (at::softmax(z, -1) * z).sum(-1);
			at::Tensor s = lse - z.mean(-1) - logV;
			at::Tensor res[] = {lp, rl, ent, s, zmax ? z.abs().amax(-1) : at::Tensor()};
			for (int j = 0; j < 5; j++) {
				if (!outs[j]) continue;
				at::Tensor r = res[j].contiguous();
				std::memcpy(outs[j] + i * T + 1, r.data_ptr<double>(), sizeof(double) * n);
			}
		}
	});
}

char* rl_token_logprobs(rl_model* m, const rl_batch* b, const float* mask, float temperature, int32_t no_lora,
                        double* logprob) {
	return guard([&] {
		check_ready(m);
		if (!(temperature > 0)) fail("temperature must be positive");
		at::NoGradGuard ng;
		Compute prec(*m);
		const int64_t B = b->B, T = b->T;
		std::memset(logprob, 0, sizeof(double) * B * T);
		if (T < 2) return;
		at::Tensor tok = batch_tokens(*m, b);
		at::Tensor sel = completion_mask(*m, mask, B, T);
		const int64_t N = sel.sum().item<int64_t>();
		if (N == 0) return;
		at::Tensor h = hidden(*m, layout(*m, b, tok), no_lora != 0).narrow(1, 0, T - 1);
		at::Tensor hs = h.masked_select(sel.unsqueeze(-1)).view({N, h.size(2)});
		at::Tensor tgt = tok.narrow(1, 1, T - 1).masked_select(sel);
		// The logits of a chunk of positions at a time: [chunk, V] float32 instead of [N, V].
		const int64_t chunk = head_rows(*m);
		std::vector<at::Tensor> parts;
		for (int64_t lo = 0; lo < N; lo += chunk) {
			const int64_t n = std::min(chunk, N - lo);
			parts.push_back(target_logprobs(*m, hs.narrow(0, lo, n), tgt.narrow(0, lo, n), temperature));
		}
		at::Tensor lp = at::cat(parts).to(at::kDouble).to(at::kCPU);
		at::Tensor out = at::from_blob(logprob, {B, T}, at::kDouble);
		out.narrow(1, 1, T - 1).masked_scatter_(sel.to(at::kCPU), lp);
	});
}

char* rl_loss_backward(rl_model* m, const rl_batch* b, const rl_loss_args* a, rl_loss_stats* st) {
	return guard([&] {
		check_ready(m);
		std::memset(st, 0, sizeof(*st));
		if (!(a->temperature > 0)) fail("temperature must be positive");
		if (a->beta != 0 && !a->ref_logprob) fail("beta > 0 needs reference log-probs");
		if (!a->row_weight) fail("loss row weights missing");
		const int64_t B = b->B, T = b->T;
		at::Tensor tok = batch_tokens(*m, b);
		auto dev = m->opts.device();
		at::Tensor sel = completion_mask(*m, a->mask, B, T);
		Compute prec(*m);
		const int64_t N = sel.sum().item<int64_t>();
		if (N == 0) return;  // nothing to train in this micro-batch
		at::Tensor rows = at::arange(B, at::TensorOptions().dtype(at::kLong).device(dev)).view({B, 1}).expand({B, T - 1});
		at::Tensor row = rows.masked_select(sel);
		// head computes the loss from the last block's output xL.
		const rlif::LossContext ctx{a, B, T, sel, row};
		rlif::LossTerms terms;
		HeadLogprobs head_lp;
		auto head = [&](const at::Tensor& xL) {
			at::Tensor h = rms(xL, m->output_norm, m->cfg.rms_eps).narrow(1, 0, T - 1);
			at::Tensor hs = h.masked_select(sel.unsqueeze(-1)).view({N, h.size(2)});
			at::Tensor tgt = tok.narrow(1, 1, T - 1).masked_select(sel);
			const bool bonus = a->opt.entropy_weight != 0;
			at::Tensor lp = head_lp(*m, hs, tgt, a->temperature, a->opt.entropy_q > 0 || bonus, bonus);
			return rlif::policy_loss(ctx, lp, head_lp.entropy, terms);
		};
		const Layout lay = layout(*m, b, tok);
		at::Tensor bias = causal_bias(*m, lay.positions());
		at::Tensor loss;
		if (!a->recompute) {
			Acts x = embed(*m, lay);
			for (auto& L : m->layers) x = layer(*m, L, lay, x, bias, false);
			loss = head(whole(lay, x));
			loss.backward();
			head_lp.backward(*m);
		} else {
			// Activation recompute: keep only each block's input, then walk back
			// recomputing one block at a time. Memory: one block's activations instead of
			// all of them; cost: one more forward.
			std::vector<Acts> xs;
			Acts x;
			{
				at::NoGradGuard ng;
				x = embed(*m, lay);
				for (auto& L : m->layers) {
					xs.push_back(x);
					x = layer(*m, L, lay, x, bias, false);
				}
			}
			// Autocast caches the bf16 weight casts made under no-grad, which carry no
			// gradient path to the masters: the recomputation must cast them afresh.
			if (prec.on) at::autocast::clear_cache();
			Acts xL = leaf(x);
			loss = head(whole(lay, xL));
			loss.backward();
			head_lp.backward(*m);
			at::Tensor g = grads(xL);
			for (int64_t l = int64_t(m->layers.size()) - 1; l >= 0; l--) {
				Acts xin = leaf(xs[l]);
				flat(layer(*m, m->layers[l], lay, xin, bias, false)).backward(g);
				g = grads(xin);
				xs[l] = Acts();
			}
			if (m->tok_embd.requires_grad()) flat(embed(*m, lay)).backward(g);
		}
		at::NoGradGuard ng;
		st->loss = loss.item<double>();
		st->tokens = double(N);
		rlif::loss_stats(ctx, terms, st);
	});
}

char* rl_zero_grad(rl_model* m) {
	return guard([&] {
		for (auto& p : m->trainable)
			if (p.grad().defined()) p.mutable_grad() = at::Tensor();
	});
}

char* rl_step(rl_model* m, const rl_adamw* o, double* grad_norm) {
	return guard([&] {
		check_ready(m);
		at::NoGradGuard ng;
		double sq = 0;
		for (auto& p : m->trainable)
			if (p.grad().defined()) sq += p.grad().to(at::kDouble).pow(2).sum().item<double>();
		const double norm = std::sqrt(sq);
		*grad_norm = norm;
		if (!std::isfinite(norm)) fail("non-finite gradient norm");
		const double clip = (o->max_grad_norm > 0 && norm > o->max_grad_norm) ? o->max_grad_norm / (norm + 1e-6) : 1.0;
		m->init_moments();
		m->steps++;
		const double bc1 = 1 - std::pow(o->beta1, double(m->steps)), bc2 = 1 - std::pow(o->beta2, double(m->steps));
		for (size_t i = 0; i < m->trainable.size(); i++) {
			at::Tensor& p = m->trainable[i];
			if (!p.grad().defined()) continue;
			at::Tensor g = p.grad().to(at::kFloat) * clip;
			if (m->decay[i] && o->weight_decay > 0) p.mul_(1 - o->lr * o->weight_decay);  // decoupled (AdamW)
			m->m1[i].mul_(o->beta1).add_(g, 1 - o->beta1);
			m->m2[i].mul_(o->beta2).addcmul_(g, g, 1 - o->beta2);
			at::Tensor upd = m->m1[i] / (m->m2[i].sqrt() / std::sqrt(bc2) + o->eps) * (o->lr / bc1);
			p.sub_(upd.to(p.scalar_type()));
			p.mutable_grad() = at::Tensor();
		}
	});
}

int64_t rl_trainable(rl_model* m) {
	int64_t n = 0;
	for (auto& p : m->trainable) n += p.numel();
	return n;
}

int64_t rl_trainable_count(rl_model* m) { return int64_t(m->trainable.size()); }

char* rl_trainable_info(rl_model* m, int64_t i, char* name, int32_t name_len, int64_t* numel) {
	return guard([&] {
		if (i < 0 || i >= int64_t(m->trainable.size())) fail("trainable tensor index out of range");
		const std::string& n = m->trainable_names[i];
		if (int32_t(n.size()) >= name_len) fail("name buffer too small");
		std::memcpy(name, n.c_str(), n.size() + 1);
		*numel = m->trainable[i].numel();
	});
}

char* rl_state_io(rl_model* m, int64_t i, int32_t kind, float* buf, int64_t n, int32_t write) {
	return guard([&] {
		if (i < 0 || i >= int64_t(m->trainable.size())) fail("trainable tensor index out of range");
		if (kind < 0 || kind > 2) fail("unknown state kind");
		at::NoGradGuard ng;
		if (kind > 0) m->init_moments();
		at::Tensor& t = kind == 0 ? m->trainable[i] : (kind == 1 ? m->m1[i] : m->m2[i]);
		if (t.numel() != n) fail("state tensor " + m->trainable_names[i] + " has " + std::to_string(t.numel()) + " elements, buffer " + std::to_string(n));
		if (write) {
			at::Tensor src = at::from_blob(buf, t.sizes(), at::kFloat);
			t.copy_(src);
		} else {
			at::Tensor c = t.detach().to(at::kCPU).to(at::kFloat).contiguous();
			std::memcpy(buf, c.data_ptr<float>(), n * sizeof(float));
		}
	});
}

int64_t rl_get_steps(rl_model* m) { return m->steps; }
void rl_set_steps(rl_model* m, int64_t steps) { m->steps = steps; }

char* rl_matmul_bench(int32_t n, int32_t reps, int32_t threads, int32_t bf16, double* seconds) {
	return guard([&] {
		if (threads > 0) at::set_num_threads(threads);
		at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
		if (bf16) {
			a = a.to(at::kBFloat16);
			b = b.to(at::kBFloat16);
		}
		at::Tensor c = at::matmul(a, b);  // warm-up
		auto t0 = std::chrono::steady_clock::now();
		for (int i = 0; i < reps; i++) c = at::matmul(a, b);
		*seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
	});
}

// rl_allocator_free_bytes is the memory the process's allocator holds free but mapped,
// ready for the next allocation without the kernel: the activations of the last step,
// freed, are there, and MemAvailable does not count them. tcmalloc (which rlif links, see
// scripts/cgo-env.sh) answers through its MallocExtension C API, found at run time so
// that a build without it still links; glibc's malloc through mallinfo2.
int32_t rl_cuda_devices(void) {
	try {
		return int32_t(torch::cuda::device_count());
	} catch (...) {
		return 0; // a driver that fails to initialize is no device
	}
}

int64_t rl_allocator_free_bytes(void) {
	using property_fn = int (*)(const char*, size_t*);
	if (auto get = reinterpret_cast<property_fn>(dlsym(RTLD_DEFAULT, "MallocExtension_GetNumericProperty"))) {
		size_t heap = 0, used = 0, unmapped = 0;
		if (get("generic.heap_size", &heap) && get("generic.current_allocated_bytes", &used) &&
		    get("tcmalloc.pageheap_unmapped_bytes", &unmapped) && heap >= used + unmapped)
			return int64_t(heap - used - unmapped);
		return 0;
	}
	struct mallinfo2 mi = mallinfo2();
	return int64_t(mi.fordblks);
}

// rl_release_free_memory hands what rl_allocator_free_bytes counts back to the kernel
// (tcmalloc's MallocExtension, glibc's malloc_trim): the next allocations fault their
// pages in again, so it is for the end of the work, not between steps.
void rl_release_free_memory(void) {
	using release_fn = void (*)(void);
	if (auto release = reinterpret_cast<release_fn>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"))) {
		release();
		return;
	}
	malloc_trim(0);
}

}  // extern "C"

std::vector<at::Tensor>& rlif::trainable_tensors(rl_model* m) { return m->trainable; }

at::Tensor& rlif::optimizer_moment(rl_model* m, int64_t i, int kind) {
	if (i < 0 || i >= int64_t(m->trainable.size())) fail("trainable tensor index out of range");
	if (kind != 1 && kind != 2) fail("unknown moment");
	m->init_moments();
	return kind == 1 ? m->m1[i] : m->m2[i];
}
