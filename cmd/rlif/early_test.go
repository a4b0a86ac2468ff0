package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/core/eval"
	"github.com/rlif/rlif/internal/testutil"
)

// Mistakes that the base commit found late (after loading both engines, at the drawn row,
// after the whole evaluation) or described wrongly are reported before any model loads,
// on one line, naming the file and row and what to do.
func TestErrorsBeforeLoading(t *testing.T) {
	dir := t.TempDir()
	stories := testutil.StoriesModel(t) // no chat template; a 512-token context
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("the cat sat on the mat ", 120)
	// The long prompt is the third row, on line 4 (a blank line before it).
	longRows := write("long.jsonl", `{"prompt": "Once upon a time", "answer": "1"}`+"\n"+`{"prompt": "Lily", "answer": "2"}`+"\n\n"+`{"prompt": "`+long+`", "answer": "3"}`+"\n")
	shortRows := write("short.jsonl", `{"prompt": "Once upon a time", "answer": "1"}`+"\n")
	outFile := write("results.txt", "keep me")
	hfDir := filepath.Join(dir, "SmolLM2-hf")
	os.MkdirAll(hfDir, 0o755)
	write("SmolLM2-hf/config.json", "{}")
	trainOut := filepath.Join(dir, "run")

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"train: no chat template", []string{"train", "--model", stories, "--data", shortRows, "--out", trainOut}, 1, []string{"no chat template", "--raw"}},
		{"train: raw, a prompt too long", []string{"train", "--model", stories, "--raw", "--data", longRows, "--out", trainOut}, 1, []string{"long.jsonl: line 4:", "tokens", "512"}},
		{"train: a model directory", []string{"train", "--model", dir, "--data", shortRows, "--out", trainOut}, 1, []string{dir + " is a directory", "rlif takes a GGUF model file"}},
		{"train: a broken Hugging Face directory", []string{"train", "--model", hfDir, "--data", shortRows, "--out", trainOut}, 1, []string{hfDir, "config.json"}},
		{"train: threads", []string{"train", "--config", write("threads.toml", "model = \""+stories+"\"\n[sampling]\nthreads = -4\n")}, 1, []string{"sampling.threads = -4"}},
		{"train: max tokens past the context", []string{"train", "--config", write("long.toml", "model = \""+stories+"\"\n[data]\nraw = true\n[sampling]\nmax_tokens = 4096\n")}, 1, []string{"sampling.max_tokens = 4096", "context holds 512 tokens"}},
		{"eval: no chat template", []string{"eval", "--model", stories, "--data", shortRows}, 1, []string{"no chat template", "--raw"}},
		{"eval: raw, a prompt too long", []string{"eval", "--model", stories, "--raw", "--data", longRows}, 1, []string{"long.jsonl: line 4:", "tokens", "512"}},
		{"eval: out is a file", []string{"eval", "--model", stories, "--raw", "--data", shortRows, "--out", outFile}, 1, []string{"--out " + outFile + " is a file"}},
		{"eval: out under a file", []string{"eval", "--model", stories, "--raw", "--data", shortRows, "--out", filepath.Join(outFile, "sub")}, 1, []string{outFile + " is a file"}},
		{"eval: temperature nan", []string{"eval", "--model", stories, "--raw", "--data", shortRows, "--temperature", "nan"}, 2, []string{"--temperature NaN: want a finite number"}},
		{"eval: threads", []string{"eval", "--model", stories, "--raw", "--data", shortRows, "--threads", "-4"}, 2, []string{"--threads -4"}},
		{"sample: a model directory", []string{"sample", "--model", hfDir, "--prompt", "hi"}, 1, []string{hfDir + " is a directory", "rlif convert"}},
		{"sample: temperature nan", []string{"sample", "--model", stories, "--raw", "--prompt", "hi", "--temperature", "nan"}, 2, []string{"--temperature NaN"}},
		{"sample: top-p inf", []string{"sample", "--model", stories, "--raw", "--prompt", "hi", "--top-p", "inf"}, 2, []string{"--top-p +Inf"}},
		{"sample: min-p nan", []string{"sample", "--model", stories, "--raw", "--prompt", "hi", "--min-p", "nan"}, 2, []string{"--min-p NaN"}},
		{"sample: threads", []string{"sample", "--model", stories, "--raw", "--prompt", "hi", "--threads", "-4"}, 2, []string{"--threads -4"}},
		{"sample: max tokens past the context", []string{"sample", "--model", stories, "--raw", "--prompt", "Once upon a time", "--n", "64", "--max-tokens", "10000000"}, 2, []string{"--max-tokens 10000000", "context holds 512 tokens"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, errs := runCLI(t, tc.args...)
			line := strings.TrimSpace(errs)
			if code != tc.code || strings.Contains(line, "\n") {
				t.Fatalf("exit %d (want %d), stderr:\n%s", code, tc.code, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error %q does not mention %q", line, w)
				}
			}
			if strings.Contains(stdout, "loading") {
				t.Errorf("a model was loaded before the error:\n%s", stdout)
			}
			t.Logf("%s (%.2fs)", line, time.Since(start).Seconds())
		})
	}
	if b, _ := os.ReadFile(outFile); string(b) != "keep me" {
		t.Errorf("--out file changed: %q", b)
	}
	if _, err := os.Stat(trainOut); err == nil {
		t.Errorf("a refused run created its directory %s", trainOut)
	}
}

// rlif eval reads parquet with training's loader and evaluates a base model on raw
// prompts; the base commit had no --raw and read .parquet as JSON.
func TestEvalRawParquet(t *testing.T) {
	stories := testutil.StoriesModel(t)
	dir := t.TempDir()
	type row struct {
		Prompt string `parquet:"prompt"`
		Answer string `parquet:"answer"`
	}
	data := filepath.Join(dir, "stories.parquet")
	if err := parquet.WriteFile(data, []row{{"Once upon a time", "#### 3"}, {"Lily wanted", "#### 7"}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "new", "eval")
	code, stdout, errs := runCLI(t, "eval", "--model", stories, "--raw", "--data", data, "--max-tokens", "8", "--threads", "1", "--out", out, "--json", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, `"raw":true`) || !strings.Contains(stdout, `"items":2`) {
		t.Errorf("summary: %s", stdout)
	}
	recs, err := eval.ReadRecords(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].Prompt != "Once upon a time" || recs[1].Gold != "7" || recs[1].Length == 0 {
		t.Errorf("records: %+v", recs)
	}

	// A max tokens past the model's context sizes the KV cache to the context, not to
	// 16 sequences x 10M tokens (the base commit asked llama.cpp for 1.6e8 cells).
	code, stdout, errs = runCLI(t, "eval", "--model", stories, "--raw", "--data", data, "--limit", "1", "--max-tokens", "10000000", "--threads", "1", "--json", "--quiet")
	if code != 0 || !strings.Contains(stdout, `"items":1`) {
		t.Fatalf("exit %d: %s%s", code, stdout, errs)
	}
}

// Training and rlif eval default to one system prompt, the paper's, so that evaluating a
// model before and after a run uses the protocol it was trained with.
func TestDefaultSystemPromptIsShared(t *testing.T) {
	train := config.Default().Data.SystemPrompt
	if !strings.Contains(train, "step by step") || !strings.Contains(train, `\boxed{}`) {
		t.Errorf("training's default system prompt %q is not the paper's (step-by-step reasoning, \\boxed{} answer)", train)
	}
	// The default that rlif eval shows in its help is the flag's real default.
	_, _, help := runCLI(t, "eval", "-h")
	i := strings.Index(help, "-system string")
	if i < 0 {
		t.Fatalf("no --system in eval's help:\n%s", help)
	}
	flagHelp := help[i:]
	flagHelp = flagHelp[:strings.Index(flagHelp, "\n  -")]
	if want := `(default "` + strings.ReplaceAll(train, `\`, `\\`) + `")`; !strings.Contains(flagHelp, want) {
		t.Errorf("rlif eval's --system default differs from training's %q:\n%s", train, flagHelp)
	}
	// The examples that claim the paper's prompt use it.
	cfg, err := config.Load(filepath.Join(testutil.RepoRoot(t), "examples", "intuitor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Data.SystemPrompt != train {
		t.Errorf("examples/intuitor.toml's system prompt %q differs from the default %q", cfg.Data.SystemPrompt, train)
	}
}
