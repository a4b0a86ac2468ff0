package torch

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// Backends of a process group, as the shim numbers them.
const (
	BackendGloo = C.RL_BACKEND_GLOO
	BackendNCCL = C.RL_BACKEND_NCCL
)

// Reduce operations.
const (
	ReduceSum = C.RL_REDUCE_SUM
	ReduceMax = C.RL_REDUCE_MAX
	ReduceMin = C.RL_REDUCE_MIN
)

// GroupConfig locates a rank in its job, in torchrun's terms.
type GroupConfig struct {
	Addr        string // MASTER_ADDR: rank 0 serves the rendezvous store there
	Port        int    // MASTER_PORT
	Rank, World int
	Timeout     time.Duration // of the rendezvous and of every collective
	Backend     int
	CUDA        int // NCCL: this rank's device
	Threads     int // Gloo worker threads (0: 1)
	// AgentStore: a launcher (torchrun's agent) serves the store at Addr:Port, so rank 0
	// connects to it as the others do; Prefix is put before every key this job stores.
	AgentStore bool
	Prefix     string
}

// Group is one rank's membership of a c10d process group. Its methods are collectives:
// every rank must call the same ones in the same order. Not safe for concurrent use.
type Group struct {
	p *C.rl_group
}

// NewGroup joins the job: it returns once every rank has arrived, or with an error after
// the timeout.
func NewGroup(c GroupConfig) (*Group, error) {
	ca := C.CString(c.Addr)
	defer C.free(unsafe.Pointer(ca))
	cp := C.CString(c.Prefix)
	defer C.free(unsafe.Pointer(cp))
	cc := C.rl_group_config{addr: ca, port: C.int32_t(c.Port), rank: C.int32_t(c.Rank), world: C.int32_t(c.World),
		timeout_ms: C.int64_t(c.Timeout.Milliseconds()), backend: C.int32_t(c.Backend), cuda: C.int32_t(c.CUDA), threads: C.int32_t(c.Threads),
		agent_store: b2i(c.AgentStore), prefix: cp}
	var p *C.rl_group
	if err := errOf(C.rl_group_new(&cc, &p)); err != nil {
		return nil, err
	}
	return &Group{p: p}, nil
}

// Close leaves the group.
func (g *Group) Close() {
	if g != nil && g.p != nil {
		C.rl_group_free(g.p)
		g.p = nil
	}
}

// AllReduceGrads sums the gradients of m's trainable tensors over the ranks, in flat
// buckets of at most bucketBytes (0: 25 MiB). It returns the bytes this rank sent in.
func (g *Group) AllReduceGrads(m *Model, bucketBytes int64) (float64, error) {
	var n C.double
	err := errOf(C.rl_group_allreduce_grads(g.p, m.p, C.int64_t(bucketBytes), &n))
	return float64(n), err
}

// AllReduce reduces v in place over the ranks with op (ReduceSum, ReduceMax, ReduceMin).
func (g *Group) AllReduce(v []float64, op int) error {
	if len(v) == 0 {
		return nil
	}
	return errOf(C.rl_group_allreduce_f64(g.p, (*C.double)(&v[0]), C.int32_t(len(v)), C.int32_t(op)))
}

// BroadcastParams copies rank root's trainable tensors into every rank's; with optimizer,
// Adam's moments and step count too.
func (g *Group) BroadcastParams(m *Model, root int, optimizer bool) error {
	return errOf(C.rl_group_broadcast_params(g.p, m.p, C.int32_t(root), b2i(optimizer)))
}

// CheckParams compares a hash of every rank's trainable tensors (and optimizer step)
// with rank 0's; a mismatch is an error naming the ranks that differ. It returns this
// rank's hash.
func (g *Group) CheckParams(m *Model) (uint64, error) {
	var h C.uint64_t
	err := errOf(C.rl_group_check_params(g.p, m.p, &h))
	return uint64(h), err
}

// Barrier waits for every rank.
func (g *Group) Barrier() error { return errOf(C.rl_group_barrier(g.p)) }

// Put stores value under key in the job's rendezvous store.
func (g *Group) Put(key string, value []byte) error {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var p *C.uint8_t
	if len(value) > 0 {
		p = (*C.uint8_t)(unsafe.Pointer(&value[0]))
	}
	return errOf(C.rl_group_put(g.p, ck, p, C.int64_t(len(value))))
}

// Take waits for key in the rendezvous store (up to the group's timeout), returns its
// value and deletes it.
func (g *Group) Take(key string) ([]byte, error) {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	var p *C.uint8_t
	var n C.int64_t
	if err := errOf(C.rl_group_take(g.p, ck, &p, &n)); err != nil {
		return nil, err
	}
	defer C.free(unsafe.Pointer(p))
	return C.GoBytes(unsafe.Pointer(p), C.int(n)), nil
}
