package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/internal/moments"
	"github.com/rlif/rlif/policy/learner"
	"github.com/rlif/rlif/rewards"
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
func (r *run) lead() bool { return r.group == nil || r.group.Rank() == 0 }

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
		if strings.HasPrefix(r.cfg.Learner.Device, "cuda") {
			backend = learner.BackendNCCL
		}
	}
	fmt.Fprintf(r.progress, "rank %d of %d: joining the job at %s:%d (%s)\n", d.Rank, d.World, d.Addr, d.Port, backend)
	g, err := learner.JoinGroup(learner.GroupConfig{Addr: d.Addr, Port: d.Port, Rank: d.Rank, World: d.World, Timeout: d.Timeout, Backend: backend, CUDA: d.LocalRank,
		AgentStore: d.AgentStore, Attempt: d.Attempt})
	if err != nil {
		return err
	}
	r.group = g
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
	if r.group != nil && d == "cuda" {
		return fmt.Sprintf("cuda:%d", r.opt.Dist.LocalRank)
	}
	return d
}

// share is this rank's part of a step's prompts: a contiguous slice, the same on every
// rank for the same data position, so that a resume continues exactly.
func (r *run) share(idx []int) (lo, hi int) {
	if r.group == nil {
		return 0, len(idx)
	}
	w, k := r.group.World(), r.group.Rank()
	return k * len(idx) / w, (k + 1) * len(idx) / w
}

// agreeStop says whether any rank was asked to stop: all ranks stop at the same point.
func (r *run) agreeStop(local bool) (bool, error) {
	if r.group == nil {
		return local, nil
	}
	v := []float64{0}
	if local {
		v[0] = 1
	}
	if err := r.group.Max(v); err != nil {
		return false, err
	}
	return v[0] > 0, nil
}

// batchScores says whether a reward is normalized over the whole batch (normalize =
// "batch"): then every rank needs every rank's scores for its advantages.
func (r *run) batchScores() bool {
	if r.group == nil {
		return false
	}
	for _, s := range r.cfg.RewardSpecs() {
		if s.Normalize == rewards.NormalizeBatch {
			return true
		}
	}
	return false
}

// allScores are the scores of the whole step on every rank: each rank's share (groups
// lo… of prompts) laid into one vector of (value, applicable) per completion, zero
// elsewhere, and the vectors summed over the ranks.
func (r *run) allScores(scores [][][]rewards.Score, lo, prompts int) ([][][]rewards.Score, error) {
	G := r.cfg.Sampling.GroupSize
	v := make([]float64, 2*len(scores)*prompts*G)
	at := func(k, i, j int) int { return 2 * ((k*prompts+i)*G + j) }
	for k := range scores {
		for i, g := range scores[k] {
			if len(g) != G {
				return nil, fmt.Errorf("group %d has %d scores, want %d", lo+i, len(g), G)
			}
			for j, s := range g {
				if s.Applicable {
					v[at(k, lo+i, j)], v[at(k, lo+i, j)+1] = s.Value, 1
				}
			}
		}
	}
	if err := r.group.Sum(v); err != nil {
		return nil, err
	}
	out := make([][][]rewards.Score, len(scores))
	for k := range out {
		out[k] = make([][]rewards.Score, prompts)
		for i := range out[k] {
			out[k][i] = make([]rewards.Score, G)
			for j := range out[k][i] {
				out[k][i][j] = rewards.Score{Value: v[at(k, i, j)], Applicable: v[at(k, i, j)+1] > 0}
			}
		}
	}
	return out, nil
}

// resumePoint is the checkpoint to resume from. In a job rank 0 alone reads the run
// directory: it chooses the checkpoint (and may move damaged ones aside), sends the other
// ranks its state (step, data position, config hash), and later its learner's state
// (loadModels), so that they need no access to the run directory.
func (r *run) resumePoint() (*checkpointState, error) {
	if r.group == nil {
		return latestCheckpoint(r.out, r.progress)
	}
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
		for k := 1; k < r.group.World(); k++ {
			if perr := r.group.Put(key(k), b); perr != nil {
				return nil, perr
			}
		}
		return ck, err
	}
	b, err := r.group.Take(key(r.group.Rank()))
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

// stepReport is what a rank sends rank 0 after scoring: its groups, scores and
// advantages, for the step's metrics, diagnostics and completions.jsonl. The per-token
// arrays stay home (the entropy travels as its mean).
type stepReport struct {
	Groups     []rewards.Group
	Scores     [][][]rewards.Score
	Advantages [][]float64
}

func reportKey(step, rank int) string { return fmt.Sprintf("step/%d/rank/%d", step, rank) }

// gather brings every rank's groups, scores and advantages of a step to rank 0, in the
// order of the step's prompts; other ranks get their own back. It counts the bytes of
// the reports in m.
func (r *run) gather(step int, m *Metrics, rg []rewards.Group, scores [][][]rewards.Score, adv [][]float64) ([]rewards.Group, [][][]rewards.Score, [][]float64, error) {
	if r.group == nil {
		return rg, scores, adv, nil
	}
	if !r.lead() {
		light := make([]rewards.Group, len(rg))
		for i, g := range rg {
			light[i] = g
			light[i].Completions = append(light[i].Completions[:0:0], g.Completions...)
			for j := range light[i].Completions {
				c := &light[i].Completions[j]
				c.PromptTokens, c.LogProb, c.SampledLogProb, c.RawLogProb, c.SelfCertainty = nil, nil, nil, nil, nil
				c.Entropy = []float64{moments.Mean(c.Entropy)}
			}
		}
		b, err := json.Marshal(stepReport{Groups: light, Scores: scores, Advantages: adv})
		if err != nil {
			return nil, nil, nil, err
		}
		if err := r.group.Put(reportKey(step, r.group.Rank()), b); err != nil {
			return nil, nil, nil, err
		}
		// The barrier, a collective, fails at once when a rank is gone, where a wait in
		// the store would sit out the timeout; after it the reports are there.
		return rg, scores, adv, r.group.Barrier()
	}
	if err := r.group.Barrier(); err != nil {
		return nil, nil, nil, err
	}
	// The step's own slices stay this rank's share: the whole step goes into new ones.
	rg, adv = slices.Clone(rg), slices.Clone(adv)
	scores = slices.Clone(scores)
	for i := range scores {
		scores[i] = slices.Clone(scores[i])
	}
	for k := 1; k < r.group.World(); k++ {
		b, err := r.group.Take(reportKey(step, k))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("report of rank %d: %w", k, err)
		}
		m.ReportBytes += float64(len(b))
		var rep stepReport
		if err := json.Unmarshal(b, &rep); err != nil {
			return nil, nil, nil, fmt.Errorf("report of rank %d: %w", k, err)
		}
		if len(rep.Scores) != len(scores) {
			return nil, nil, nil, fmt.Errorf("report of rank %d: %d rewards, want %d", k, len(rep.Scores), len(scores))
		}
		rg = append(rg, rep.Groups...)
		for i := range scores {
			scores[i] = append(scores[i], rep.Scores[i]...)
		}
		adv = append(adv, rep.Advantages...)
	}
	return rg, scores, adv, nil
}

// checkWeights compares the ranks' weights every CheckEvery steps.
func (r *run) checkWeights(step int) error {
	if r.group == nil {
		return nil
	}
	every := r.opt.Dist.CheckEvery
	if every == 0 {
		every = 10
	}
	if every < 0 || step%every != 0 {
		return nil
	}
	return r.tr.CheckParams()
}

// closeGroup leaves the job and removes this rank's own files.
func (r *run) closeGroup() {
	if r.group != nil {
		r.group.Close()
	}
	if r.syncDir != "" {
		os.RemoveAll(r.syncDir)
	}
}

// syncPath is where the sampler's weights are written for it to load: the run
// directory's sync/ for rank 0 (or a run alone), a private directory for other ranks.
func (r *run) syncPath() string {
	if r.syncDir != "" {
		return r.syncDir
	}
	return filepath.Join(r.out, "sync")
}
