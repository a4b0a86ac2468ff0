package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rlif/rlif/internal/atomicfile"
)

// lockFile is the file in a run directory whose flock marks the directory as in use; it
// holds the owner's pid, host and start time, for the error the next one gets.
const lockFile = "rlif.lock"

// lockRunDir takes the run directory's lock, or fails naming who holds it. The lock is
// released when the returned file is closed or the process ends (however it ends).
func lockRunDir(out string) (*os.File, error) {
	p := filepath.Join(out, lockFile)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, atomicfile.FileMode)
	if err != nil {
		return nil, fmt.Errorf("run directory %s: %w", out, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder, _ := os.ReadFile(p)
			who := strings.TrimSpace(string(holder))
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("run directory %s is in use by %s (lock %s); wait for that run to end or choose another --out", out, who, p)
		}
		return nil, fmt.Errorf("lock run directory %s: %w", out, err)
	}
	host, _ := os.Hostname()
	who := fmt.Sprintf("rlif pid %d on host %s, started %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	// The holder's line only informs the next one: failing to write it does not stop the run.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(who+"\n"), 0)
	return f, nil
}

// openRunDir creates and locks the run directory, refuses one that holds another run
// unless the run resumes it or overwrite clears it, and removes what interrupted writes
// left behind. It writes nothing else: config.toml is written once the run is known to
// start (see writeConfig), so that a refused run leaves the directory as it was, and a
// fresh run refused late (say, a model that does not load) can simply be started again.
func (r *run) openRunDir() error {
	if err := os.MkdirAll(r.out, atomicfile.DirMode); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	var err error
	if r.lock, err = lockRunDir(r.out); err != nil {
		return err
	}
	entries, err := os.ReadDir(r.out)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	var held []string
	for _, e := range entries {
		// hf-model/ is the conversion cache of a Hugging Face --model, written just before
		// the run starts (cmd/rlif): part of this run, not another one's.
		if e.Name() != lockFile && e.Name() != "hf-model" {
			held = append(held, e.Name())
		}
	}
	if len(held) > 0 && !r.opt.Resume {
		if !r.opt.Overwrite {
			return fmt.Errorf("run directory %s is not empty (%s): resume that run with --resume %s, start over with --overwrite (deletes its contents), or choose another --out", r.out, listNames(held), r.out)
		}
		if !isRunDir(r.out) {
			return fmt.Errorf("--overwrite: %s holds no rlif run (no config.toml, metrics.jsonl or checkpoints/), so it is not cleared; choose another --out", r.out)
		}
		for _, name := range held {
			if err := os.RemoveAll(filepath.Join(r.out, name)); err != nil {
				return fmt.Errorf("--overwrite: %w", err)
			}
		}
		fmt.Fprintf(r.progress, "cleared %s (--overwrite)\n", r.out)
	}
	if n := removeTemps(r.out, "checkpoints", "sync", "final"); n > 0 {
		fmt.Fprintf(r.progress, "removed %d temporary file(s) left by an interrupted run in %s\n", n, r.out)
	}
	return nil
}

// isRunDir reports whether dir holds any of what a run writes.
func isRunDir(dir string) bool {
	for _, name := range []string{"config.toml", "metrics.jsonl", "checkpoints"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

func listNames(names []string) string {
	if len(names) > 3 {
		return strings.Join(names[:3], ", ") + ", … " + strconv.Itoa(len(names)-3) + " more"
	}
	return strings.Join(names, ", ")
}

// removeTemps removes the temporary files and directories of interrupted atomic writes
// in out and in its named subdirectories (the caller holds the run's lock, so none is
// being written). It returns how many it removed.
func removeTemps(out string, subdirs ...string) int {
	n := 0
	for _, d := range append([]string{""}, subdirs...) {
		dir := filepath.Join(out, d)
		entries, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if atomicfile.IsTemp(e.Name()) && os.RemoveAll(filepath.Join(dir, e.Name())) == nil {
				n++
			}
		}
	}
	return n
}

// writeConfig writes config.toml, the run's fully resolved configuration.
func (r *run) writeConfig() error {
	b, err := r.cfg.Encode()
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.out, "config.toml"), b); err != nil {
		return fmt.Errorf("config.toml: %w", err)
	}
	return nil
}
