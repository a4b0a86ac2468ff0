package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rlif/rlif/core/data"
)

// checkpointState is checkpoints/step-N/state.json. It is written last: a directory
// without it is not a checkpoint.
type checkpointState struct {
	Step       int           `json:"step"`
	Data       data.Position `json:"data"`
	ConfigHash string        `json:"config_hash"`
	// Seed is the run's seed; sampling seeds derive from (Seed, step), and the learner
	// draws no random numbers after start-up, so this is the whole random state.
	Seed    uint64 `json:"seed"`
	Written string `json:"written"`
	dir     string
}

// checkpoint writes checkpoints/step-N: learner weights and optimizer state, then
// state.json, in a temporary directory renamed into place.
func (r *run) checkpoint(step int) (string, error) {
	root := filepath.Join(r.out, "checkpoints")
	final := filepath.Join(root, fmt.Sprintf("step-%d", step))
	if _, err := os.Stat(filepath.Join(final, "state.json")); err == nil {
		return final, nil
	}
	tmp, err := os.MkdirTemp(root, fmt.Sprintf(".tmp-step-%d-", step))
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := r.tr.SaveState(filepath.Join(tmp, "learner")); err != nil {
		return "", fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	st := checkpointState{Step: step, Data: r.order.Pos, ConfigHash: r.hash, Seed: r.cfg.Seed, Written: time.Now().UTC().Format(time.RFC3339)}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(filepath.Join(tmp, "state.json"), b); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	os.RemoveAll(final) // an incomplete directory of that name, from a crash
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	r.pruneCheckpoints()
	return final, nil
}

// checkpointSteps lists the complete checkpoints of a run, oldest first.
func checkpointSteps(out string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(out, "checkpoints"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var steps []int
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "step-")
		if !ok || !e.IsDir() {
			continue
		}
		k, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(out, "checkpoints", e.Name(), "state.json")); err == nil {
			steps = append(steps, k)
		}
	}
	sort.Ints(steps)
	return steps, nil
}

// latestCheckpoint returns the newest complete checkpoint, or nil when there is none.
func latestCheckpoint(out string) (*checkpointState, error) {
	steps, err := checkpointSteps(out)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", out, err)
	}
	if len(steps) == 0 {
		return nil, nil
	}
	dir := filepath.Join(out, "checkpoints", fmt.Sprintf("step-%d", steps[len(steps)-1]))
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("resume %s: state.json: %w", dir, err)
	}
	st.dir = dir
	return &st, nil
}

func (r *run) pruneCheckpoints() {
	keep := r.cfg.Output.KeepCheckpoints
	if keep <= 0 {
		return
	}
	steps, err := checkpointSteps(r.out)
	if err != nil || len(steps) <= keep {
		return
	}
	for _, s := range steps[:len(steps)-keep] {
		os.RemoveAll(filepath.Join(r.out, "checkpoints", fmt.Sprintf("step-%d", s)))
	}
}
