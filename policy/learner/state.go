package learner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner/internal/torch"
)

// stateFile is the checkpoint inside a SaveState directory. It is a GGUF file (so it
// gets the same validation and atomic write as models) whose tensors are, for every
// trainable tensor i, "value.i", "adam_m.i" and "adam_v.i", flattened.
const stateFile = "learner-state.gguf"

// SaveState writes what resuming needs into dir (created if missing): the trainable
// weights (all of them, or the LoRA adapters), AdamW's moments and the step counters.
// The base weights under LoRA are not written: they are the model file's.
func (t *Trainer) SaveState(dir string) error {
	m := t.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save learner state: %w", err)
	}
	n := m.t.TrainableCount()
	names := make([]string, n)
	var ts []gguf.Tensor
	for i := 0; i < n; i++ {
		name, numel, err := m.t.TrainableInfo(i)
		if err != nil {
			return fmt.Errorf("save learner state: %w", err)
		}
		names[i] = name
		for _, k := range stateKinds {
			buf := make([]float32, numel)
			if err := m.t.StateIO(i, k.kind, buf, false); err != nil {
				return fmt.Errorf("save learner state: %w", err)
			}
			ts = append(ts, gguf.Tensor{Name: fmt.Sprintf("%s.%d", k.prefix, i), Shape: []uint64{uint64(numel)}, Data: buf})
		}
	}
	kv := fsggml.KV{
		"general.architecture": "rlif", // ollama's getters prefix keys with it
		"rlif.model":           m.src.Path,
		"rlif.trainable":       names,
		"rlif.optimizer_steps": uint64(m.t.OptimizerSteps()),
		"rlif.trainer_steps":   uint64(t.steps),
		"rlif.lora":            m.lora != nil,
		// The schedule's lengths: a resumed trainer must continue the same schedule.
		"rlif.schedule_total_steps":  uint64(t.cfg.TotalSteps),
		"rlif.schedule_warmup_steps": uint64(t.cfg.warmupSteps()),
	}
	f32, _ := gguf.ParsePrecision("f32")
	return gguf.WriteModel(filepath.Join(dir, stateFile), kv, ts, f32)
}

// LoadState restores a SaveState directory into a trainer set up like the one that
// saved it (same model, same LoRA settings, same learning-rate schedule).
func (t *Trainer) LoadState(dir string) error { return t.loadState(dir, true) }

// LoadWeights restores a SaveState directory's weights (and optimizer state) for reading
// them, say to export a checkpoint: the schedule they were trained under does not matter
// there, so it is not compared with the trainer's.
func (t *Trainer) LoadWeights(dir string) error { return t.loadState(dir, false) }

func (t *Trainer) loadState(dir string, sameSchedule bool) error {
	m := t.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.t == nil {
		return errors.New("model is closed")
	}
	f, err := gguf.Open(filepath.Join(dir, stateFile))
	if err != nil {
		return fmt.Errorf("load learner state: %w", err)
	}
	names := f.KV.Strings("trainable") // rlif.trainable
	if lora, _ := f.KV["rlif.lora"].(bool); lora != (m.lora != nil) {
		return fmt.Errorf("load learner state: saved with LoRA %v, trainer has LoRA %v", lora, m.lora != nil)
	}
	if sameSchedule {
		if err := t.checkSchedule(f.KV); err != nil {
			return err
		}
	}
	n := m.t.TrainableCount()
	if len(names) != n {
		return fmt.Errorf("load learner state: %d trainable tensors saved, the model has %d", len(names), n)
	}
	for i := 0; i < n; i++ {
		name, numel, err := m.t.TrainableInfo(i)
		if err != nil {
			return err
		}
		if name != names[i] {
			return fmt.Errorf("load learner state: tensor %d is %s, saved %s", i, name, names[i])
		}
		for _, k := range stateKinds {
			buf, err := f.ReadF32(fmt.Sprintf("%s.%d", k.prefix, i))
			if err != nil {
				return fmt.Errorf("load learner state: %w", err)
			}
			if int64(len(buf)) != numel {
				return fmt.Errorf("load learner state: %s has %d values, want %d", name, len(buf), numel)
			}
			if err := m.t.StateIO(i, k.kind, buf, true); err != nil {
				return fmt.Errorf("load learner state: %w", err)
			}
		}
	}
	opt, _ := f.KV["rlif.optimizer_steps"].(uint64)
	steps, _ := f.KV["rlif.trainer_steps"].(uint64)
	m.t.SetOptimizerSteps(int64(opt))
	t.steps = int(steps)
	return nil
}

// ScheduleError is LoadState's refusal of a state saved under another learning-rate
// schedule: the trainer would continue it with other warmup or decay lengths (the LR
// would jump), so the run must resume with the lengths it started with.
type ScheduleError struct {
	Schedule                  string
	SavedTotal, SavedWarmup   int // optimizer steps
	TrainerTotal, TrainerWarm int
}

func (e *ScheduleError) Error() string {
	return fmt.Sprintf("load learner state: the %s learning-rate schedule was saved for %d optimizer steps (%d of warmup); this trainer's spans %d (%d of warmup)",
		e.Schedule, e.SavedTotal, e.SavedWarmup, e.TrainerTotal, e.TrainerWarm)
}

// checkSchedule compares the schedule lengths saved in a state's metadata with the
// trainer's. A constant schedule does not depend on its total, so only warmup counts
// there. States saved before the lengths were recorded are not checked.
func (t *Trainer) checkSchedule(kv fsggml.KV) error {
	total, ok1 := kv["rlif.schedule_total_steps"].(uint64)
	warm, ok2 := kv["rlif.schedule_warmup_steps"].(uint64)
	if !ok1 || !ok2 {
		return nil
	}
	c := t.cfg
	if int(warm) == c.warmupSteps() && (c.Schedule == ScheduleConstant || int(total) == c.TotalSteps) {
		return nil
	}
	return &ScheduleError{Schedule: c.Schedule, SavedTotal: int(total), SavedWarmup: int(warm), TrainerTotal: c.TotalSteps, TrainerWarm: c.warmupSteps()}
}

// Steps is the number of optimizer steps taken (including those of a loaded state). A
// failed Step that leaves it unchanged left the weights and the optimizer untouched.
func (t *Trainer) Steps() int {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	return t.steps
}

// stateKinds are the per-tensor parts of the optimizer state and their name prefixes.
var stateKinds = []struct {
	kind   int
	prefix string
}{{torch.StateValue, "value"}, {torch.StateAdamM, "adam_m"}, {torch.StateAdamV, "adam_v"}}
