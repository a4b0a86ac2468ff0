package train

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/policy/learner"
)

// Distributed places a run in a data-parallel job of World ranks (torchrun's RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Every rank runs the same
// configuration: it samples, scores and learns on its own share of each step's prompts
// (whole groups), the learners sum their gradients and take the same step, and rank 0
// alone writes the run directory (config, metrics, completions, checkpoints, final
// model), from the reports of all ranks.
type Distributed struct {
	Rank, World, LocalRank int
	Addr                   string
	Port                   int
	// Backend is gloo or nccl; empty: nccl when learner.device is CUDA, else gloo.
	Backend string
	// Timeout bounds the rendezvous and every exchange between ranks (default 10
	// minutes): a rank that is gone or hangs ends the job with an error on every rank.
	// It must cover rank 0's evaluations and checkpoints, which the others wait through.
	Timeout time.Duration
	// CheckEvery is how many steps pass between comparisons of the ranks' weights
	// (0: 10; negative: never).
	CheckEvery int
	// AgentStore and Attempt: see learner.GroupConfig (a launcher's own store).
	AgentStore bool
	Attempt    string
}

// checkShare checks that every rank of job d has a share of each step's prompts (share
// gives each rank whole prompts, with their groups). Run checks it, and so does Check,
// for a launcher, before any rank starts.
func checkShare(cfg config.Run, d *Distributed) error {
	if d == nil || d.World <= 1 {
		return nil
	}
	if p := cfg.Sampling.PromptsPerStep; p < d.World {
		return fmt.Errorf("sampling.prompts_per_step = %d is fewer than the %d ranks: each rank samples whole prompts of a step; raise prompts_per_step to at least %d, or start at most %d ranks", p, d.World, d.World, p)
	}
	return nil
}

// lead says whether this process writes the run directory: rank 0, or a run alone.
func (r *run) lead() bool { return r.job.lead() }

// joinGroup joins the data-parallel job of Options.Dist, if there is one of more than
// one rank.
func (r *run) joinGroup() error {
	d := r.opt.Dist
	if d == nil || d.World <= 1 {
		return nil
	}
	backend := d.Backend
	if backend == "" {
		backend = learner.BackendGloo
		// NCCL where the learner will be on a GPU; a CUDA device that is not there falls
		// back to the CPU (learner.Load), and its ranks to gloo.
		if strings.HasPrefix(r.cfg.Learner.Device, "cuda") && learner.CUDADevices() > 0 {
			backend = learner.BackendNCCL
		}
	}
	fmt.Fprintf(r.progress, "rank %d of %d: joining the job at %s:%d (%s)\n", d.Rank, d.World, d.Addr, d.Port, backend)
	g, err := learner.JoinGroup(learner.GroupConfig{Addr: d.Addr, Port: d.Port, Rank: d.Rank, World: d.World, Timeout: d.Timeout, Backend: backend, CUDA: d.LocalRank,
		AgentStore: d.AgentStore, Attempt: d.Attempt})
	if err != nil {
		return err
	}
	every := d.CheckEvery
	if every == 0 {
		every = 10
	}
	r.job = job{g: g, checkEvery: every}
	if !r.lead() {
		// The sampler's weights go through a file of this rank's own, outside the run directory.
		if r.syncDir, err = os.MkdirTemp("", fmt.Sprintf("rlif-rank%d-", d.Rank)); err != nil {
			return err
		}
	}
	return nil
}

// learnerDevice is learner.device, with a bare "cuda" meaning this rank's GPU (LOCAL_RANK).
func (r *run) learnerDevice() string {
	d := r.cfg.Learner.Device
	if r.job.world() > 1 && d == "cuda" {
		return fmt.Sprintf("cuda:%d", r.opt.Dist.LocalRank)
	}
	return d
}

// resumePoint is the checkpoint to resume from. In a job rank 0 alone reads the run
// directory: it chooses the checkpoint (and may move damaged ones aside), sends the other
// ranks its state (step, data position, config hash), and later its learner's state
// (loadModels), so that they need no access to the run directory.
func (r *run) resumePoint() (*checkpointState, error) {
	key := func(k int) string { return fmt.Sprintf("resume/rank/%d", k) }
	type point struct {
		State *checkpointState
		Err   string
	}
	if r.lead() {
		ck, err := latestCheckpoint(r.out, r.progress)
		p := point{State: ck}
		if err != nil {
			p = point{Err: err.Error()}
		}
		b, jerr := json.Marshal(p)
		if jerr != nil {
			return nil, jerr
		}
		if serr := r.job.send(key, b); serr != nil {
			return nil, serr
		}
		return ck, err
	}
	b, err := r.job.receive(key)
	if err != nil {
		return nil, fmt.Errorf("resume: rank 0's checkpoint: %w", err)
	}
	var p point
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("resume: rank 0's checkpoint: %w", err)
	}
	if p.Err != "" || p.State == nil {
		return nil, fmt.Errorf("rank 0 could not resume: %s", p.Err)
	}
	return p.State, nil
}

// checkWeights compares the ranks' weights every Distributed.CheckEvery steps.
func (r *run) checkWeights(step int) error {
	if !r.job.weightsDue(step) {
		return nil
	}
	return r.tr.CheckParams()
}

// closeGroup leaves the job and removes this rank's own files.
func (r *run) closeGroup() {
	r.job.close()
	if r.syncDir != "" {
		os.RemoveAll(r.syncDir)
	}
}
