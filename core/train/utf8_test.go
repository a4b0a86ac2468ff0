package train

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/policy/sampler"
	"github.com/rlif/rlif/rewards"
)

// endsMidCharacter reports whether b ends with the start of a UTF-8 encoding that the
// token limit cut short.
func endsMidCharacter(b []byte) bool {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			return b[i] >= 0xc2 && b[i] <= 0xf4 && !utf8.FullRune(b[i:])
		}
	}
	return false
}

// resampleStep1 samples a run's first step again, from the initial weights as the run
// did, and returns the sampler (to read token bytes) and the completions in log order.
func resampleStep1(t *testing.T, cfg config.Run) (*sampler.Model, []rollout.Completion) {
	t.Helper()
	r := &run{cfg: cfg}
	if err := r.loadData(); err != nil {
		t.Fatal(err)
	}
	reqs := r.requests(r.order.Next(cfg.Sampling.PromptsPerStep))
	smp, err := sampler.Load(cfg.Model, r.samplerOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(smp.Close)
	groups, err := smp.Sample(context.Background(), reqs, cfg.Sampling.GroupSize, r.sampleParams(1))
	if err != nil {
		t.Fatal(err)
	}
	var out []rollout.Completion
	for _, g := range groups {
		out = append(out, g...)
	}
	return smp, out
}

// A run trains through completions whose bytes are not valid UTF-8 (the stories model's
// byte-fallback tokens at a high temperature: some completions end in the middle of a
// character, others hold bytes that start no character), scored by real plugin processes
// in Go (the built-ins, served by rlif) and in Python (the keyword example, looking for
// U+FFFD). The texts all stages see are the tokens' bytes made valid by one rule.
func TestTrainsThroughInvalidUTF8(t *testing.T) {
	if out, err := exec.Command("python3", "-c", "import grpc, grpc_health.v1.health, google.protobuf, cryptography").CombinedOutput(); err != nil {
		t.Fatalf("python3 with the plugin SDK's packages is needed (run scripts/py-deps.sh): %v\n%s", err, out)
	}
	keyword, err := filepath.Abs(filepath.Join("..", "..", "examples", "plugins", "python-keyword", "plugin.py"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cfg := storiesRun(t, out, 2)
	// Near-uniform over the 512 tokens, of which 128 are the bytes 0x80-0xff.
	cfg.Sampling.Temperature = 10
	cfg.Sampling.MaxTokens = 12
	cfg.Sampling.GroupSize = 6
	// A seed whose first step has both kinds (the test checks that it does).
	cfg.Seed = 7
	w := 0.5
	cfg.Rewards = append(cfg.Rewards, config.Reward{
		Spec: rewards.Spec{Name: "replacement", Weight: &w,
			Args: map[string]any{"keywords": []string{"\uFFFD"}, "case_sensitive": true}},
		Deployment: host.Deployment{Plugin: keyword}})
	var progress strings.Builder
	res, err := Run(context.Background(), cfg, Options{Executable: rlifBin, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if res.Steps != 2 {
		t.Fatalf("result %+v", res)
	}

	// Compare what the run logged and the Python plugin scored with the tokens' own bytes.
	smp, want := resampleStep1(t, cfg)

	f, err := os.Open(filepath.Join(out, "completions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	k, cut, invalid := 0, 0, 0
	for sc.Scan() {
		line := sc.Bytes()
		if !utf8.Valid(line) || !json.Valid(line) {
			t.Fatalf("completions.jsonl line %q is not valid UTF-8 JSON", line)
		}
		var rec completionRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Step != 1 {
			continue
		}
		c := want[k]
		k++
		var raw []byte
		for _, tok := range c.Tokens {
			if !smp.IsEOG(tok) {
				raw = append(raw, smp.Piece(tok)...)
			}
		}
		if endsMidCharacter(raw) {
			cut++
		} else if !utf8.Valid(raw) {
			invalid++
		}
		if rec.Completion != rollout.ValidText(string(raw)) || rec.Completion != c.Text || rec.Tokens != len(c.Tokens) {
			t.Errorf("step 1 completion %d: logged %q (%d tokens), resampled %q (%d tokens), bytes %q", k, rec.Completion, rec.Tokens, c.Text, len(c.Tokens), raw)
		}
		// The Python plugin saw the text with U+FFFD in place of the invalid bytes.
		got, wantScore := rec.Scores["replacement"], 0.0
		if strings.Contains(rec.Completion, "\uFFFD") {
			wantScore = 1
		}
		if rec.Completion == "" {
			if got != nil {
				t.Errorf("step 1 completion %d: empty text scored %v, want n/a", k, *got)
			}
		} else if got == nil || *got != wantScore {
			t.Errorf("step 1 completion %d %q: Python plugin scored %v, want %v", k, rec.Completion, got, wantScore)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if k != len(want) {
		t.Fatalf("%d step-1 completions logged, %d sampled", k, len(want))
	}
	t.Logf("step 1: %d of %d completions end mid-character, %d more hold invalid bytes", cut, k, invalid)
	if cut == 0 || invalid == 0 {
		t.Fatalf("step 1: %d completions end mid-character, %d hold invalid bytes: the test needs both", cut, invalid)
	}
}
