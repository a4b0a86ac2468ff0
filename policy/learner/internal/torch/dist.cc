// rlif's data-parallel process group: libtorch's c10d, the engine torch.distributed runs
// on. A TCPStore (served by rank 0) is the rendezvous; ProcessGroupGloo moves CPU tensors,
// ProcessGroupNCCL CUDA ones (compiled only with -DRLIF_NCCL, against a CUDA libtorch).
// Calls are coarse: all the gradients of a model in a few flat buckets, a vector of
// scalars, the parameters. Every exception of c10d or gloo comes back as an error string
// that names this rank, and, when a peer on this host has died, that peer.
#include "shim.h"
#include "shim_internal.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef RLIF_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using rlif::fail;
using rlif::guard;

// From libtorch 2.0 on, a backend (Gloo, NCCL) is a c10d::Backend behind a ProcessGroup
// facade; in 1.13 it is the ProcessGroup itself. The collectives rlif calls are the same.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

struct rl_group {
	rl_group_config cfg{};
	std::string addr;
	std::chrono::milliseconds timeout{0};
	c10::intrusive_ptr<c10d::Store> store;
	c10::intrusive_ptr<Backend> pg;
	// Where every rank runs (hostname, pid), exchanged at the rendezvous, so that an error
	// can say which local peer is gone.
	std::vector<std::string> hosts;
	std::vector<int64_t> pids;
	std::string host;

	at::Device device() const {
		return cfg.backend == RL_BACKEND_NCCL ? at::Device(at::kCUDA, cfg.cuda) : at::Device(at::kCPU);
	}
};

namespace {

std::string hostname() {
	char buf[256] = {0};
	if (gethostname(buf, sizeof(buf) - 1) != 0) return "?";
	return buf;
}

// alive reports whether process pid exists and is not a zombie.
bool alive(int64_t pid) {
	if (kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
	std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!std::getline(f, line)) return true;  // no /proc: trust kill
	auto p = line.rfind(')');
	return !(p != std::string::npos && p + 2 < line.size() && line[p + 2] == 'Z');
}

// gone names the local peers that no longer run ("" when none is known gone).
std::string gone(const rl_group& g) {
	std::string out;
	for (size_t r = 0; r < g.pids.size(); r++) {
		if (int(r) == g.cfg.rank || g.hosts[r] != g.host || alive(g.pids[r])) continue;
		out += (out.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " (pid " + std::to_string(g.pids[r]) + ")";
	}
	return out;
}

// run runs a collective of group g and names the rank (and a dead peer) in its error.
template <typename F>
char* run(rl_group* g, const char* what, F&& f) {
	if (!g || !g->pg) return rlif::dup(std::string(what) + ": no process group");
	char* err = guard(f);
	if (!err) return nullptr;
	std::string msg(err);
	std::free(err);
	// c10d appends a backtrace to some messages: keep the first line.
	if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
	std::string who = gone(*g);
	std::ostringstream o;
	o << "rank " << g->cfg.rank << " of " << g->cfg.world << ": " << what << ": ";
	if (!who.empty()) o << who << " exited: ";
	o << msg;
	return rlif::dup(o.str());
}

void wait(rl_group* g, const c10::intrusive_ptr<c10d::Work>& w) {
	// Gloo applies the group's timeout to each of its transfers; the wait's own bound
	// covers a backend that would not (and is twice as long, so Gloo's error wins).
	if (!w->wait(g->timeout * 2)) fail("timed out after " + std::to_string(g->timeout.count() * 2) + " ms");
}

bool loopback(const std::string& a) { return a == "localhost" || a.rfind("127.", 0) == 0 || a == "::1"; }

}  // namespace

extern "C" {

char* rl_group_new(const rl_group_config* c, rl_group** out) {
	*out = nullptr;
	auto g = std::make_unique<rl_group>();
	g->cfg = *c;
	g->addr = c->addr ? c->addr : "";
	g->timeout = std::chrono::milliseconds(c->timeout_ms > 0 ? c->timeout_ms : 1800000);
	g->host = hostname();
	const std::string where = "rank " + std::to_string(c->rank) + " of " + std::to_string(c->world);
	char* err = guard([&] {
		if (c->world < 1) fail("world size must be at least 1");
		if (c->rank < 0 || c->rank >= c->world) fail("rank out of range [0, world size)");
		if (g->addr.empty()) fail("no master address (MASTER_ADDR)");
		if (c->port <= 0 || c->port > 65535) fail("master port out of range (MASTER_PORT)");
		c10d::TCPStoreOptions so;
		so.port = uint16_t(c->port);
		so.isServer = c->rank == 0 && !c->agent_store;
		so.numWorkers = size_t(c->world);
		so.waitWorkers = true;
		so.timeout = g->timeout;
		auto tcp = c10::make_intrusive<c10d::TCPStore>(g->addr, so);
		g->store = c10::make_intrusive<c10d::PrefixStore>(std::string(c->prefix ? c->prefix : "rlif"), tcp);
		auto pgStore = c10::make_intrusive<c10d::PrefixStore>("pg", g->store);
		if (c->backend == RL_BACKEND_GLOO) {
			auto o = c10d::ProcessGroupGloo::Options::create(g->timeout);
			// Every rank binds where it is reached: loopback when the job is local, else
			// GLOO_SOCKET_IFNAME's interface (as torch.distributed reads it) or the address
			// this host's name resolves to.
			const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
			if (ifname && *ifname)
				o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
			else if (loopback(g->addr))
				o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
			else
				o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
			o->threads = c->threads > 0 ? c->threads : 1;
			g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pgStore, c->rank, c->world, o);
		} else if (c->backend == RL_BACKEND_NCCL) {
#ifdef RLIF_NCCL
			// Without blocking wait, NCCL ignores the timeout and a lost peer hangs forever.
			setenv("NCCL_BLOCKING_WAIT", "1", 0);
			auto o = c10d::ProcessGroupNCCL::Options::create();
			o->timeout = g->timeout;
			g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(pgStore, c->rank, c->world, o);
#else
			fail("the NCCL backend is not compiled into this rlif (build against a CUDA libtorch: LIBTORCH=... make build)");
#endif
		} else {
			fail("unknown backend code");
		}
		// Where every rank runs, for the errors.
		std::string me = g->host + " " + std::to_string(int64_t(getpid()));
		g->store->set("peer/" + std::to_string(c->rank), std::vector<uint8_t>(me.begin(), me.end()));
		for (int r = 0; r < c->world; r++) {
			auto v = g->store->get("peer/" + std::to_string(r));
			std::string s(v.begin(), v.end());
			auto sp = s.rfind(' ');
			g->hosts.push_back(s.substr(0, sp));
			g->pids.push_back(std::stoll(s.substr(sp + 1)));
		}
	});
	if (err) {
		std::string msg(err);
		std::free(err);
		if (auto nl = msg.find('\n'); nl != std::string::npos) msg.resize(nl);
		return rlif::dup(where + ": rendezvous at " + g->addr + ":" + std::to_string(c->port) + ": " + msg);
	}
	*out = g.release();
	return nullptr;
}

void rl_group_free(rl_group* g) { delete g; }

char* rl_group_allreduce_grads(rl_group* g, rl_model* m, int64_t bucket_bytes, double* bytes) {
	return run(g, "all-reduce of the gradients", [&] {
		at::NoGradGuard ng;
		*bytes = 0;
		auto& ps = rlif::trainable_tensors(m);
		if (ps.empty()) return;
		if (bucket_bytes <= 0) bucket_bytes = int64_t(25) << 20;
		const auto dtype = ps[0].scalar_type();
		const int64_t per = int64_t(c10::elementSize(dtype));
		// A tensor without a gradient (no token reached it on this rank) takes part as
		// zeros: every rank must send the same buckets.
		for (auto& p : ps) {
			if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
			if (p.scalar_type() != dtype) fail("trainable tensors of mixed dtypes");
		}
		size_t lo = 0;
		while (lo < ps.size()) {
			size_t hi = lo;
			int64_t n = 0;
			while (hi < ps.size() && (hi == lo || (n + ps[hi].numel()) * per <= bucket_bytes)) n += ps[hi++].numel();
			std::vector<at::Tensor> parts;
			for (size_t i = lo; i < hi; i++) parts.push_back(ps[i].grad().reshape({-1}));
			std::vector<at::Tensor> flat{at::cat(parts).to(g->device())};
			wait(g, g->pg->allreduce(flat));
			*bytes += double(flat[0].numel() * per);
			int64_t off = 0;
			at::Tensor back = flat[0].to(ps[lo].device());
			for (size_t i = lo; i < hi; i++) {
				const int64_t k = ps[i].numel();
				ps[i].mutable_grad().copy_(back.narrow(0, off, k).view(ps[i].sizes()));
				off += k;
			}
			lo = hi;
		}
	});
}

char* rl_group_allreduce_f64(rl_group* g, double* v, int32_t n, int32_t op) {
	return run(g, "all-reduce of the step's scalars", [&] {
		if (n <= 0) return;
		c10d::AllreduceOptions o;
		switch (op) {
			case RL_REDUCE_SUM: o.reduceOp = c10d::ReduceOp::SUM; break;
			case RL_REDUCE_MAX: o.reduceOp = c10d::ReduceOp::MAX; break;
			case RL_REDUCE_MIN: o.reduceOp = c10d::ReduceOp::MIN; break;
			default: fail("unknown reduce op");
		}
		at::Tensor host = at::from_blob(v, {n}, at::kDouble);
		std::vector<at::Tensor> t{host.clone().to(g->device())};
		wait(g, g->pg->allreduce(t, o));
		host.copy_(t[0].to(at::kCPU));
	});
}

char* rl_group_broadcast_params(rl_group* g, rl_model* m, int32_t root, int32_t optimizer) {
	return run(g, optimizer ? "broadcast of the learner's state" : "broadcast of the parameters", [&] {
		at::NoGradGuard ng;
		c10d::BroadcastOptions o;
		o.rootRank = root;
		auto bcast = [&](at::Tensor& p) {
			std::vector<at::Tensor> t{p.detach().to(g->device()).contiguous()};
			wait(g, g->pg->broadcast(t, o));
			p.copy_(t[0]);
		};
		for (auto& p : rlif::trainable_tensors(m)) bcast(p);
		if (!optimizer) return;
		for (int kind = 1; kind <= 2; kind++) {
			for (int64_t i = 0; i < rl_trainable_count(m); i++) {
				// rl_state_io creates the moments (zeros) where the optimizer has none yet.
				at::Tensor& t = rlif::optimizer_moment(m, i, kind);
				bcast(t);
			}
		}
		at::Tensor steps = at::full({1}, rl_get_steps(m), at::kLong);
		bcast(steps);
		rl_set_steps(m, steps.item<int64_t>());
	});
}

char* rl_group_check_params(rl_group* g, rl_model* m, uint64_t* hash) {
	return run(g, "parameter check", [&] {
		at::NoGradGuard ng;
		// FNV-1a over 64-bit words of every trainable tensor's bits, then the step count:
		// exact (any flipped bit shows) and independent of thread counts.
		uint64_t h = 1469598103934665603ull;
		auto mix = [&](uint64_t w) { h = (h ^ w) * 1099511628211ull; };
		for (auto& p : rlif::trainable_tensors(m)) {
			at::Tensor c = p.detach().to(at::kCPU).contiguous();
			const size_t nb = size_t(c.numel()) * c.element_size();
			const auto* b = static_cast<const unsigned char*>(c.data_ptr());
			size_t i = 0;
			for (; i + 8 <= nb; i += 8) {
				uint64_t w;
				std::memcpy(&w, b + i, 8);
				mix(w);
			}
			for (; i < nb; i++) mix(b[i]);
		}
		mix(uint64_t(rl_get_steps(m)));
		*hash = h;
		// Rank 0's hash to everyone; each rank flags itself on a mismatch; the flags summed
		// name the ranks.
		at::Tensor mine = at::empty({1}, at::kLong);
		std::memcpy(mine.data_ptr(), &h, 8);
		std::vector<at::Tensor> ref{mine.clone().to(g->device())};
		wait(g, g->pg->broadcast(ref));
		const bool same = ref[0].to(at::kCPU).equal(mine);
		std::vector<at::Tensor> flags{at::zeros({g->cfg.world}, at::kLong)};
		flags[0][g->cfg.rank] = same ? 0 : 1;
		flags[0] = flags[0].to(g->device());
		wait(g, g->pg->allreduce(flags));
		at::Tensor f = flags[0].to(at::kCPU);
		std::string bad;
		for (int r = 0; r < g->cfg.world; r++)
			if (f[r].item<int64_t>() != 0) bad += (bad.empty() ? "" : ", ") + std::to_string(r);
		if (!bad.empty()) fail("the weights of rank(s) " + bad + " differ from rank 0's");
	});
}

char* rl_group_barrier(rl_group* g) {
	return run(g, "barrier", [&] { wait(g, g->pg->barrier()); });
}

char* rl_group_put(rl_group* g, const char* key, const uint8_t* value, int64_t n) {
	return run(g, "store", [&] { g->store->set(std::string("kv/") + key, std::vector<uint8_t>(value, value + n)); });
}

char* rl_group_take(rl_group* g, const char* key, uint8_t** out, int64_t* n) {
	*out = nullptr;
	*n = 0;
	return run(g, "store", [&] {
		const std::string k = std::string("kv/") + key;
		std::vector<uint8_t> v = g->store->get(k);  // waits up to the store's timeout
		g->store->deleteKey(k);
		*out = static_cast<uint8_t*>(std::malloc(v.size() ? v.size() : 1));
		if (!*out) fail("out of memory");
		if (!v.empty()) std::memcpy(*out, v.data(), v.size());
		*n = int64_t(v.size());
	});
}

}  // extern "C"
