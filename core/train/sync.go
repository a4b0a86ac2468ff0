package train

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rlif/rlif/policy/sampler"
)

// The sync stage: the learner's new weights go into the sampler, which samples the next
// step from them.

// syncStep is the sync stage of a step, timed into m. The learner's update is complete
// by then, so m is finished whatever the sync does.
func (r *run) syncStep(m *Metrics) error {
	defer m.finish()
	t0 := time.Now()
	peak := phasePeak()
	r.live.setPhase("sync")
	if err := r.sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	m.Time.Sync = time.Since(t0).Seconds()
	m.Peak.Sync = peak()
	return nil
}

// sync puts the learner's weights into the sampler: a full GGUF re-export at the
// configured precision, or the LoRA adapter hot-swapped.
func (r *run) sync() error {
	dir := r.syncPath()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if r.cfg.LoRA.Enabled {
		p := filepath.Join(dir, "adapter.gguf")
		if err := r.lrn.ExportLoRA(p); err != nil {
			return err
		}
		return r.smp.LoadAdapter(p, 1)
	}
	p, err := r.exportPolicy()
	if err != nil {
		return err
	}
	return r.smp.Reload(p)
}

// loadSampler loads the sampler with the weights every step samples from. A full sync
// exports the learner's weights at sync.precision before step 1 too, so that step 1 samples
// from the same kind of weights as every later step (not from the source file, whose
// quantization differs); a LoRA sync keeps the source file as the base, with the adapter
// loaded when a resumed run has one.
func (r *run) loadSampler(resumed bool) error {
	c := r.cfg
	if c.LoRA.Enabled {
		fmt.Fprintf(r.progress, "loading %s into the sampler (llama.cpp)\n", c.Model)
		var err error
		if r.smp, err = sampler.Load(c.Model, r.samplerOptions()); err != nil {
			return err
		}
		r.deviceNote()
		if resumed {
			if err := r.sync(); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
		}
		return nil
	}
	p, err := r.exportPolicy()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.progress, "loading the learner's weights at %s into the sampler (llama.cpp)\n", r.syncPrecision())
	if r.smp, err = sampler.Load(p, r.samplerOptions()); err != nil {
		return err
	}
	r.deviceNote()
	return nil
}

// deviceNote prints, once, where the sampler's GPU layers went, or that they could not.
func (r *run) deviceNote() {
	if r.cfg.Sampling.GPULayers == 0 || r.smp == nil || r.deviceNoted {
		return
	}
	r.deviceNoted = true
	if i := r.smp.Info(); i.DeviceNote != "" {
		fmt.Fprintln(r.progress, i.DeviceNote)
	} else {
		fmt.Fprintf(r.progress, "sampler: layers on %s\n", i.GPU)
	}
}

// syncPrecision is the precision of the sampler's weights: sync.precision, with auto
// resolved to what the sampler decodes fastest on this machine.
func (r *run) syncPrecision() string {
	if p := r.cfg.Sync.Precision; p != "auto" {
		return p
	}
	return sampler.FastestPrecision(r.cfg.Sampling.GPULayers)
}

// exportPolicy writes the learner's weights at the sync precision where the sampler loads
// them from, and returns the path.
func (r *run) exportPolicy() (string, error) {
	dir := r.syncPath()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "policy.gguf")
	if err := r.lrn.Export(p, r.syncPrecision()); err != nil {
		return "", fmt.Errorf("sync export: %w", err)
	}
	return p, nil
}

// syncPath is where the sampler's weights are written for it to load: the run
// directory's sync/ for rank 0 (or a run alone), a private directory for other ranks.
func (r *run) syncPath() string {
	if r.syncDir != "" {
		return r.syncDir
	}
	return filepath.Join(r.out, "sync")
}
