// rlif's data-parallel process group: libtorch's c10d, the engine torch.distributed runs
// on. A TCPStore (served by rank 0) is the rendezvous; ProcessGroupGloo moves CPU tensors,
// ProcessGroupNCCL CUDA ones (compiled only with -DRLIF_NCCL, against a CUDA libtorch).
// Calls are coarse: all the gradients of a model in a few flat buckets, a vector of
// scalars, the parameters. Every exception of c10d or gloo comes back as an error string
// that names this rank, and, when a peer on this host has died, that peer. The rendezvous
// is bounded by the timeout, and its errors name the ranks that never joined, or a
// MASTER_PORT that another process holds.
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

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
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
	// A peer that exits closes its sockets before it leaves the process table (or turns
	// zombie): the error can come first. A moment's grace lets the error name it.
	for (int i = 0; who.empty() && i < 25; i++) {
		std::this_thread::sleep_for(std::chrono::milliseconds(20));
		who = gone(*g);
	}
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

// seconds writes a timeout as --dist-timeout takes it ("3s", "1.5s").
std::string seconds(std::chrono::milliseconds t) {
	std::ostringstream o;
	o << double(t.count()) / 1000 << "s";
	return o.str();
}

// QuietLog keeps libtorch's log quiet while it lives: c10d logs each socket failure of
// the rendezvous to stderr and then throws it, and rlif reports the exception, on one line.
// c10's own logger reads FLAGS_caffe2_log_level; a libtorch built with glog (Debian's)
// logs through glog, whose threshold is looked up at run time: rlif does not link glog,
// libtorch brings it.
class QuietLog {
public:
	QuietLog() : glog_(static_cast<int*>(dlsym(RTLD_DEFAULT, "_ZN3fLI17FLAGS_minloglevelE"))) {
		saved_c10_ = FLAGS_caffe2_log_level;
		FLAGS_caffe2_log_level = fatal;
		if (glog_) {
			saved_glog_ = *glog_;
			*glog_ = fatal;
		}
	}
	~QuietLog() {
		FLAGS_caffe2_log_level = saved_c10_;
		if (glog_) *glog_ = saved_glog_;
	}
	QuietLog(const QuietLog&) = delete;
	QuietLog& operator=(const QuietLog&) = delete;

private:
	static constexpr int fatal = 3;  // the severity of FATAL, in c10 and in glog
	int* glog_;
	int saved_c10_ = 0, saved_glog_ = 0;
};

// port_in_use says whether another socket holds port for listening on this host: a bind
// where c10d's server binds (any address, IPv4 or IPv6) fails with EADDRINUSE.
bool port_in_use(int port) {
	for (int family : {AF_INET6, AF_INET}) {
		int fd = socket(family, SOCK_STREAM, 0);
		if (fd < 0) continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		sockaddr_storage ss{};
		socklen_t n;
		if (family == AF_INET6) {
			auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
			a->sin6_family = AF_INET6;
			a->sin6_addr = in6addr_any;
			a->sin6_port = htons(uint16_t(port));
			n = sizeof(*a);
		} else {
			auto* a = reinterpret_cast<sockaddr_in*>(&ss);
			a->sin_family = AF_INET;
			a->sin_addr.s_addr = htonl(INADDR_ANY);
			a->sin_port = htons(uint16_t(port));
			n = sizeof(*a);
		}
		const bool used = bind(fd, reinterpret_cast<sockaddr*>(&ss), n) != 0 && errno == EADDRINUSE;
		close(fd);
		if (used) return true;
	}
	return false;
}

// refused says whether every address of host refuses a TCP connection to port at once:
// nothing listens there. An address that does not answer within a second, or any other
// failure, is not a refusal.
bool refused(const std::string& host, int port) {
	addrinfo hints{};
	hints.ai_socktype = SOCK_STREAM;
	addrinfo* res = nullptr;
	if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0) return false;
	bool all = res != nullptr;
	for (addrinfo* a = res; a && all; a = a->ai_next) {
		int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, a->ai_protocol);
		if (fd < 0) {
			all = false;
			break;
		}
		int err = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
		if (err == EINPROGRESS) {
			pollfd p{fd, POLLOUT, 0};
			err = ETIMEDOUT;
			if (poll(&p, 1, 1000) == 1) {
				socklen_t n = sizeof(err);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n);
			}
		}
		close(fd);
		all = err == ECONNREFUSED;
	}
	freeaddrinfo(res);
	return all;
}

// ranks writes rank numbers as a list of ranges: "1", "1, 3", "1-63".
std::string ranks(const std::vector<int>& rs) {
	std::string out;
	for (size_t i = 0; i < rs.size();) {
		size_t j = i;
		while (j + 1 < rs.size() && rs[j + 1] == rs[j] + 1) j++;
		out += (out.empty() ? "" : ", ") + std::to_string(rs[i]);
		if (j > i) out += (j == i + 1 ? ", " : "-") + std::to_string(rs[j]);
		i = j + 1;
	}
	return out;
}

std::string peer_key(int r) { return "peer/" + std::to_string(r); }

// first_line is an exception's message up to its first line break: libtorch 2.x appends
// the C++ frames that raised it on the lines after, which would push the rest of an
// error message off the one line a user sees.
std::string first_line(const std::exception& e) {
	std::string s = e.what();
	return s.substr(0, s.find('\n'));
}

// Meeting is what a rank needs to meet the others in the rendezvous store.
struct Meeting {
	std::string addr, prefix;
	c10d::TCPStoreOptions so;
	int rank, world;
	std::string me;      // this rank's peer key's value
	std::string server;  // who serves the store: "rank 0", or the launcher's agent
	std::chrono::steady_clock::time_point deadline;
};

// meet opens this rank's end of the rendezvous store (rank 0 serves it, unless a
// launcher's agent does; the others connect to it), writes this rank's peer key, and waits
// for every rank's, up to the deadline. The ranks are counted by their keys, so that an
// error names the ranks that never joined.
c10::intrusive_ptr<c10d::Store> meet(const Meeting& m) {
	c10::intrusive_ptr<c10d::Store> store;
	try {
		store = c10::make_intrusive<c10d::PrefixStore>(m.prefix, c10::make_intrusive<c10d::TCPStore>(m.addr, m.so));
	} catch (const std::exception&) {
		const std::string port = std::to_string(m.so.port);
		if (m.so.isServer && port_in_use(m.so.port))
			fail("port " + port + " is in use by another process: stop it, or give every rank another MASTER_PORT");
		if (!m.so.isServer && refused(m.addr, m.so.port))
			fail(m.server + " never joined within " + seconds(m.so.timeout) + " (--dist-timeout): nothing listens at port " + port +
			     "; start " + m.server + ", or check MASTER_ADDR and MASTER_PORT");
		throw;
	}
	store->set(peer_key(m.rank), std::vector<uint8_t>(m.me.begin(), m.me.end()));
	std::vector<std::string> all;
	for (int r = 0; r < m.world; r++) all.push_back(peer_key(r));
	const std::string advice = " ranks did; start every rank, with the same WORLD_SIZE, MASTER_ADDR and MASTER_PORT";
	// Polled with check, which does not block, so that the missing ranks are known at the end;
	// each poll counts the ranks in, so that a rank whose store goes away first (rank 0 gave
	// up at its own, slightly earlier, deadline) still says how far the meeting got.
	int joined = 0;
	for (;;) {
		const bool late = std::chrono::steady_clock::now() >= m.deadline;
		std::vector<int> missing;
		try {
			if (store->check(all)) break;
			joined = 0;
			for (int r = 0; r < m.world; r++) {
				if (store->check({peer_key(r)})) joined++;
				else missing.push_back(r);
			}
		} catch (const std::exception& e) {
			if (m.so.isServer) throw;
			fail(m.server + " ended the rendezvous before every rank joined (" + first_line(e) + "; its error names the missing ranks): " +
			     std::to_string(joined) + " of " + std::to_string(m.world) + advice);
		}
		if (late)
			fail((missing.size() == 1 ? "rank " : "ranks ") + ranks(missing) + " never joined within " + seconds(m.so.timeout) +
			     " (--dist-timeout): " + std::to_string(joined) + " of " + std::to_string(m.world) + advice);
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	return store;
}

// meetingGrace is how long past its deadline a meeting may take before it is given up.
constexpr std::chrono::seconds meetingGrace{5};

// meet_bounded meets on a thread of its own, given up a grace period after the deadline.
// c10d bounds the store's connect, but not every exchange after it: a process at the port
// that accepts connections and never answers (another program's, or a stopped rank 0)
// would hold the rank forever. A thread given up stays blocked until the process ends,
// which the error makes it do; it owns everything it touches.
c10::intrusive_ptr<c10d::Store> meet_bounded(const Meeting& m) {
	using Store = c10::intrusive_ptr<c10d::Store>;
	auto met = std::make_shared<std::promise<Store>>();
	std::future<Store> store = met->get_future();
	std::thread([met, m] {
		try {
			met->set_value(meet(m));
		} catch (...) {
			met->set_exception(std::current_exception());
		}
	}).detach();
	if (store.wait_until(m.deadline + meetingGrace) == std::future_status::ready) return store.get();
	fail("port " + std::to_string(m.so.port) + " accepted a connection but did not answer as " + m.server + "'s rendezvous store within " +
	     seconds(m.so.timeout) + " (--dist-timeout): the port is in use by another process (or " + m.server +
	     " is stopped); give every rank another MASTER_PORT, or free this one");
}

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
	QuietLog quiet;
	char* err = guard([&] {
		if (c->world < 1) fail("world size must be at least 1");
		if (c->rank < 0 || c->rank >= c->world) fail("rank out of range [0, world size)");
		if (g->addr.empty()) fail("no master address (MASTER_ADDR)");
		if (c->port <= 0 || c->port > 65535) fail("master port out of range (MASTER_PORT)");
		Meeting m;
		m.deadline = std::chrono::steady_clock::now() + g->timeout;
		m.addr = g->addr;
		m.prefix = c->prefix ? c->prefix : "rlif";
		m.so.port = uint16_t(c->port);
		m.so.isServer = c->rank == 0 && !c->agent_store;
		m.so.numWorkers = size_t(c->world);
		m.so.waitWorkers = false;  // meet counts the ranks in
		m.so.timeout = g->timeout;
		m.rank = c->rank;
		m.world = c->world;
		// Where every rank runs, for the errors.
		m.me = g->host + " " + std::to_string(int64_t(getpid()));
		m.server = c->agent_store ? "the launcher's agent" : "rank 0";
		g->store = meet_bounded(m);
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
		for (int r = 0; r < c->world; r++) {
			auto v = g->store->get(peer_key(r));
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
