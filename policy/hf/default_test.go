package hf

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/gguf"
	"github.com/rlif/rlif/policy/sampler"
)

// The default model (SmolLM2, byte-level BPE with a chat template) survives GGUF → HF
// (f32) → GGUF: tokenizer.json rebuilds the same tokenization (special tokens, digits,
// spaces, non-ASCII), and the chat prompt's greedy completion and its log-probs repeat.
func TestRoundTripDefault(t *testing.T) {
	if testing.Short() {
		t.Skip("loads the 135M default model twice")
	}
	src := testutil.DefaultModel(t)
	dir := filepath.Join(t.TempDir(), "hf")
	if err := ExportFile(src, dir, Options{DType: "f32"}); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back.gguf")
	if err := Convert(dir, back, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	a, _ := gguf.Open(src)
	b, err := gguf.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.merges"} {
		if !slices.Equal(a.KV.Strings(k), b.KV.Strings(k)) {
			t.Errorf("%s differs", k)
		}
	}
	if !slices.Equal(a.KV.Ints("tokenizer.ggml.token_type"), b.KV.Ints("tokenizer.ggml.token_type")) {
		t.Error("tokenizer.ggml.token_type differs")
	}
	for _, k := range []string{"tokenizer.chat_template", "tokenizer.ggml.pre", "tokenizer.ggml.model"} {
		if a.KV.String(k) != b.KV.String(k) {
			t.Errorf("%s: %q back, %q before", k, b.KV.String(k), a.KV.String(k))
		}
	}
	for _, k := range []string{"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"} {
		if a.KV.Uint(k) != b.KV.Uint(k) {
			t.Errorf("%s: %d back, %d before", k, b.KV.Uint(k), a.KV.Uint(k))
		}
	}
	// The source is Q4_1, which llama.cpp multiplies differently from f32: compare with
	// its exact f32 dequantization, tensor by tensor, then as a model.
	var ts []gguf.Tensor
	for _, ta := range a.Tensors {
		da, err := a.ReadF32(ta.Name)
		if err != nil {
			t.Fatal(err)
		}
		db, err := b.ReadF32(ta.Name)
		if err != nil || !slices.Equal(da, db) {
			t.Fatalf("%s differs after the round trip (%v)", ta.Name, err)
		}
		ts = append(ts, gguf.Tensor{Name: ta.Name, Shape: ta.Shape, Data: da})
	}
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors back, want %d", len(b.Tensors), len(a.Tensors))
	}
	ref := filepath.Join(t.TempDir(), "ref.gguf")
	f32, _ := gguf.ParsePrecision("f32")
	if err := gguf.WriteModel(ref, a.KV, ts, f32); err != nil {
		t.Fatal(err)
	}
	opt := sampler.Options{Threads: 1, KVCacheF32: true, ContextSize: 512, MaxSequences: 1}
	ma, err := sampler.Load(ref, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer ma.Close()
	mb, err := sampler.Load(back, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Close()
	for _, s := range []string{"Natalia sold 48 clips in April, 1234567 and 3.50 $", "<|im_start|>user\nhi<|im_end|>", "  two  spaces\tand tabs\n\nnaïve café 日本語 🙂"} {
		ta, _ := ma.Tokenize(s, false)
		tb, err := mb.Tokenize(s, false)
		if err != nil || !slices.Equal(ta, tb) {
			t.Errorf("%q tokenizes to %v after, %v before (%v)", s, tb, ta, err)
		}
	}
	reqs := []sampler.Request{{Prompt: "What is 12 + 30?", System: "You are a helpful assistant."}}
	p := sampler.Params{MaxTokens: 16, Seed: 1}
	ga, err := ma.Sample(context.Background(), reqs, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := mb.Sample(context.Background(), reqs, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	ca, cb := ga[0][0], gb[0][0]
	if !slices.Equal(ca.PromptTokens, cb.PromptTokens) || !slices.Equal(ca.Tokens, cb.Tokens) {
		t.Fatalf("greedy: %q after, %q before", cb.Text, ca.Text)
	}
	toks := append(slices.Clone(ca.PromptTokens), ca.Tokens...)
	sa, err := ma.Score(toks, len(ca.PromptTokens), 1)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := mb.Score(toks, len(ca.PromptTokens), 1)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for j := range sa {
		worst = math.Max(worst, math.Abs(sa[j].LogProb-sb[j].LogProb))
	}
	t.Logf("greedy %q; largest log-prob difference %.3g", ca.Text, worst)
	if worst > 1e-5 {
		t.Fatalf("log-probs differ by %g", worst)
	}
}
