package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/learner"
)

// rlif export writes a Hugging Face directory that rlif convert turns back into a GGUF
// with the same tensors; misuse is a one-line error with a non-zero exit.
func TestExportConvertCLI(t *testing.T) {
	stories := testutil.StoriesModel(t)
	dir := t.TempDir()
	hfDir := filepath.Join(dir, "hf")
	if code, _, errs := runCLI(t, "export", stories, "--hf", hfDir, "--dtype", "f32"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	back := filepath.Join(dir, "back.gguf")
	if code, _, errs := runCLI(t, "convert", hfDir, back, "--raw"); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, errs)
	}
	a, _ := gguf.Open(stories)
	b, err := gguf.Open(back)
	if err != nil || len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("converted model: %v", err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no template", []string{"convert", hfDir, filepath.Join(dir, "x.gguf")}, 1, []string{"tokenizer_config.json", "chat_template", "--raw"}},
		{"output exists", []string{"convert", hfDir, back, "--raw"}, 1, []string{"back.gguf", "exists"}},
		{"not a model directory", []string{"convert", dir, filepath.Join(dir, "y.gguf")}, 1, []string{"config.json", "not found"}},
		{"bad precision", []string{"convert", hfDir, filepath.Join(dir, "z.gguf"), "--raw", "--precision", "q9"}, 1, []string{"q9"}},
		{"export over files", []string{"export", stories, "--hf", hfDir}, 1, []string{"not empty"}},
		{"export without --hf", []string{"export", stories}, 2, []string{"usage"}},
		{"export bad dtype", []string{"export", stories, "--hf", filepath.Join(dir, "n"), "--dtype", "f8"}, 2, []string{"f8"}},
		{"export not a run", []string{"export", dir, "--hf", filepath.Join(dir, "m")}, 1, []string{"checkpoint"}},
		{"convert into a directory", []string{"convert", hfDir, dir, "--raw"}, 1, []string{dir + " is a directory; name the file to write (such as " + filepath.Join(dir, "hf.gguf") + ")"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, tc.args...)
			line := strings.TrimSpace(errs)
			if code != tc.code || strings.Contains(line, "\n") {
				t.Fatalf("exit %d (want %d), stderr:\n%s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
		})
	}
	for _, p := range []string{"x.gguf", "y.gguf", "z.gguf"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was written by a failed convert", p)
		}
	}
}

// A named pipe given as the model is refused by every command at once: nobody writes to
// it, so opening it to read would wait forever. That each command returns is the test.
func TestModelNamedPipe(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "d.jsonl")
	os.WriteFile(data, []byte(`{"prompt": "Once upon a time", "answer": "1"}`+"\n"), 0o644)
	notRegular := fifo + " is a named pipe (FIFO), not a regular file"
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"train", []string{"train", "--model", fifo, "--raw", "--data", data, "--out", filepath.Join(dir, "run")}},
		{"sample", []string{"sample", "--model", fifo, "--raw", "--prompt", "hi"}},
		{"eval", []string{"eval", "--model", fifo, "--raw", "--data", data}},
		{"export", []string{"export", fifo, "--hf", filepath.Join(dir, "hf")}},
		{"convert", []string{"convert", fifo, filepath.Join(dir, "out.gguf")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, tc.args...)
			line := strings.TrimSpace(errs)
			t.Log(line)
			if code != 1 || strings.Contains(line, "\n") {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
			want := notRegular
			if tc.name == "convert" {
				want = fifo + " is not a directory; a Hugging Face model is a directory holding config.json"
			}
			if !strings.Contains(line, want) {
				t.Errorf("error %q does not say %q", line, want)
			}
		})
	}
}

// rlif export of a run without a final model loads its newest checkpoint into the learner:
// here a checkpoint saved before any step, so the export equals the model's own.
func TestExportCheckpoint(t *testing.T) {
	stories := testutil.StoriesModel(t)
	run := t.TempDir()
	cfg := config.Default()
	cfg.Model, cfg.Out, cfg.Learner.Threads = stories, run, 1
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(run, "config.toml"), b, 0o644)
	m, err := learner.Load(stories, learner.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := learner.NewTrainer(m, learner.TrainConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"step-1", "step-2"} {
		ck := filepath.Join(run, "checkpoints", step)
		if err := tr.SaveState(filepath.Join(ck, "learner")); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(ck, "state.json"), []byte("{}"), 0o644)
	}
	tr.Close()
	m.Close()
	got := filepath.Join(t.TempDir(), "from-run")
	if code, _, errs := runCLI(t, "export", run, "--hf", got, "--dtype", "f32"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	want := filepath.Join(t.TempDir(), "from-gguf")
	if code, _, errs := runCLI(t, "export", stories, "--hf", want, "--dtype", "f32"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	for _, f := range []string{"model.safetensors", "config.json", "tokenizer.model"} {
		a, _ := os.ReadFile(filepath.Join(got, f))
		b, _ := os.ReadFile(filepath.Join(want, f))
		if len(a) == 0 || string(a) != string(b) {
			t.Errorf("%s differs between the checkpoint's export and the model's", f)
		}
	}
	// A checkpoint directory itself exports the same way.
	ck := filepath.Join(t.TempDir(), "from-ckpt")
	if code, _, errs := runCLI(t, "export", filepath.Join(run, "checkpoints", "step-1"), "--hf", ck, "--dtype", "f32"); code != 0 {
		t.Fatalf("export checkpoint: exit %d: %s", code, errs)
	}
}
