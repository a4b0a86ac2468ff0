package sampler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/rlif/rlif/internal/testutil"
	"github.com/rlif/rlif/policy/rollout"
)

// storiesReference is the published greedy continuation of BOS + "Once upon a time"
// (../shared/models/README.md).
const storiesReference = ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball."

func loadStories(t *testing.T, opt Options) *Model {
	t.Helper()
	if opt.Threads == 0 {
		opt.Threads = 1
	}
	m, err := Load(testutil.StoriesModel(t), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func sample1(t *testing.T, m *Model, reqs []Request, n int, p Params) [][]rollout.Completion {
	t.Helper()
	out, err := m.Sample(context.Background(), reqs, n, p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGreedyReproducesReference(t *testing.T) {
	m := loadStories(t, Options{})
	info := m.Info()
	if info.Arch != "llama" || info.VocabSize != 512 || info.ContextLength != 512 {
		t.Fatalf("info = %+v, want llama, vocab 512, context 512", info)
	}
	out := sample1(t, m, []Request{{Prompt: "Once upon a time", Raw: true}}, 1, Params{MaxTokens: 40})
	c := out[0][0]
	if !strings.HasPrefix(c.Text, storiesReference) {
		t.Fatalf("greedy continuation\n got %q\nwant prefix %q", c.Text, storiesReference)
	}
	if c.FinishReason != rollout.FinishLength || len(c.Tokens) != 40 || !c.Valid() {
		t.Fatalf("finish %q, %d tokens, valid %v", c.FinishReason, len(c.Tokens), c.Valid())
	}
	if c.PromptTokens[0] != info.BOS {
		t.Fatalf("raw prompt does not start with BOS: %v", c.PromptTokens)
	}
}

// refStats computes the statistics of token tok under logits z in float64, the slow and
// obvious way: softmax over the whole vocabulary.
func refStats(z []float32, tok int32, temp float64) rollout.TokenStats {
	lse := func(scale float64) float64 {
		m := math.Inf(-1)
		for _, v := range z {
			m = math.Max(m, float64(v)*scale)
		}
		s := 0.0
		for _, v := range z {
			s += math.Exp(float64(v)*scale - m)
		}
		return m + math.Log(s)
	}
	l1 := lse(1)
	var st rollout.TokenStats
	mean := 0.0
	for _, v := range z {
		p := math.Exp(float64(v) - l1)
		st.Entropy -= p * (float64(v) - l1)
		mean += float64(v)
	}
	mean /= float64(len(z))
	st.RawLogProb = float64(z[tok]) - l1
	st.SelfCertainty = l1 - mean - math.Log(float64(len(z)))
	if temp <= 0 {
		temp = 1
	}
	st.LogProb = float64(z[tok])/temp - lse(1/temp)
	return st
}

func checkStats(t *testing.T, what string, got, want rollout.TokenStats, tol float64) {
	t.Helper()
	pairs := []struct {
		name string
		g, w float64
	}{
		{"logprob", got.LogProb, want.LogProb},
		{"raw_logprob", got.RawLogProb, want.RawLogProb},
		{"entropy", got.Entropy, want.Entropy},
		{"self_certainty", got.SelfCertainty, want.SelfCertainty},
	}
	for _, p := range pairs {
		if d := math.Abs(p.g - p.w); !(d <= tol*math.Max(1, math.Abs(p.w))) {
			t.Errorf("%s %s = %.9g, float64 reference %.9g (|Δ| %.3g > %.1g)", what, p.name, p.g, p.w, d, tol)
		}
	}
}

// The statistics streamed while sampling and those of Score agree with a float64
// computation from the full logits.
func TestStatsMatchFloat64(t *testing.T) {
	// On quantized models llama.cpp's CPU kernels make the logits of one sequence depend
	// on what else is in the batch and where its KV cells lie (upstream
	// ggml-org/llama.cpp#24962, #4113), and one-row and many-row matmuls round differently,
	// so the sampled-vs-recomputed comparison runs a group on the f32 stories model and a
	// single sequence, replayed one token per decode, on the Q4_1 SmolLM2.
	models := []struct {
		name string
		path func(testing.TB) string
		n    int
	}{{"stories", testutil.StoriesModel, 2}, {"smollm2", testutil.DefaultModel, 1}}
	for _, tc := range models {
		path := tc.path
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(path(t), Options{Threads: 2, KVCacheF32: true, ContextSize: 2048, MaxSequences: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			const temp = 0.7
			out := sample1(t, m, []Request{{Prompt: "Once upon a time", Raw: true}}, tc.n, Params{MaxTokens: 48, Temperature: temp, Seed: 3})
			for _, c := range out[0] {
				seq := append(append([]int32(nil), c.PromptTokens...), c.Tokens...)
				logits, err := m.logitsCopy(seq, len(c.PromptTokens), false)
				if err != nil {
					t.Fatal(err)
				}
				// One sequence, sampled: its logits came from one-token decodes.
				replayed := logits
				if tc.n == 1 {
					if replayed, err = m.logitsCopy(seq, len(c.PromptTokens), true); err != nil {
						t.Fatal(err)
					}
				}
				scored, err := m.Score(seq, len(c.PromptTokens), temp)
				if err != nil {
					t.Fatal(err)
				}
				if len(logits) != len(c.Tokens) || len(scored) != len(c.Tokens) {
					t.Fatalf("%d logits rows, %d scored, %d tokens", len(logits), len(scored), len(c.Tokens))
				}
				for i, tok := range c.Tokens {
					ref := refStats(logits[i], tok, temp)
					// Same logits: only float32 exp and summation order differ.
					checkStats(t, "Score", scored[i], ref, 1e-6)
					// Sampling decoded one token per step, teacher forcing all at once:
					// the logits themselves differ in the last float32 digits.
					streamed := rollout.TokenStats{LogProb: c.LogProb[i], RawLogProb: c.RawLogProb[i], Entropy: c.Entropy[i], SelfCertainty: c.SelfCertainty[i]}
					tol := 1e-4 // group on f32 weights: batched vs teacher-forced logits
					if tc.n == 1 {
						tol = 1e-6 // the very logits the tokens were drawn from
					}
					checkStats(t, "sampled", streamed, refStats(replayed[i], tok, temp), tol)
				}
				if math.Abs(c.SelfCertaintyMean-rollout.Mean(c.SelfCertainty)) > 1e-12 {
					t.Fatalf("self_certainty_mean %g", c.SelfCertaintyMean)
				}
			}
		})
	}
}

func tokensOf(cs []rollout.Completion) [][]int32 {
	out := make([][]int32, len(cs))
	for i, c := range cs {
		out[i] = c.Tokens
	}
	return out
}

func equalTokens(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGreedyGroupIsIdentical(t *testing.T) {
	m := loadStories(t, Options{})
	out := sample1(t, m, []Request{{Prompt: "Once upon a time", Raw: true}, {Prompt: "The dog", Raw: true}}, 5, Params{MaxTokens: 30})
	for i, group := range out {
		for g := 1; g < len(group); g++ {
			if !equalTokens(group[g].Tokens, group[0].Tokens) {
				t.Fatalf("prompt %d member %d differs from member 0 at T=0", i, g)
			}
		}
	}
	if equalTokens(out[0][0].Tokens, out[1][0].Tokens) {
		t.Fatal("two different prompts gave the same completion")
	}
}

func TestSeedReproducible(t *testing.T) {
	m := loadStories(t, Options{})
	reqs := []Request{{Prompt: "Once upon a time", Raw: true}, {Prompt: "Tom had a", Raw: true}}
	p := Params{MaxTokens: 40, Temperature: 1, TopP: 0.95, Seed: 42}
	a := sample1(t, m, reqs, 4, p)
	b := sample1(t, m, reqs, 4, p)
	distinct := map[string]bool{}
	for i := range a {
		for g := range a[i] {
			if !equalTokens(a[i][g].Tokens, b[i][g].Tokens) || a[i][g].Text != b[i][g].Text {
				t.Fatalf("seed 42, prompt %d member %d: second run differs", i, g)
			}
			distinct[a[i][g].Text] = true
		}
	}
	if len(distinct) < 4 {
		t.Fatalf("only %d distinct completions out of 8 at T=1: members do not get their own streams", len(distinct))
	}
	p.Seed = 43
	c := sample1(t, m, reqs, 4, p)
	if equalTokens(c[0][0].Tokens, a[0][0].Tokens) && equalTokens(c[0][1].Tokens, a[0][1].Tokens) {
		t.Fatal("seed 43 gives the same completions as seed 42")
	}
}

// Sampling a group with the prompt's KV cache shared by its members, several groups in
// one batch, gives what sampling each member alone with its seed gives.
func TestGroupEqualsAlone(t *testing.T) {
	m := loadStories(t, Options{KVCacheF32: true})
	reqs := []Request{{Prompt: "Once upon a time", Raw: true}, {Prompt: "Lily and Ben went to", Raw: true}, {Prompt: "The sun", Raw: true}}
	for _, p := range []Params{
		{MaxTokens: 32, Temperature: 0.9, Seed: 7},                       // rlif's own draw
		{MaxTokens: 32, Temperature: 0.9, MinP: 0.05, Seed: 7},           // rlif's own draw
		{MaxTokens: 32, Temperature: 0.9, TopK: 40, TopP: 0.95, Seed: 7}, // llama.cpp's chain
	} {
		group := sample1(t, m, reqs, 4, p)
		for i := range reqs {
			for g := 0; g < 4; g++ {
				alone, err := m.sample(context.Background(), reqs[i:i+1], 1, p, func(int, int) uint32 { return SequenceSeed(p.Seed, i, g) })
				if err != nil {
					t.Fatal(err)
				}
				if !equalTokens(alone[0][0].Tokens, group[i][g].Tokens) {
					t.Errorf("%+v: prompt %d member %d: group %q, alone %q", p, i, g, group[i][g].Text, alone[0][0].Text)
				}
			}
		}
	}
}

func TestStopString(t *testing.T) {
	m := loadStories(t, Options{})
	out := sample1(t, m, []Request{{Prompt: "Once upon a time", Raw: true}}, 1, Params{MaxTokens: 60, Stop: []string{"Lily"}})
	c := out[0][0]
	if c.FinishReason != rollout.FinishStop || c.Text != ", there was a little girl named " {
		t.Fatalf("finish %q text %q", c.FinishReason, c.Text)
	}
	// The token that spelled the stop string ends where the text does.
	if n := len(c.TokenEnds); n != len(c.Tokens) || int(c.TokenEnds[n-1]) != len(c.Text) || !c.Valid() {
		t.Fatalf("token ends %v for %d tokens and text %q", c.TokenEnds, len(c.Tokens), c.Text)
	}
}

func TestReload(t *testing.T) {
	orig := testutil.StoriesModel(t)
	m := loadStories(t, Options{})
	reqs := []Request{{Prompt: "Once upon a time", Raw: true}}
	p := Params{MaxTokens: 30}
	before := sample1(t, m, reqs, 1, p)[0][0]
	if err := m.Reload(testutil.NegateTail(t, orig, 64<<10)); err != nil {
		t.Fatal(err)
	}
	changed := sample1(t, m, reqs, 1, p)[0][0]
	if changed.Text == before.Text {
		t.Fatalf("reloading changed weights kept the output %q", changed.Text)
	}
	if err := m.Reload(orig); err != nil {
		t.Fatal(err)
	}
	after := sample1(t, m, reqs, 1, p)[0][0]
	if after.Text != before.Text || !equalTokens(after.Tokens, before.Tokens) {
		t.Fatalf("after reloading the original: %q, want %q", after.Text, before.Text)
	}
	// A failed reload keeps the current weights.
	if err := m.Reload(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
	if again := sample1(t, m, reqs, 1, p)[0][0]; again.Text != before.Text {
		t.Fatalf("after a failed reload: %q", again.Text)
	}
}

func TestDefaultModelAnswersChat(t *testing.T) {
	m, err := Load(testutil.DefaultModel(t), Options{Threads: 2, ContextSize: 1024, MaxSequences: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info := m.Info()
	if info.Arch != "llama" || info.VocabSize != 49152 || !strings.Contains(info.ChatTemplate, "im_start") {
		t.Fatalf("info %+v", info)
	}
	text, err := m.FormatChat("You are a helpful assistant.", "What is the capital of France?")
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
	if text != want {
		t.Fatalf("chat template gave %q, want %q", text, want)
	}
	out := sample1(t, m, []Request{{Prompt: "What is the capital of France?", System: "You are a helpful assistant."}}, 1, Params{MaxTokens: 48})
	c := out[0][0]
	if !strings.Contains(c.Text, "Paris") {
		t.Fatalf("answer %q does not name Paris", c.Text)
	}
	if c.FinishReason != rollout.FinishEOS || !m.IsEOG(c.Tokens[len(c.Tokens)-1]) {
		t.Fatalf("finish %q; last token %d", c.FinishReason, c.Tokens[len(c.Tokens)-1])
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "model.bin")
	os.WriteFile(notGGUF, []byte("PK\x03\x04 this is a zip, not a model"), 0o644)
	stories, err := os.ReadFile(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.gguf")
	os.WriteFile(truncated, stories[:len(stories)/3], 0o644)
	// Same length, so every offset stays valid: only the architecture name changes.
	unknownArch := filepath.Join(dir, "arch.gguf")
	k := bytes.Index(stories, []byte("general.architecture"))
	b := append([]byte(nil), stories...)
	v := k + len("general.architecture") + 4 + 8 // value type (u32) and string length (u64)
	copy(b[v:], "lla_x")
	os.WriteFile(unknownArch, b, 0o644)
	// Nobody writes to it: opening it to read would wait forever.
	fifo := filepath.Join(dir, "fifo.gguf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.gguf"), "no such file"},
		{"not gguf", notGGUF, "not a GGUF file"},
		{"truncated", truncated, "load"},
		{"unknown architecture", unknownArch, "lla_x"},
		{"named pipe", fifo, "model " + fifo + " is a named pipe (FIFO), not a regular file; rlif takes a GGUF model file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Load(tc.path, Options{Threads: 1})
			if err == nil {
				m.Close()
				t.Fatal("load succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q does not say %q on one line", err, tc.want)
			}
		})
	}

	m := loadStories(t, Options{})
	long := strings.Repeat("the cat sat on the mat and ", 100)
	if _, err := m.Sample(context.Background(), []Request{{Prompt: long, Raw: true}}, 1, Params{MaxTokens: 8}); err == nil || !strings.Contains(err.Error(), "tokens") {
		t.Fatalf("prompt longer than the context: err %v", err)
	}
	if _, err := m.Sample(context.Background(), []Request{{Prompt: "hi"}}, 1, Params{MaxTokens: 8}); err == nil || !strings.Contains(err.Error(), "chat template") {
		t.Fatalf("chat prompt on a model without a template: err %v", err)
	}
	if _, err := m.Sample(context.Background(), []Request{{Prompt: "hi", Raw: true}}, 1, Params{MaxTokens: 0}); err == nil {
		t.Fatal("max tokens 0 accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Sample(ctx, []Request{{Prompt: "hi", Raw: true}}, 1, Params{MaxTokens: 8}); err != context.Canceled {
		t.Fatalf("cancelled context: err %v", err)
	}
}

// A model whose weights hold NaN samples nothing meaningful: Sample and Score say so,
// naming the model, instead of handing on completions whose statistics are NaN.
func TestNotFinite(t *testing.T) {
	path := testutil.NaNTail(t, testutil.StoriesModel(t), 4096)
	m, err := Load(path, Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, p := range []Params{{MaxTokens: 8}, {MaxTokens: 8, Temperature: 0.8, TopK: 20}} {
		_, err := m.Sample(context.Background(), []Request{{Prompt: "Once", Raw: true}}, 2, p)
		if !errors.Is(err, ErrNotFinite) || !strings.Contains(err.Error(), path) {
			t.Fatalf("%+v: error %v, want ErrNotFinite naming %s", p, err, path)
		}
	}
	if _, err := m.Score([]int32{1, 2, 3, 4}, 1, 1); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("Score: error %v, want ErrNotFinite", err)
	}
}

// Sampled through the real decode loop, each token's SampledLogProb is the log of its
// probability in the truncated, renormalized distribution of the very logits it was drawn
// from (one f32 sequence, replayed one token per decode), and equals LogProb without
// truncation.
func TestSampledLogProbMatchesFloat64(t *testing.T) {
	m := loadStories(t, Options{KVCacheF32: true})
	for _, p := range []Params{
		{MaxTokens: 40, Temperature: 0.8, Seed: 1},
		{MaxTokens: 40, Temperature: 0.8, MinP: 0.1, Seed: 2},
		{MaxTokens: 40, Temperature: 0.8, TopK: 5, Seed: 3},
		{MaxTokens: 40, Temperature: 1.2, TopP: 0.8, Seed: 4},
	} {
		c := sample1(t, m, []Request{{Prompt: "Once upon a time", Raw: true}}, 1, p)[0][0]
		if len(c.SampledLogProb) != len(c.Tokens) || !c.Valid() {
			t.Fatalf("%+v: %d sampled log-probs for %d tokens", p, len(c.SampledLogProb), len(c.Tokens))
		}
		seq := append(append([]int32(nil), c.PromptTokens...), c.Tokens...)
		logits, err := m.logitsCopy(seq, len(c.PromptTokens), true)
		if err != nil {
			t.Fatal(err)
		}
		moved := 0
		for i, tok := range c.Tokens {
			st := rollout.TokenStats{LogProb: c.LogProb[i], SampledLogProb: c.SampledLogProb[i], RawLogProb: c.RawLogProb[i]}
			if checkSampledLogProb(t, fmt.Sprintf("%+v token %d", p, i), logits[i], tok, st, p, 1e-6) {
				moved++
			}
		}
		if truncates(p) && moved == 0 {
			t.Errorf("%+v truncates, but no token's sampled_logprob differs from its logprob", p)
		}
		// Teacher-forced scoring draws nothing: its sampled log-prob is the log-prob.
		scored, err := m.Score(seq, len(c.PromptTokens), p.Temperature)
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range scored {
			if st.SampledLogProb != st.LogProb {
				t.Fatalf("Score token %d: sampled_logprob %g, logprob %g", i, st.SampledLogProb, st.LogProb)
			}
		}
	}
}

// Text is the tokens' bytes made valid UTF-8 (byte-fallback tokens at a high temperature
// spell invalid bytes), and stop strings still match on the bytes: a stop string right
// after an invalid byte cuts the completion there.
func TestInvalidBytesAndStopStrings(t *testing.T) {
	m := loadStories(t, Options{KVCacheF32: true})
	reqs := []Request{{Prompt: "Once upon a time", Raw: true}}
	p := Params{MaxTokens: 24, Temperature: 10, Seed: 5}
	group := sample1(t, m, reqs, 6, p)[0]
	tested := false
	for g, c := range group {
		var raw []byte
		var ends []int
		for _, tok := range c.Tokens {
			if !m.IsEOG(tok) {
				raw = append(raw, m.Piece(tok)...)
			}
			ends = append(ends, len(raw))
		}
		if c.Text != rollout.ValidText(string(raw)) || !utf8.ValidString(c.Text) {
			t.Fatalf("member %d: text %q, bytes %q", g, c.Text, raw)
		}
		// Each token's text ends where its bytes do, moved by the replacements before it.
		if _, want := rollout.TextOf(raw, ends); !slices.Equal(c.TokenEnds, want) || !c.Valid() {
			t.Fatalf("member %d: token ends %v, want %v", g, c.TokenEnds, want)
		}
		if tested {
			continue
		}
		// An invalid byte followed by two ASCII bytes seen there first: stop at those.
		for i := 0; i+2 < len(raw); i++ {
			if r, size := utf8.DecodeRune(raw[i:]); r != utf8.RuneError || size != 1 || raw[i+1] >= utf8.RuneSelf || raw[i+2] >= utf8.RuneSelf {
				continue
			}
			stop := string(raw[i+1 : i+3])
			cut := bytes.Index(raw, []byte(stop))
			if cut != i+1 {
				continue // it occurs earlier
			}
			q := p
			q.Stop = []string{stop}
			alone, err := m.sample(context.Background(), reqs, 1, q, func(int, int) uint32 { return SequenceSeed(p.Seed, 0, g) })
			if err != nil {
				t.Fatal(err)
			}
			s := alone[0][0]
			if want := rollout.ValidText(string(raw[:cut])); s.FinishReason != rollout.FinishStop || s.Text != want {
				t.Fatalf("stop %q: finish %q text %q, want %q", stop, s.FinishReason, s.Text, want)
			}
			tested = true
			break
		}
	}
	if !tested {
		t.Fatal("no completion had an invalid byte before two ASCII bytes: the test proves nothing")
	}
}

// A vocabulary-only model tokenizes exactly as the full one and knows the model's context
// (llama.cpp skips the hyperparameters; the metadata has them), and refuses to sample.
func TestLoadVocab(t *testing.T) {
	full := loadStories(t, Options{})
	v, err := LoadVocab(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Info().ContextLength != full.Info().ContextLength || v.Info().ContextLength == 0 || v.Info().ChatTemplate != full.Info().ChatTemplate {
		t.Fatalf("vocab info %+v, full %+v", v.Info(), full.Info())
	}
	req := Request{Prompt: "Once upon a time, Lily", Raw: true}
	a, _ := v.PromptTokens(req)
	b, _ := full.PromptTokens(req)
	if len(a) == 0 || !equalTokens(a, b) {
		t.Fatalf("vocab tokens %v, full %v", a, b)
	}
	if err := v.CheckPromptLen(v.Info().ContextLength); err == nil || !strings.Contains(err.Error(), "the model's context") {
		t.Fatalf("a prompt filling the context: err %v", err)
	}
	if err := v.CheckPromptLen(0); err == nil {
		t.Fatal("an empty prompt accepted")
	}
	if _, err := v.Sample(context.Background(), []Request{req}, 1, Params{MaxTokens: 4}); err == nil || !strings.Contains(err.Error(), "without its weights") {
		t.Fatalf("sampling a vocabulary: err %v", err)
	}

	// A chat model: the template applied on the vocabulary gives the full model's input.
	path := testutil.DefaultModel(t)
	cv, err := LoadVocab(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cv.Close()
	cm, err := Load(path, Options{Threads: 1, ContextSize: 512, MaxSequences: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	chat := Request{Prompt: "What is 2+3?", System: "Please reason step by step."}
	a, err = cv.PromptTokens(chat)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = cm.PromptTokens(chat)
	if cv.Info().ChatTemplate == "" || !equalTokens(a, b) || cv.Info().ContextLength != cm.Info().ContextLength {
		t.Fatalf("chat input on the vocabulary %v, on the model %v; contexts %d, %d", a, b, cv.Info().ContextLength, cm.Info().ContextLength)
	}
}

// A KV cache that the machine cannot hold is refused with its size, before llama.cpp tries
// to allocate it (the base commit died with std::bad_alloc); non-finite parameters are
// refused by name.
func TestRefusesWhatCannotWork(t *testing.T) {
	_, err := Load(testutil.StoriesModel(t), Options{Threads: 1, ContextSize: 2_000_000_000, MaxSequences: 64})
	if err == nil || !strings.Contains(err.Error(), "GiB") || !strings.Contains(err.Error(), "2000000000 cells") {
		t.Fatalf("a 2e9-cell KV cache: err %v", err)
	}
	// 64 x 10M new tokens: more cells than llama.cpp's 32-bit sizes (the uint32 cast
	// would have wrapped around).
	if _, err := Load(testutil.StoriesModel(t), Options{Threads: 1, ContextSize: 64 * 10_000_000 * 8, MaxSequences: 64}); err == nil || !strings.Contains(err.Error(), "more than llama.cpp takes") {
		t.Fatalf("a 5e9-cell context: err %v", err)
	}
	if _, err := Load(testutil.StoriesModel(t), Options{Threads: 1, ContextSize: 100, MaxSequences: 1000}); err == nil || !strings.Contains(err.Error(), "1000 sequences") {
		t.Fatalf("more sequences than cells: err %v", err)
	}
	v, err := LoadVocab(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got := v.KVCacheBytes(10); got <= 0 {
		t.Fatalf("KV bytes of 10 cells: %d", got)
	}
	m := loadStories(t, Options{})
	for _, p := range []Params{
		{MaxTokens: 4, Temperature: math.NaN()},
		{MaxTokens: 4, Temperature: math.Inf(1)},
		{MaxTokens: 4, TopP: math.NaN()},
		{MaxTokens: 4, MinP: math.NaN()},
	} {
		if _, err := m.Sample(context.Background(), []Request{{Prompt: "hi", Raw: true}}, 1, p); err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("params %+v: err %v", p, err)
		}
	}
}
