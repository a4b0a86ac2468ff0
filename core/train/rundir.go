package train

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/report"
	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/policy/hf"
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

// runMarker is the file that proves a directory is an rlif run directory: rlif writes it
// when it takes an empty or new directory for a run, and --overwrite clears only a
// directory that holds it (and nothing rlif did not write). A config.toml alone proves
// nothing: users keep theirs beside their own files.
const runMarker = ".rlif-run"

// runFiles are the names rlif writes at the top of a run directory (besides temporary
// files of interrupted atomic writes): --overwrite removes these and refuses a directory
// holding anything else.
var runFiles = map[string]bool{
	runMarker: true, lockFile: true, "config.toml": true, "metrics.jsonl": true,
	"completions.jsonl": true, "checkpoints": true, "final": true, "sync": true,
	"hf-model": true, "eval": true, "tb": true, report.File: true,
}

// openRunDir creates and locks the run directory, refuses one that holds another run
// unless the run resumes it or overwrite clears it (only a directory rlif can prove is
// its own), and removes what interrupted writes left behind. Besides the lock it writes
// only the marker; config.toml is written once the run is known to start (see
// writeConfig), and a run refused before that removes what it made here (see
// abandonRunDir), so that a refused run leaves the directory as it was.
func (r *run) openRunDir() error {
	if err := refuseWorkingDir(r.out, r.opt.Overwrite); err != nil {
		return err
	}
	r.createdDir = atomicfile.FirstMissing(r.out)
	if err := os.MkdirAll(r.out, atomicfile.DirMode); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	_, err := os.Lstat(filepath.Join(r.out, lockFile))
	r.madeLock = errors.Is(err, fs.ErrNotExist)
	if r.lock, err = lockRunDir(r.out); err != nil {
		r.abandonRunDir()
		return err
	}
	entries, err := os.ReadDir(r.out)
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	var held, foreign []string
	for _, e := range entries {
		name := e.Name()
		// hf-model/ is the conversion cache of a Hugging Face model, written into this
		// directory just before (convertModel): part of this run, not another one's.
		if name == lockFile || name == "hf-model" || name == runMarker {
			continue
		}
		held = append(held, name)
		if !runFiles[name] && !atomicfile.IsTemp(name) {
			foreign = append(foreign, name)
		}
	}
	_, err = os.Stat(filepath.Join(r.out, runMarker))
	marked := err == nil
	r.fresh = len(held) == 0
	switch {
	case r.opt.Resume || r.fresh:
	case len(foreign) > 0 || !marked:
		// Not provably an rlif run: never offer to delete it.
		what := "files rlif did not write (" + listNames(foreign) + ")"
		if len(foreign) == 0 {
			what = "no " + runMarker + " marker (" + listNames(held) + "; rlif marks every run directory it makes and clears only those; a run of an rlif older than the marker still resumes with --resume)"
		}
		return fmt.Errorf("run directory %s holds %s: rlif does not write into it or clear it; choose another --out", r.out, what)
	case !r.opt.Overwrite:
		return fmt.Errorf("run directory %s holds an rlif run (%s): resume it with --resume %s, start over with --overwrite (deletes that run), or choose another --out", r.out, listNames(held), r.out)
	default:
		for _, name := range held {
			if err := os.RemoveAll(filepath.Join(r.out, name)); err != nil {
				return fmt.Errorf("--overwrite: %w", err)
			}
		}
		fmt.Fprintf(r.progress, "cleared %s (--overwrite: the rlif run there)\n", r.out)
	}
	if !r.opt.Resume && !marked {
		if err := atomicfile.WriteFile(filepath.Join(r.out, runMarker), []byte(markerText)); err != nil {
			return fmt.Errorf("run directory %s: %w", r.out, err)
		}
		r.madeMarker = true
	}
	if n := removeTemps(r.out, "checkpoints", "sync", "final"); n > 0 {
		fmt.Fprintf(r.progress, "removed %d temporary file(s) left by an interrupted run in %s\n", n, r.out)
	}
	return nil
}

const markerText = "This directory is an rlif run directory (config.toml, metrics.jsonl, checkpoints/, ...).\n" +
	"rlif train --overwrite clears a directory only when this file is in it and nothing rlif did not write.\n"

// markRunDir writes the marker into a resumed run's directory that predates markers: a
// run directory with an intact checkpoint is provably rlif's.
func (r *run) markRunDir() error {
	p := filepath.Join(r.out, runMarker)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return atomicfile.WriteFile(p, []byte(markerText))
}

// abandonRunDir undoes what a run refused before it started wrote into its run directory
// (the marker and the lock where it made them, the Hugging Face conversion of a fresh
// run) and removes the directories it created: the directory is left as it was.
func (r *run) abandonRunDir() {
	if r.started {
		return
	}
	if r.madeMarker {
		os.Remove(filepath.Join(r.out, runMarker))
	}
	if r.fresh {
		os.RemoveAll(filepath.Join(r.out, "hf-model"))
	}
	if r.madeLock || r.fresh {
		os.Remove(filepath.Join(r.out, lockFile))
	}
	r.removeCreatedDir()
}

// removeCreatedDir removes the directories openRunDir created for the run, from the run
// directory up to the outermost one, as long as they are empty.
func (r *run) removeCreatedDir() {
	if r.createdDir == "" {
		return
	}
	for p := filepath.Clean(r.out); ; p = filepath.Dir(p) {
		if os.Remove(p) != nil || p == filepath.Clean(r.createdDir) || filepath.Dir(p) == p {
			return
		}
	}
}

// refuseWorkingDir refuses the working directory and the directories above it as a run
// directory for --overwrite: a project directory is never cleared, even one that once
// held a run.
func refuseWorkingDir(out string, overwrite bool) error {
	if !overwrite {
		return nil
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("output directory %s: %w", out, err)
	}
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("output directory %s: %w", out, err)
	}
	if rel, err := filepath.Rel(abs, wd); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return fmt.Errorf("--overwrite: %s is the working directory or holds it; rlif never clears it: give a run directory of its own (--out runs/NAME)", out)
	}
	return nil
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
	r.started = true
	return nil
}

// sameConfig checks that checkpoint ck was made with this run's settings. A checkpoint
// records them (config.Settings), so a checkpoint of an older rlif, whose configuration
// had fewer keys, still resumes when only keys left at their defaults were added. One of
// the builds that recorded the hash only is accepted with that hash (or the hash those that
// recorded relative paths computed, when resumed from the directory it started in), and
// otherwise when this run's settings are those of the run's own config.toml: the file such
// a build wrote when it started the run.
func (r *run) sameConfig(ck *checkpointState) error {
	mismatch := func(diffs []string) error {
		return fmt.Errorf("checkpoint %s was made with other settings (%s); resume with the run's own config.toml or start a new --out", ck.dir, config.Summary(diffs, 3))
	}
	if ck.Settings != nil {
		if diffs := r.settings.Differences(ck.Settings); len(diffs) > 0 {
			return mismatch(diffs)
		}
		return nil
	}
	if ck.ConfigHash == r.hash {
		return nil
	}
	if wd, err := os.Getwd(); err == nil {
		if old, err := r.cfg.HashBeforeAbsolutePaths(wd); err == nil && ck.ConfigHash == old {
			return nil
		}
	}
	own := filepath.Join(r.out, "config.toml")
	c, err := config.Load(own)
	if err != nil {
		return fmt.Errorf("checkpoint %s records only a hash of its settings, which differs from this run's, and %w", ck.dir, err)
	}
	was, err := c.Settings()
	if err != nil {
		return err
	}
	if diffs := r.settings.Differences(was); len(diffs) > 0 {
		return mismatch(diffs)
	}
	fmt.Fprintf(r.progress, "checkpoint %s was written by an older rlif, which recorded only a hash of its settings: resuming with the settings of %s\n", ck.dir, own)
	return nil
}

// convertModel replaces a Hugging Face model directory as the run's model by its GGUF
// conversion, made once into the run directory (hf-model/, named by a hash of the
// checkpoint's files, so a changed checkpoint converts again) by rank 0, and into its
// private directory by any other rank; the run and its config.toml, so a resume, use the
// GGUF from then on.
func (r *run) convertModel() error {
	src := r.cfg.Model
	if !hf.IsModelDir(src) {
		return nil
	}
	cache := filepath.Join(r.out, "hf-model")
	if !r.lead() {
		cache = r.syncDir
	}
	p, err := hf.Cached(src, cache, hf.ConvertOptions{AllowNoTemplate: r.cfg.Data.Raw})
	if err != nil {
		return fmt.Errorf("model %s: %w", src, err)
	}
	if p, err = filepath.Abs(p); err != nil {
		return fmt.Errorf("model %s: %w", src, err)
	}
	fmt.Fprintf(r.progress, "model %s: converted to %s\n", src, p)
	r.cfg.Model = p
	return nil
}
