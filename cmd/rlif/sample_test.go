package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
)

// runCLI runs rlif in process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSampleJSON(t *testing.T) {
	model := testutil.StoriesModel(t)
	code, out, errs := runCLI(t, "sample", "--model", model, "--raw", "--prompt", "Once upon a time", "--n", "3", "--max-tokens", "24", "--temperature", "0.8", "--seed", "5", "--json", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	for _, line := range lines {
		var c map[string]any
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"prompt_tokens", "tokens", "text", "finish_reason", "logprob", "sampled_logprob", "raw_logprob", "entropy", "self_certainty", "self_certainty_mean"} {
			if _, ok := c[k]; !ok {
				t.Errorf("field %q missing in %s", k, line)
			}
		}
		n := len(c["tokens"].([]any))
		for _, k := range []string{"logprob", "sampled_logprob", "raw_logprob", "entropy", "self_certainty"} {
			if len(c[k].([]any)) != n {
				t.Errorf("%s has %d entries for %d tokens", k, len(c[k].([]any)), n)
			}
		}
		if f := c["finish_reason"]; f != "eos" && f != "length" && f != "stop" {
			t.Errorf("finish_reason %v", f)
		}
	}
	// The same seed gives the same output.
	_, again, _ := runCLI(t, "sample", "--model", model, "--raw", "--prompt", "Once upon a time", "--n", "3", "--max-tokens", "24", "--temperature", "0.8", "--seed", "5", "--json", "--threads", "1")
	if again != out {
		t.Fatal("a second run with the same seed printed something else")
	}
}

// When the model emits bytes that are not valid UTF-8 (the stories model's byte-fallback
// tokens at a high temperature), each --json line is valid JSON in valid UTF-8, and its
// text is the tokens' bytes made valid by rollout.ValidText, the rule rewards see.
func TestSampleJSONInvalidUTF8(t *testing.T) {
	model := testutil.StoriesModel(t)
	code, out, errs := runCLI(t, "sample", "--model", model, "--raw", "--prompt", "Once upon a time", "--n", "6", "--max-tokens", "12", "--temperature", "10", "--seed", "1", "--json", "--threads", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	m, err := sampler.Load(model, sampler.Options{Threads: 1, ContextSize: 512, MaxSequences: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	invalid := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !utf8.ValidString(line) || !json.Valid([]byte(line)) {
			t.Fatalf("not valid UTF-8 JSON: %q", line)
		}
		var c rollout.Completion
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		var raw []byte
		for _, tok := range c.Tokens {
			if !m.IsEOG(tok) {
				raw = append(raw, m.Piece(tok)...)
			}
		}
		if !utf8.Valid(raw) {
			invalid++
		}
		if want := rollout.ValidText(string(raw)); c.Text != want {
			t.Errorf("text %q, want %q (bytes %q)", c.Text, want, raw)
		}
	}
	if invalid == 0 {
		t.Fatal("no completion held invalid bytes: the test proves nothing")
	}
}

func TestSampleText(t *testing.T) {
	code, out, errs := runCLI(t, "sample", "--model", testutil.StoriesModel(t), "--raw", "--prompt", "Once upon a time", "--max-tokens", "20", "--threads", "1")
	if code != 0 || !strings.Contains(out, "there was a little girl named Lily") || !strings.Contains(out, "tok/s") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

func TestSampleBadInput(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "weights.bin")
	os.WriteFile(notGGUF, []byte("not a model at all"), 0o644)
	stories := testutil.StoriesModel(t)
	nan := testutil.NaNTail(t, stories, 4096)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing model", []string{"--model", filepath.Join(dir, "none.gguf"), "--prompt", "hi"}, 1, "no such file"},
		{"not gguf", []string{"--model", notGGUF, "--prompt", "hi"}, 1, "not a GGUF file"},
		{"no prompt", []string{"--model", stories}, 2, "--prompt is required"},
		{"bad flag", []string{"--model", stories, "--prompt", "hi", "--temperatur", "1"}, 2, "temperatur"},
		{"prompt too long", []string{"--model", stories, "--raw", "--prompt", strings.Repeat("the cat sat on the mat ", 120)}, 1, "tokens"},
		{"no template", []string{"--model", stories, "--prompt", "hi"}, 1, "no chat template"},
		{"bad n", []string{"--model", stories, "--prompt", "hi", "--n", "0"}, 2, "--n"},
		// NaN weights sampled "self-certainty NaN" (and --json failed on the NaN).
		{"NaN weights", []string{"--model", nan, "--raw", "--prompt", "Once", "--max-tokens", "8"}, 1, "model " + nan + ": the model's outputs are not finite"},
		{"NaN weights, json", []string{"--model", nan, "--raw", "--prompt", "Once", "--max-tokens", "8", "--json"}, 1, "weights are damaged"},
		{"negative seed", []string{"--model", stories, "--prompt", "hi", "--seed", "-1"}, 2, `invalid value "-1" for flag -seed: want an integer from 0 to 9223372036854775807`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"sample", "--threads", "1"}, tc.args...)...)
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			last := lines[len(lines)-1]
			if code != tc.code || !strings.Contains(last, tc.want) || !strings.HasPrefix(last, "rlif sample: ") {
				t.Fatalf("exit %d (want %d), stderr:\n%s", code, tc.code, errs)
			}
			if strings.Contains(errs, "goroutine") || strings.Contains(errs, "panic") {
				t.Fatalf("stack trace on a user mistake:\n%s", errs)
			}
		})
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errs := runCLI(t, "smaple")
	if code != 2 || !strings.Contains(errs, `unknown command "smaple"`) {
		t.Fatalf("exit %d: %s", code, errs)
	}
}
