package train

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/rewards"
)

// umask returns the process's file-mode creation mask.
func umask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

// onProgress runs do once, when the progress line of step k appears.
type onProgress struct {
	k    int
	do   func()
	done bool
	strings.Builder
}

func (w *onProgress) Write(p []byte) (int, error) {
	if !w.done && strings.Contains(string(p), fmt.Sprintf("step %d/", w.k)) {
		w.do()
		w.done = true
	}
	return w.Builder.Write(p)
}

// A run with checkpoint_every = 0 still writes a checkpoint once checkpoint_minutes have
// passed since the last one (here: after every step); the files it keeps (the final
// model, checkpoints) get the usual permissions, and each checkpoint carries a manifest
// that verifies.
func TestTimeBudgetCheckpointsAndFiles(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	cfg.Output = config.Output{CheckpointMinutes: 1e-9, CompletionsEvery: 1}
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("time budget", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(out, "checkpoints", "step-1", "state.json")); err != nil {
			t.Fatalf("no checkpoint after step 1 with checkpoint_minutes > 0: %v", err)
		}
	})
	t.Run("permissions", func(t *testing.T) {
		mask := umask()
		wantFile, wantDir := 0o644&^mask, 0o755&^mask
		for _, p := range []string{res.Final, filepath.Join(out, "config.toml"), filepath.Join(out, "sync", "policy.gguf"),
			filepath.Join(out, "checkpoints", "step-2", "state.json"), filepath.Join(out, "checkpoints", "step-2", "learner", "learner-state.gguf")} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != wantFile {
				t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), wantFile)
			}
		}
		for _, p := range []string{filepath.Join(out, "checkpoints", "step-2"), filepath.Join(out, "final")} {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != wantDir {
				t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), wantDir)
			}
		}
	})
	t.Run("manifest", func(t *testing.T) {
		dir := filepath.Join(out, "checkpoints", "step-2")
		if err := verifyCheckpoint(dir); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, manifestFile))
		for _, f := range []string{"state.json", "learner/learner-state.gguf"} {
			if !strings.Contains(string(b), f) {
				t.Errorf("manifest does not list %s:\n%s", f, b)
			}
		}
	})
}

// A step that fails before the learner's update, after an earlier step changed the
// weights, leaves a checkpoint of the last complete step (checkpoint_every = 0 would
// otherwise lose all of it), says so, and the resumed run repeats the uninterrupted one.
func TestErrorWritesCheckpoint(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "testplugin")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/rlif/rlif/plugins/internal/testplugin").CombinedOutput(); err != nil {
		t.Fatalf("build testplugin: %v\n%s", err, b)
	}
	marker := filepath.Join(t.TempDir(), "fail")
	const steps = 3
	run := func(out string) config.Run {
		cfg := storiesRun(t, out, steps)
		cfg.Rewards = append(cfg.Rewards, config.Reward{Spec: rewards.Spec{Name: "flaky", Args: map[string]any{"mode": "error_if_marker", "marker": marker}}, Deployment: host.Deployment{Plugin: bin}})
		cfg.Output = config.Output{CompletionsEvery: 1}
		return cfg
	}
	ref := t.TempDir()
	if _, err := Run(context.Background(), run(ref), Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	want := readMetrics(t, filepath.Join(ref, "metrics.jsonl"))

	out := t.TempDir()
	w := &onProgress{k: 1, do: func() { os.WriteFile(marker, nil, 0o644) }}
	res, err := Run(context.Background(), run(out), Options{Executable: rlifBin, Progress: w})
	if err == nil || !strings.Contains(err.Error(), "step 2: score") || !strings.Contains(err.Error(), "is checkpointed in") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("error %v, want the step's error and the checkpoint written\n%s", err, w.String())
	}
	t.Log(err)
	if _, serr := os.Stat(filepath.Join(out, "checkpoints", "step-1", "state.json")); serr != nil || res.LastCheck == "" {
		t.Fatalf("no checkpoint of step 1 (%v, result %+v): %v", serr, res, err)
	}
	os.Remove(marker)
	if _, err := Run(context.Background(), run(out), Options{Executable: rlifBin, Resume: true}); err != nil {
		t.Fatal(err)
	}
	got := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(got) != steps {
		t.Fatalf("%d metric lines after resume, want %d", len(got), steps)
	}
	for i := range got {
		for _, k := range []string{"step", "reward/flaky/mean", "loss", "grad_norm", "completion_length/mean"} {
			if got[i][k] != want[i][k] {
				t.Errorf("step %d %s: resumed %v, uninterrupted %v", i+1, k, got[i][k], want[i][k])
			}
		}
	}
}

// A step whose learner update completed but whose sync failed (here: the sync directory
// became a file) logs the step and checkpoints it; the resumed run continues after it.
func TestSyncErrorWritesCheckpoint(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 3)
	cfg.Output = config.Output{CompletionsEvery: 1}
	sync := filepath.Join(out, "sync")
	w := &onProgress{k: 1, do: func() { os.RemoveAll(sync); os.WriteFile(sync, []byte("in the way"), 0o644) }}
	_, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: w})
	if err == nil || !strings.Contains(err.Error(), "step 2: sync") || !strings.Contains(err.Error(), "is checkpointed in") {
		t.Fatalf("error %v, want the sync error and the checkpoint written", err)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints", "step-2", "state.json")); err != nil {
		t.Fatal(err)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != 2 {
		t.Fatalf("%d metric lines, want 2 (step 2's update completed)", n)
	}
	os.Remove(sync)
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true})
	if err != nil || res.Steps != 3 {
		t.Fatalf("resume: %+v %v", res, err)
	}
	ms := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(ms) != 3 || ms[2]["step"] != 3 {
		t.Fatalf("metrics after resume: %v", ms)
	}
}

// A resume with another step count would change a cosine schedule's decay; it is
// refused, and the refused resume (like one with another configuration) leaves the run's
// config.toml as it was, so the run can still be resumed.
func TestResumeRefusesAnotherSchedule(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 4)
	cfg.Learner.Schedule = "cosine"
	cfg.Output.CheckpointEvery = 0
	w := &onProgress{k: 1}
	stop := make(chan struct{})
	w.do = func() { close(stop) }
	if res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Stop: stop, Progress: w}); err != nil || !res.Stopped {
		t.Fatalf("%+v %v", res, err)
	}
	before, err := os.ReadFile(filepath.Join(out, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	longer := cfg
	longer.Steps = 8
	_, err = Run(context.Background(), longer, Options{Executable: rlifBin, Resume: true})
	if err == nil || !strings.Contains(err.Error(), "schedule") || !strings.Contains(err.Error(), "--steps 4") {
		t.Fatalf("resume with --steps 8: %v", err)
	}
	t.Log(err)
	other := cfg
	other.Learner.LR *= 10
	if _, err := Run(context.Background(), other, Options{Executable: rlifBin, Resume: true}); err == nil {
		t.Fatal("resume with another lr accepted")
	}
	after, _ := os.ReadFile(filepath.Join(out, "config.toml"))
	if !bytes.Equal(before, after) {
		t.Fatalf("a refused resume rewrote config.toml:\n%s\nwas:\n%s", after, before)
	}
}

// Resuming from a checkpoint older than the last logged step rewinds completions.jsonl
// as well as metrics.jsonl: every step's completions appear once.
func TestResumeRewindsCompletions(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	// As if the run had been killed after logging step 2, before its checkpoint.
	if err := os.RemoveAll(filepath.Join(out, "checkpoints", "step-2")); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, "completions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	perStep := map[int]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var rec completionRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		perStep[rec.Step]++
	}
	group := cfg.Sampling.PromptsPerStep * cfg.Sampling.GroupSize
	if len(perStep) != 2 || perStep[1] != group || perStep[2] != group {
		t.Fatalf("completions per step %v, want %d for each of steps 1 and 2", perStep, group)
	}
}

// Two runs cannot share a run directory: the second is refused, naming the holder.
func TestRunDirLock(t *testing.T) {
	out := t.TempDir()
	held, err := lockRunDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	host, _ := os.Hostname()
	_, err = Run(context.Background(), storiesRun(t, out, 1), Options{Executable: rlifBin})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("in use by rlif pid %d ", os.Getpid())) || !strings.Contains(err.Error(), host) {
		t.Fatalf("second run into a locked directory: %v", err)
	}
	held.Close()
	again, err := lockRunDir(out)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}

// snapshot maps every file and directory under dir to its contents ("" for a directory).
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			m[rel] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// rlif never deletes what it did not write. A directory that is not provably an rlif
// run directory (no marker, or files rlif does not write) is refused with and without
// --overwrite, every file in it survives byte for byte, and the refusal does not suggest
// --overwrite; only a marked run directory of rlif's own files is cleared.
func TestOverwriteNeverDeletesUserFiles(t *testing.T) {
	oldRun := map[string]string{"config.toml": "steps = 5\n", "metrics.jsonl": "{\"step\": 1}\n", "checkpoints/step-5/state.json": `{"step": 5}`}
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{"home with a config.toml", map[string]string{"config.toml": "mine\n", "notes.md": "notes", "docs/thesis.txt": "years", ".ssh/id_rsa": "key"}},
		{"a project's own config.toml", map[string]string{"config.toml": "[tool]\n"}},
		{"a run directory without the marker", oldRun},
		{"a marked run directory with a user's file", map[string]string{runMarker: "", "config.toml": "steps = 5\n", "checkpoints/step-5/state.json": "{}", "analysis.ipynb": "{}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tc.files)
			before := snapshot(t, dir)
			for _, overwrite := range []bool{false, true} {
				_, err := Run(context.Background(), storiesRun(t, dir, 1), Options{Executable: rlifBin, Overwrite: overwrite})
				if err == nil || strings.Contains(err.Error(), "--overwrite") || !strings.Contains(err.Error(), "choose another --out") {
					t.Fatalf("overwrite=%v: %v", overwrite, err)
				}
				if after := snapshot(t, dir); !reflect.DeepEqual(after, before) {
					t.Fatalf("overwrite=%v changed the directory:\nbefore %v\nafter  %v", overwrite, before, after)
				}
			}
		})
	}
}

// --overwrite never clears the working directory or one that holds it, even a marked
// run directory.
func TestOverwriteRefusesWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{runMarker: "", "config.toml": "steps = 1\n", "src/main.go": "package main"})
	os.Remove(filepath.Join(dir, "src", "main.go"))
	before := snapshot(t, dir)
	cfg := storiesRun(t, dir, 1)
	for _, wd := range []string{dir, filepath.Join(dir, "src")} {
		t.Chdir(wd)
		cfg.Out, _ = filepath.Rel(wd, dir)
		out := cfg.Out
		_, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Overwrite: true})
		if err == nil || !strings.Contains(err.Error(), "working directory") {
			t.Fatalf("--out %s from %s: %v", out, wd, err)
		}
		if after := snapshot(t, dir); !reflect.DeepEqual(after, before) {
			t.Fatalf("--out %s changed the directory", out)
		}
	}
}

// A fresh run into a run directory of another run is refused, offering --resume and
// --overwrite; --overwrite clears that run (made by rlif, so marked) and only it.
func TestOverwriteClearsOwnRun(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	cfg.Output.KeepCheckpoints = 0
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, runMarker)); err != nil {
		t.Fatalf("the run did not mark its directory: %v", err)
	}
	_, err := Run(context.Background(), storiesRun(t, out, 1), Options{Executable: rlifBin})
	if err == nil || !strings.Contains(err.Error(), "holds an rlif run") || !strings.Contains(err.Error(), "--overwrite") || !strings.Contains(err.Error(), "--resume") {
		t.Fatalf("fresh run into another run's directory: %v", err)
	}
	if _, err := Run(context.Background(), storiesRun(t, out, 1), Options{Executable: rlifBin, Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if steps, _ := checkpointSteps(out); len(steps) != 1 || steps[0] != 1 {
		t.Fatalf("checkpoints after --overwrite: %v", steps)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != 1 {
		t.Fatalf("%d metrics lines after --overwrite, want 1", n)
	}
}

// --resume on a directory without a checkpoint is refused, saying what to do.
func TestResumeWithoutCheckpoint(t *testing.T) {
	empty := t.TempDir()
	_, err := Run(context.Background(), storiesRun(t, empty, 1), Options{Executable: rlifBin, Resume: true})
	if err == nil || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("resume of an empty directory: %v", err)
	}
	started := t.TempDir()
	os.WriteFile(filepath.Join(started, "config.toml"), []byte("steps = 1\n"), 0o644)
	_, err = Run(context.Background(), storiesRun(t, started, 1), Options{Executable: rlifBin, Resume: true})
	if err == nil || !strings.Contains(err.Error(), "no checkpoint yet") || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("resume of a run without a checkpoint: %v", err)
	}
	if _, err := os.Stat(filepath.Join(started, "metrics.jsonl")); err == nil {
		t.Fatal("the refused resume wrote metrics.jsonl")
	}
}

// A damaged newest checkpoint (a flipped byte in the learner state) is found by its
// manifest; the resume falls back to the previous one with a notice, and the temporary
// directory of an interrupted checkpoint is removed.
func TestDamagedCheckpointFallsBack(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	cfg.Output.KeepCheckpoints = 0
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(out, "checkpoints", "step-2", "learner", "learner-state.gguf")
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-len(b)/3] ^= 0x40 // in the tensor data, past the header
	os.WriteFile(state, b, 0o644)
	leftover := filepath.Join(out, "checkpoints", ".step-3.tmp-abc")
	os.MkdirAll(filepath.Join(leftover, "learner"), 0o755)
	os.WriteFile(filepath.Join(leftover, "learner", "learner-state.gguf"), b, 0o644)

	var progress strings.Builder
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	p := progress.String()
	if !strings.Contains(p, "step-2 is damaged") || !strings.Contains(p, "falling back to checkpoint step-1") || !strings.Contains(p, "resuming from") || res.Steps != 2 {
		t.Fatalf("result %+v, progress:\n%s", res, p)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the interrupted checkpoint's temporary directory is still there: %v", err)
	}
	if err := verifyCheckpoint(filepath.Join(out, "checkpoints", "step-2")); err != nil {
		t.Errorf("the step-2 checkpoint written again: %v", err)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != 2 {
		t.Errorf("%d metric lines", n)
	}
}

// A run stopped by SIGINT (Ctrl-C) exits with status 130, not 0 like a finished one.
func TestInterruptExitStatus(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 4)
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "run.toml")
	os.WriteFile(cfgPath, b, 0o644)
	cmd := exec.Command(rlifBin, "train", "--config", cfgPath)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "step 1/") {
			cmd.Process.Signal(os.Interrupt)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(seen.String(), "stopped after step") {
		t.Fatalf("exit %v, want status 130 after a stop; stdout:\n%s", err, seen.String())
	}
}

// A fresh run refused after it took the run directory (here: a reward plugin that is not
// there) leaves it as it was: a directory it created is gone, an empty one stays empty,
// and the same run, corrected or not, is not refused as "not empty".
func TestRefusedRunLeavesDirAsItWas(t *testing.T) {
	empty := t.TempDir()
	created := filepath.Join(t.TempDir(), "runs", "a")
	for _, out := range []string{empty, created} {
		cfg := storiesRun(t, out, 1)
		cfg.Rewards = append(cfg.Rewards, config.Reward{Spec: rewards.Spec{Name: "gone"}, Deployment: host.Deployment{Plugin: filepath.Join(t.TempDir(), "no-such-plugin")}})
		for i := 0; i < 2; i++ {
			_, err := Run(context.Background(), cfg, Options{Executable: rlifBin})
			if err == nil || strings.Contains(err.Error(), "not empty") || !strings.Contains(err.Error(), "no-such-plugin") {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		}
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) > 0 {
		t.Errorf("the refused run left %v (%v) in the empty directory", entries, err)
	}
	if _, err := os.Stat(filepath.Dir(created)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the directories the refused run created are still there: %v", err)
	}
}

// A checkpoint without its manifest is damaged (every checkpoint rlif writes has one):
// the resume does not train on weights it cannot check, but falls back to an intact one.
func TestCheckpointWithoutManifestIsDamaged(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	cfg.Output.KeepCheckpoints = 0
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	step2 := filepath.Join(out, "checkpoints", "step-2")
	if err := os.Remove(filepath.Join(step2, manifestFile)); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(out, "final"))
	var progress strings.Builder
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	p := progress.String()
	if !strings.Contains(p, "step-2 is damaged (manifest.json is missing") || !strings.Contains(p, "falling back to checkpoint step-1") || res.Steps != 2 {
		t.Fatalf("result %+v, progress:\n%s", res, p)
	}
}

// A Hugging Face directory as the run's model (a config's model = or --model) is
// converted once into the run directory, the same file reused while the checkpoint is
// unchanged, and the run trains from it and records it in config.toml; a chat run on a
// directory without a chat template is refused, and a GGUF path is left as it is.
func TestRunConvertsHFModel(t *testing.T) {
	dir := t.TempDir()
	hfDir := filepath.Join(dir, "stories-hf")
	if b, err := exec.Command(rlifBin, "export", storiesRun(t, "", 1).Model, "--hf", hfDir, "--dtype", "f32").CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, b)
	}
	out := filepath.Join(dir, "run")
	cfg := storiesRun(t, out, 1)
	gguf := cfg.Model
	cfg.Model = hfDir
	var progress strings.Builder
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	written, err := config.Load(filepath.Join(out, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	converted := written.Model
	if !strings.HasPrefix(converted, filepath.Join(out, "hf-model", "stories-hf-")) || !strings.HasSuffix(converted, ".gguf") || !strings.Contains(progress.String(), "converted to "+converted) {
		t.Fatalf("config.toml model %s; progress:\n%s", converted, progress.String())
	}
	for _, tc := range []struct {
		model   string
		raw     bool
		want    string
		wantErr string
	}{
		{hfDir, true, converted, ""},
		{hfDir, false, "", "chat_template"},
		{gguf, true, gguf, ""},
	} {
		c := cfg
		c.Model, c.Data.Raw = tc.model, tc.raw
		r := &run{cfg: c, out: out, progress: io.Discard}
		err := r.convertModel()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s raw=%v: %v, want an error naming %s", tc.model, tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || r.cfg.Model != tc.want {
			t.Errorf("%s raw=%v: model %s (%v), want %s", tc.model, tc.raw, r.cfg.Model, err, tc.want)
		}
	}
}

// A run started from a config with relative paths (model, data, out, a plugin beside the
// config) can be resumed, repeated from its config.toml and exported from any working
// directory: config.toml records every path absolute.
func TestRelativeConfigRunsFromAnywhere(t *testing.T) {
	keyword, err := filepath.Abs(filepath.Join("..", "..", "examples", "plugins", "python-keyword", "plugin.py"))
	if err != nil {
		t.Fatal(err)
	}
	sdk, err := filepath.Abs(filepath.Join("..", "..", "plugins", "sdk", "python"))
	if err != nil {
		t.Fatal(err)
	}
	stories := storiesRun(t, "", 1).Model
	root := t.TempDir()
	model, _ := os.ReadFile(stories)
	script, _ := os.ReadFile(keyword)
	writeTree(t, root, map[string]string{
		"models/s.gguf":   string(model),
		"cfg/kw.py":       string(script),
		"cfg/d.jsonl":     "{\"prompt\": \"Once upon a time\"}\n{\"prompt\": \"The cat\"}\n{\"prompt\": \"Lily saw\"}\n{\"prompt\": \"One day\"}\n",
		"elsewhere/.keep": "",
	})
	os.Chmod(filepath.Join(root, "cfg", "kw.py"), 0o755)
	writeTree(t, root, map[string]string{"cfg/run.toml": `model = "../models/s.gguf"
out = "../runs/base"
steps = 1
seed = 3
[data]
path = "d.jsonl"
raw = true
[sampling]
prompts_per_step = 2
group_size = 2
max_tokens = 8
threads = 1
[learner]
threads = 1
schedule = "constant"
[sync]
precision = "f32"
[[rewards]]
name = "self_certainty"
[[rewards]]
name = "kw"
plugin = "kw.py"
args = { keywords = ["the"] }
env = { PYTHONPATH = "` + sdk + `" }
`})
	rlif := func(wd string, args ...string) string {
		t.Helper()
		cmd := exec.Command(rlifBin, args...)
		cmd.Dir = filepath.Join(root, wd)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rlif %s (in %s): %v\n%s", strings.Join(args, " "), wd, err, b)
		}
		return string(b)
	}
	rlif(".", "train", "--config", "cfg/run.toml")
	run := filepath.Join(root, "runs", "base")
	written, err := os.ReadFile(filepath.Join(run, "config.toml"))
	if err != nil {
		t.Fatalf("the run is not where out = \"../runs/base\" in cfg/ puts it: %v", err)
	}
	for _, p := range []string{filepath.Join(root, "models", "s.gguf"), filepath.Join(root, "cfg", "d.jsonl"), filepath.Join(root, "cfg", "kw.py"), run} {
		if !strings.Contains(string(written), fmt.Sprintf("%q", p)) {
			t.Errorf("config.toml does not name %s:\n%s", p, written)
		}
	}
	// Resumed from elsewhere, with a relative --resume, for one more step.
	os.RemoveAll(filepath.Join(run, "final"))
	if out := rlif("elsewhere", "train", "--resume", "../runs/base", "--steps", "2"); !strings.Contains(out, "resuming from") {
		t.Fatalf("resume:\n%s", out)
	}
	if n := len(readMetrics(t, filepath.Join(run, "metrics.jsonl"))); n != 2 {
		t.Fatalf("%d metrics lines after the resume, want 2", n)
	}
	// Repeated from its config.toml, from inside the run directory, into another one.
	rlif("runs/base", "train", "--config", "config.toml", "--out", "../again")
	if _, err := os.Stat(filepath.Join(root, "runs", "again", "final", "model.gguf")); err != nil {
		t.Fatalf("repeated run: %v", err)
	}
	// Exported from elsewhere.
	rlif("elsewhere", "export", "../runs/base/checkpoints/step-1", "--hf", "hf")
	if _, err := os.Stat(filepath.Join(root, "elsewhere", "hf", "config.json")); err != nil {
		t.Fatalf("export: %v", err)
	}
}

// A run directory of an rlif older than the marker resumes, and is marked by it: from then
// on --overwrite may clear it.
func TestResumeMarksOldRunDir(t *testing.T) {
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	stop := &stopAfter{k: 1, stop: make(chan struct{})}
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Stop: stop.stop, Progress: stop}); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(out, runMarker))
	if _, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Resume: true}); err != nil {
		t.Fatalf("resume of a run directory without the marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, runMarker)); err != nil {
		t.Fatalf("the resumed run did not mark its directory: %v", err)
	}
}
