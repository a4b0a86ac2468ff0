package learner

import (
	"errors"
	"fmt"
	"time"

	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// Process-group backends.
const (
	BackendGloo = "gloo" // CPU tensors over TCP
	BackendNCCL = "nccl" // CUDA tensors; needs rlif built against a CUDA libtorch
)

// GroupConfig places this process in a data-parallel job, in torchrun's terms.
type GroupConfig struct {
	Addr        string // MASTER_ADDR: rank 0 serves the rendezvous there
	Port        int    // MASTER_PORT
	Rank, World int    // RANK, WORLD_SIZE
	// Timeout bounds the rendezvous and every collective: a rank that is gone or hangs
	// makes the others fail after it, instead of waiting forever. Default 10 minutes.
	Timeout time.Duration
	Backend string // gloo (default) or nccl
	CUDA    int    // nccl: this rank's device (LOCAL_RANK)
	// AgentStore says that a launcher serves the rendezvous store at Addr:Port (torchrun's
	// agent does, TORCHELASTIC_USE_AGENT_STORE=True): rank 0 connects to it like the
	// others. Attempt names this start of the job in the store (torchrun's run id and
	// restart count), whose keys outlive a restart.
	AgentStore bool
	Attempt    string
}

// Group is this rank's membership of a data-parallel job: the learners of all ranks
// take the same optimizer steps on gradients summed over the ranks.
type Group struct {
	g           *torch.Group
	rank, world int
}

// JoinGroup joins the job: it returns when every rank has arrived (an error after the
// timeout).
func JoinGroup(c GroupConfig) (*Group, error) {
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	backend := torch.BackendGloo
	switch c.Backend {
	case "", BackendGloo:
	case BackendNCCL:
		backend = torch.BackendNCCL
	default:
		return nil, fmt.Errorf("distributed backend %q: want gloo or nccl", c.Backend)
	}
	g, err := torch.NewGroup(torch.GroupConfig{Addr: c.Addr, Port: c.Port, Rank: c.Rank, World: c.World,
		Timeout: c.Timeout, Backend: backend, CUDA: c.CUDA, AgentStore: c.AgentStore, Prefix: "rlif/" + c.Attempt})
	if err != nil {
		return nil, err
	}
	return &Group{g: g, rank: c.Rank, world: c.World}, nil
}

// Rank is this process's rank; World the number of ranks.
func (g *Group) Rank() int  { return g.rank }
func (g *Group) World() int { return g.world }

// Close leaves the job.
func (g *Group) Close() {
	if g != nil {
		g.g.Close()
	}
}

// Sum adds v over the ranks, in place.
func (g *Group) Sum(v []float64) error { return g.g.AllReduce(v, torch.ReduceSum) }

// Max takes the largest of v over the ranks, in place.
func (g *Group) Max(v []float64) error { return g.g.AllReduce(v, torch.ReduceMax) }

// Barrier waits for every rank.
func (g *Group) Barrier() error { return g.g.Barrier() }

// CheckParams compares the trainer's weights and optimizer step over the ranks (a hash
// of their bits against rank 0's); a mismatch is an error naming the ranks that differ.
func (t *Trainer) CheckParams() error {
	if t.cfg.Group == nil {
		return nil
	}
	m := t.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	_, err := t.cfg.Group.g.CheckParams(m.t)
	return err
}

// globalBatch are the sizes the loss aggregations divide by: over every rank's samples.
type globalBatch struct {
	samples, tokens, microBatches, maxLen int
}

// global sums (and, for the longest completion, maxes) the local batch sizes over the
// group; without a group they are the local ones.
func (t *Trainer) global(local globalBatch) (globalBatch, error) {
	g := t.cfg.Group
	if g == nil {
		return local, nil
	}
	defer t.timeComm(time.Now())
	sums := []float64{float64(local.samples), float64(local.tokens), float64(local.microBatches)}
	if err := g.Sum(sums); err != nil {
		return local, err
	}
	maxs := []float64{float64(local.maxLen)}
	if err := g.Max(maxs); err != nil {
		return local, err
	}
	t.commBytes += 8 * float64(len(sums)+len(maxs))
	return globalBatch{samples: int(sums[0]), tokens: int(sums[1]), microBatches: int(sums[2]), maxLen: int(maxs[0])}, nil
}

func (t *Trainer) timeComm(t0 time.Time) { t.commSeconds += time.Since(t0).Seconds() }

// reduce sums the pass's per-rank metric shares and gradients over the group, so that
// every rank steps on the same gradient and reports the same numbers.
func (t *Trainer) reduce(ps *PassStats) error {
	g := t.cfg.Group
	if g == nil {
		return nil
	}
	defer t.timeComm(time.Now())
	fields := ps.summed()
	v := make([]float64, len(fields))
	for i, f := range fields {
		v[i] = *f
	}
	if err := g.Sum(v); err != nil {
		return err
	}
	for i, f := range fields {
		*f = v[i]
	}
	n, err := g.g.AllReduceGrads(t.m.t, 0)
	if err != nil {
		return err
	}
	t.commBytes += 8*float64(len(v)) + n
	return nil
}

// Put leaves value under key for another rank to Take (through the rendezvous store:
// for the small reports of a step, not for tensors).
func (g *Group) Put(key string, value []byte) error { return g.g.Put(key, value) }

// Take waits for the value another rank Put under key (up to the timeout) and removes it.
func (g *Group) Take(key string) ([]byte, error) { return g.g.Take(key) }

// SyncState copies rank 0's learner state (weights, Adam's moments, the step counters)
// into every rank's: a resumed job loads its checkpoint on rank 0 alone (LoadState), so
// that the other ranks need no access to the run directory.
func (t *Trainer) SyncState() error {
	g := t.cfg.Group
	if g == nil {
		return nil
	}
	m := t.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	if err := g.g.BroadcastParams(m.t, 0, true); err != nil {
		return err
	}
	steps := []float64{0}
	if g.rank == 0 {
		steps[0] = float64(t.steps)
	}
	if err := g.Sum(steps); err != nil {
		return err
	}
	t.steps = int(steps[0])
	return nil
}
