package train

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/policy/learner"
)

// checkpointState is checkpoints/step-N/state.json. A directory named step-N is complete
// (it is renamed into place once written); one without state.json is not a checkpoint.
type checkpointState struct {
	Step       int           `json:"step"`
	Data       data.Position `json:"data"`
	ConfigHash string        `json:"config_hash"`
	// Settings are the settings the checkpoint was made with (config.Settings); absent in
	// checkpoints of builds before it, which recorded the hash only.
	Settings config.Settings `json:"settings,omitempty"`
	// Seed is the run's seed; sampling seeds derive from (Seed, step), and the learner
	// draws no random numbers after start-up, so this is the whole random state.
	Seed    uint64 `json:"seed"`
	Written string `json:"written"`
	dir     string
}

// manifestFile lists the sha256 of every other file of a checkpoint, so that a damaged
// one is found when it is loaded, not steps later as a non-finite statistic.
const manifestFile = "manifest.json"

type manifest struct {
	SHA256 map[string]string `json:"sha256"` // slash-separated path in the checkpoint → hex digest
}

// checkpoint writes checkpoints/step-N: learner weights and optimizer state, state.json
// and the manifest, in a temporary directory renamed into place.
func (r *run) checkpoint(step int) (string, error) {
	final := filepath.Join(r.out, "checkpoints", fmt.Sprintf("step-%d", step))
	// The learner's saved state is not stacked on the last step's freed activations,
	// which the allocator still holds (the next step faults its pages in again, once per
	// checkpoint). The run's last step always checkpoints, so the final export after it
	// starts from the same low point.
	learner.ReleaseFreeMemory()
	if err := r.writeCheckpoint(final, step, nil); err != nil {
		return "", err
	}
	r.lastCheck = time.Now()
	r.pruneCheckpoints()
	return final, nil
}

// writeCheckpoint writes the checkpoint of the learner's state after step into the
// directory final (with the extra files named by their base names), through a temporary
// directory renamed into place. An existing complete one is kept: the checkpoint this
// run resumed from.
func (r *run) writeCheckpoint(final string, step int, extra map[string][]byte) error {
	root := filepath.Dir(final)
	if _, err := os.Stat(filepath.Join(final, "state.json")); err == nil {
		return nil
	}
	if err := os.MkdirAll(root, atomicfile.DirMode); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	tmp, err := atomicfile.MkdirTemp(root, filepath.Base(final))
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := r.tr.SaveState(filepath.Join(tmp, "learner")); err != nil {
		return fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	st := checkpointState{Step: step, Data: r.order.Pos, ConfigHash: r.hash, Settings: r.settings, Seed: r.cfg.Seed, Written: time.Now().UTC().Format(time.RFC3339)}
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, "state.json"), b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	for name, b := range extra {
		if err := atomicfile.WriteFile(filepath.Join(tmp, name), b); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	man, err := hashTree(tmp)
	if err != nil {
		return fmt.Errorf("checkpoint step %d: %w", step, err)
	}
	b, _ = json.MarshalIndent(man, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(tmp, manifestFile), b); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	os.RemoveAll(final) // an incomplete directory of that name, from a crash
	if err := atomicfile.CommitDir(tmp, final); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// checkpointDue reports whether the checkpoint cadence asks for one after step: every
// output.checkpoint_every steps, or output.checkpoint_minutes after the last one.
func (r *run) checkpointDue(step int) bool {
	o := r.cfg.Output
	if o.CheckpointEvery > 0 && step%o.CheckpointEvery == 0 {
		return true
	}
	return o.CheckpointMinutes > 0 && time.Since(r.lastCheck) >= time.Duration(o.CheckpointMinutes*float64(time.Minute))
}

// hashTree returns the sha256 of every regular file under dir.
func hashTree(dir string) (manifest, error) {
	man := manifest{SHA256: map[string]string{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return err
		}
		man.SHA256[filepath.ToSlash(rel)] = sum
		return nil
	})
	return man, err
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// verifyCheckpoint checks every file of a checkpoint against its manifest. Every
// checkpoint rlif writes has one, so one without it is damaged: its weights cannot be
// told from any others.
func verifyCheckpoint(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing, so its files cannot be checked", manifestFile)
	}
	if err != nil {
		return err
	}
	var man manifest
	if err := json.Unmarshal(b, &man); err != nil || len(man.SHA256) == 0 {
		return fmt.Errorf("%s is damaged", manifestFile)
	}
	names := make([]string, 0, len(man.SHA256))
	for name := range man.SHA256 {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sum, err := fileSHA256(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		if sum != man.SHA256[name] {
			return fmt.Errorf("%s does not match its sha256 in %s (the file is damaged)", name, manifestFile)
		}
	}
	return nil
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

// latestCheckpoint returns the newest intact checkpoint. A damaged one (its files do not
// match the manifest, or state.json does not parse) is renamed damaged-step-N, kept for
// inspection and out of the way of the step-N the resumed run writes, and the one before
// it is tried, with a notice on progress. Without any checkpoint the error says what to do.
func latestCheckpoint(out string, progress io.Writer) (*checkpointState, error) {
	steps, err := checkpointSteps(out)
	if err != nil {
		return nil, fmt.Errorf("resume %s: %w", out, err)
	}
	var damaged []string
	for i := len(steps) - 1; i >= 0; i-- {
		name := fmt.Sprintf("step-%d", steps[i])
		dir := filepath.Join(out, "checkpoints", name)
		st, err := readCheckpoint(dir)
		if err == nil {
			if len(damaged) > 0 {
				fmt.Fprintf(progress, "falling back to checkpoint %s, the newest intact one\n", name)
			}
			return st, nil
		}
		aside := filepath.Join(out, "checkpoints", "damaged-"+name)
		os.RemoveAll(aside)
		if rerr := os.Rename(dir, aside); rerr != nil {
			return nil, fmt.Errorf("resume %s: checkpoint %s is damaged (%v), and moving it aside failed: %w", out, name, err, rerr)
		}
		fmt.Fprintf(progress, "checkpoint %s is damaged (%v): moved to %s\n", name, err, aside)
		damaged = append(damaged, name)
	}
	switch {
	case len(damaged) > 0:
		return nil, fmt.Errorf("resume %s: no intact checkpoint (%s damaged, kept as damaged-*); start over with --overwrite", out, strings.Join(damaged, ", "))
	case fileExists(filepath.Join(out, "config.toml")):
		return nil, fmt.Errorf("resume %s: the run has no checkpoint yet (it ended before its first one); start it over with rlif train --config %s --overwrite",
			out, filepath.Join(out, "config.toml"))
	default:
		return nil, fmt.Errorf("resume %s: no checkpoint there (checkpoints/step-N/): not a run directory; give the --out of a run", out)
	}
}

// readCheckpoint verifies a checkpoint and reads its state.json.
func readCheckpoint(dir string) (*checkpointState, error) {
	if err := verifyCheckpoint(dir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st checkpointState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state.json: %w", err)
	}
	if want := fmt.Sprintf("step-%d", st.Step); filepath.Base(dir) != want {
		return nil, fmt.Errorf("state.json is of step %d", st.Step)
	}
	st.dir = dir
	return &st, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// scheduleError phrases the learner's refusal of another LR schedule in run terms.
func (r *run) scheduleError(ck *checkpointState, err error) error {
	var se *learner.ScheduleError
	if !errors.As(err, &se) {
		return fmt.Errorf("resume %s: %w", ck.dir, err)
	}
	mu := max(1, r.cfg.Learner.Mu) * max(1, r.cfg.Learner.StepsPerGeneration) // optimizer steps per run step
	return fmt.Errorf("resume %s: the run's %s learning-rate schedule spans %d steps and this one %d (steps sets the decay and warmup lengths); resume with steps = %d (--steps %d), or start a new run",
		r.out, se.Schedule, se.SavedTotal/mu, se.TrainerTotal/mu, se.SavedTotal/mu, se.SavedTotal/mu)
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
