package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/core/advantage"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/builtin"
)

// buildRlif builds the rlif binary (and the Go example plugin) into dir: the tests
// run them as real processes.
func buildRlif(t *testing.T, dir string) (rlif, goLength string) {
	t.Helper()
	rlif, goLength = filepath.Join(dir, "rlif"), filepath.Join(dir, "go-length")
	for out, pkg := range map[string]string{rlif: ".", goLength: "github.com/rlif/rlif/examples/plugins/go-length"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return rlif, goLength
}

// answerGroups are groups whose completions exercise every built-in: boxed and GSM8K
// answers (equivalent in different forms), none, a think/answer layout, and per-token
// statistics.
func answerGroups() []rewards.Group {
	texts := [][]string{
		{`So the answer is \boxed{\frac{1}{2}}.`, `It is \boxed{0.5}`, `I think \boxed{2}`, `no idea`, "<think>hm</think> <answer>1/2</answer>"},
		{"#### 1,000", `\boxed{1000}`, `\boxed{1000}`, `\boxed{999}`},
		{`\boxed{3}`, `\boxed{4}`},
		{"", ""},
	}
	golds := []string{"1/2", "1000", "", "7"}
	var groups []rewards.Group
	for i, ts := range texts {
		g := rewards.Group{Prompt: fmt.Sprintf("question %d", i), Fields: map[string]string{}}
		if golds[i] != "" {
			g.Fields["answer"] = golds[i]
		}
		for j, text := range ts {
			c := rollout.Completion{Prompt: g.Prompt, Text: text, FinishReason: rollout.FinishEOS}
			for k := 0; k < len(text); k++ {
				c.Append(int32(k), rollout.TokenStats{
					LogProb: -0.1 * float64(k%5), RawLogProb: -0.2 * float64(k%3),
					Entropy: 0.3 + 0.01*float64(j*k%7), SelfCertainty: 1 + 0.05*float64((i+j+k)%9),
				})
				c.TokenEnds = append(c.TokenEnds, int32(k+1)) // a token a byte
			}
			c.Finalize()
			g.Completions = append(g.Completions, c)
		}
		groups = append(groups, g)
	}
	return groups
}

// TestOutOfProcess builds the rlif binary once and checks, with real processes: that
// every built-in served by `rlif plugin serve` scores exactly as in process, and the
// `rlif score` command end to end.
func TestOutOfProcess(t *testing.T) {
	dir := t.TempDir()
	rlif, goLength := buildRlif(t, dir)
	t.Run("builtins", func(t *testing.T) { testBuiltinsServed(t, rlif) })
	t.Run("score", func(t *testing.T) { testScoreCommand(t, rlif, goLength, dir) })
	t.Run("score errors", func(t *testing.T) { testScoreErrors(t, rlif, dir) })
	t.Run("score with a token window and EMPO's filter", func(t *testing.T) { testScoreFilter(t, rlif, dir) })
}

func testBuiltinsServed(t *testing.T, rlif string) {
	groups := answerGroups()
	tests := []struct {
		name string
		args map[string]any
	}{
		{builtin.SelfCertainty, nil},
		{builtin.SelfCertainty, map[string]any{"window": "answer"}},
		{builtin.Entropy, nil},
		{builtin.Entropy, map[string]any{"window": "last", "k": int64(3)}},
		{builtin.Entropy, map[string]any{"window": "answer"}},
		{builtin.TrajectoryEntropy, nil},
		{builtin.TrajectoryEntropy, map[string]any{"aggregate": "sum"}},
		{builtin.SequenceProbability, nil},
		{builtin.SemanticEntropy, nil},
		{builtin.PluralityVote, nil},
		{builtin.PluralityVote, map[string]any{"vote_n": int64(8), "mode": "hybrid"}},
		{builtin.Format, nil},
		{builtin.Format, map[string]any{"layout": "think_answer"}},
		{builtin.Accuracy, nil},
		{builtin.Accuracy, map[string]any{"field": "missing"}},
	}
	if len(builtin.Builtins()) != 8 {
		t.Errorf("%d built-ins; this test covers 8", len(builtin.Builtins()))
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %v", tc.name, tc.args), func(t *testing.T) {
			f, err := builtin.New(tc.name, tc.args)
			if err != nil {
				t.Fatal(err)
			}
			want, err := f.Score(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := host.BuiltinConfig(rlif, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Args = tc.args
			p, err := host.Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if info := p.Info(); info.Name != tc.name || info.ProtocolVersion != 1 {
				t.Errorf("Info = %+v", info)
			}
			got, err := p.Score(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("out of process: %v\nin process:     %v", got, want)
			}
		})
	}
	// A built-in's argument errors name it and come back as configure errors.
	cfg, _ := host.BuiltinConfig(rlif, builtin.Format)
	cfg.Args = map[string]any{"layot": "boxed"}
	_, err := host.Start(context.Background(), cfg)
	if !errors.Is(err, &host.Error{Kind: host.KindConfigure}) || !strings.Contains(err.Error(), `built-in reward "format"`) ||
		!strings.Contains(err.Error(), `unknown argument "layot"`) {
		t.Errorf("bad args: got %v", err)
	}
}

// writeCompletions writes groups as `rlif score` input, in the JSON of
// rollout.Completion plus prompt, group and answer.
func writeCompletions(t *testing.T, path string, groups []rewards.Group) {
	t.Helper()
	var buf bytes.Buffer
	for i, g := range groups {
		for _, c := range g.Completions {
			b, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["group"] = fmt.Sprintf("g%d", i)
			if a, ok := g.Fields["answer"]; ok {
				m["answer"] = a
			}
			if err := json.NewEncoder(&buf).Encode(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func runRlif(t *testing.T, rlif string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, rlif, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run rlif %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func testScoreCommand(t *testing.T, rlif, goLength, dir string) {
	groups := answerGroups()
	completions := filepath.Join(dir, "completions.jsonl")
	writeCompletions(t, completions, groups)
	keyword, err := filepath.Abs("../../examples/plugins/python-keyword/plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "run.toml")
	// go-length is given relative to the config's directory.
	toml := fmt.Sprintf(`
model = "not read by rlif score"

[plugins]
timeout_seconds = 30

[advantage]
mix = "intuitor"

[[rewards]]
name = "self_certainty"

[[rewards]]
name = "accuracy"
weight = 0.5

[[rewards]]
name = "length"
plugin = "./go-length"
weight = 0.25
args = { target = 10, per_token = 0.1 }

[[rewards]]
name = "keywords"
plugin = %q
weight = 0.25
[rewards.args]
keywords = ["boxed"]
`, keyword)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}

	// The expected scores and advantages, computed in process.
	specs := []rewards.Spec{
		{Name: "self_certainty"}, {Name: "accuracy", Weight: ptr(0.5)},
		{Name: "length", Weight: ptr(0.25)}, {Name: "keywords", Weight: ptr(0.25)},
	}
	sc, _ := builtin.New("self_certainty", nil)
	acc, _ := builtin.New("accuracy", nil)
	want := make([][][]rewards.Score, 4)
	want[0], _ = sc.Score(context.Background(), groups)
	want[1], _ = acc.Score(context.Background(), groups)
	want[2], want[3] = make([][]rewards.Score, len(groups)), make([][]rewards.Score, len(groups))
	for i, g := range groups {
		for _, c := range g.Completions {
			want[2][i] = append(want[2][i], rewards.Of(-0.1*math.Max(float64(len(c.Tokens))-10, 0)))
			if c.Text == "" {
				want[3][i] = append(want[3][i], rewards.NA())
			} else {
				want[3][i] = append(want[3][i], rewards.Of(b2f(strings.Contains(c.Text, "boxed"))))
			}
		}
	}
	wantAdv, err := advantage.Compute(specs, want, advantage.Options{Mix: advantage.MixIntuitor})
	if err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code := runRlif(t, rlif, "score", "--config", config, "--completions", completions, "--json")
	if code != 0 {
		t.Fatalf("rlif score --json: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	n := 0
	for i, g := range groups {
		for j := range g.Completions {
			if n >= len(lines) {
				t.Fatalf("only %d output lines", len(lines))
			}
			var got struct {
				Line      int                 `json:"line"`
				Group     string              `json:"group"`
				Scores    map[string]*float64 `json:"scores"`
				Advantage float64             `json:"advantage"`
			}
			if err := json.Unmarshal([]byte(lines[n]), &got); err != nil {
				t.Fatalf("line %d: %v", n+1, err)
			}
			n++
			if got.Line != n || got.Group != fmt.Sprintf("g%d", i) {
				t.Errorf("output %d: line %d group %q", n, got.Line, got.Group)
			}
			for k, s := range specs {
				w := want[k][i][j]
				g, ok := got.Scores[s.Name]
				switch {
				case !ok:
					t.Errorf("line %d: no score for %s", n, s.Name)
				case !w.Applicable && g != nil:
					t.Errorf("line %d: %s = %v, want null", n, s.Name, *g)
				case w.Applicable && (g == nil || math.Abs(*g-w.Value) > 1e-12):
					t.Errorf("line %d: %s = %v, want %v", n, s.Name, g, w.Value)
				}
			}
			if math.Abs(got.Advantage-wantAdv[i][j]) > 1e-9 {
				t.Errorf("line %d: advantage %v, want %v", n, got.Advantage, wantAdv[i][j])
			}
		}
	}
	if n != len(lines) {
		t.Errorf("%d output lines for %d completions", len(lines), n)
	}

	stdout, stderr, code = runRlif(t, rlif, "score", "--config", config, "--completions", completions)
	if code != 0 {
		t.Fatalf("rlif score: exit %d: %s", code, stderr)
	}
	for _, s := range []string{"mix intuitor", "group 1: \"question 0\" (5 completions)", "self_certainty", "accuracy", "length", "keywords", "advantage", "n/a"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("text output lacks %q:\n%s", s, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("stderr is not quiet:\n%s", stderr)
	}
}

// testScoreFilter scores completions read from a file (their token_ends with them) with
// the answer window, out of process, and applies [advantage] entropy_filter_max as
// training does.
func testScoreFilter(t *testing.T, rlif, dir string) {
	groups := answerGroups()
	completions := filepath.Join(dir, "window.jsonl")
	writeCompletions(t, completions, groups)
	config := filepath.Join(dir, "window.toml")
	toml := `
[advantage]
entropy_filter_max = 0.9

[[rewards]]
name = "entropy"
args = { window = "answer" }

[[rewards]]
name = "plurality_vote"
`
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	specs := []rewards.Spec{{Name: "entropy", Args: map[string]any{"window": "answer"}}, {Name: "plurality_vote"}}
	want := make([][][]rewards.Score, len(specs))
	for k, s := range specs {
		f, err := builtin.New(s.Name, s.Args)
		if err != nil {
			t.Fatal(err)
		}
		if want[k], err = f.Score(context.Background(), groups); err != nil {
			t.Fatal(err)
		}
	}
	opt := advantage.Options{EntropyFilterMax: 0.9}
	wantAdv, err := advantage.Compute(specs, want, opt)
	if err != nil {
		t.Fatal(err)
	}
	// Group 0's answers (1/2, 0.5, 2, none, 1/2: −(0.6 ln 0.6 + 2 · 0.2 ln 0.2) = 0.95
	// nats) disagree the most; the others have 0.56 (1000 ×3, 999) and ln 2 = 0.69.
	if masked := opt.Filter(wantAdv, groups); masked != 1 {
		t.Fatalf("the filter masks %d groups of the test's, want 1 (group 0)", masked)
	}
	stdout, stderr, code := runRlif(t, rlif, "score", "--config", config, "--completions", completions, "--json")
	if code != 0 {
		t.Fatalf("rlif score --json: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	n := 0
	for i, g := range groups {
		for j := range g.Completions {
			var got struct {
				Scores    map[string]*float64 `json:"scores"`
				Advantage float64             `json:"advantage"`
			}
			if err := json.Unmarshal([]byte(lines[n]), &got); err != nil {
				t.Fatalf("line %d: %v", n+1, err)
			}
			n++
			if w := want[0][i][j]; w.Applicable != (got.Scores["entropy"] != nil) || w.Applicable && math.Abs(*got.Scores["entropy"]-w.Value) > 1e-12 {
				t.Errorf("line %d: entropy %v, want %+v", n, got.Scores["entropy"], w)
			}
			if math.Abs(got.Advantage-wantAdv[i][j]) > 1e-9 {
				t.Errorf("line %d: advantage %v, want %v", n, got.Advantage, wantAdv[i][j])
			}
		}
	}
}

func testScoreErrors(t *testing.T, rlif, dir string) {
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.jsonl", `{"prompt":"p","text":"\\boxed{1}","answer":1}`+"\n")
	okConfig := write("ok.toml", "[[rewards]]\nname = \"accuracy\"\n")
	crash := write("crash.sh", "#!/bin/sh\necho 'plugin exploded' >&2\nexit 9\n")
	if err := os.Chmod(crash, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		config      string
		completions string
		code        int
		msg         string
	}{
		{"missing flags", okConfig, "", 2, "--config and --completions are required"},
		{"unknown key", write("k.toml", "[[rewards]]\nname = \"accuracy\"\nwieght = 2\n"), good, 1, `line 3: unknown key "rewards.wieght"`},
		{"unknown table", write("t.toml", "[[rewards]]\nname = \"accuracy\"\n[modle]\npath = 1\n"), good, 1, `line 3: unknown key "modle"`},
		{"toml syntax", write("s.toml", "[[rewards]\n"), good, 1, "end of table array name"},
		{"duplicate reward", write("d.toml", "[[rewards]]\nname = \"accuracy\"\n[[rewards]]\nname = \"accuracy\"\n"), good, 1, "configured twice"},
		{"bad mix", write("x.toml", "[advantage]\nmix = \"intuitor\"\n[[rewards]]\nname = \"accuracy\"\n"), good, 1, "needs a built-in"},
		{"unknown built-in", write("u.toml", "[[rewards]]\nname = \"acuracy\"\n"), good, 1, "no built-in reward of that name"},
		{"missing plugin", write("m.toml", "[[rewards]]\nname = \"x\"\nplugin = \"./nope\"\n"), good, 1, `reward plugin "x"`},
		{"crashing plugin", write("c.toml", "[[rewards]]\nname = \"boom\"\nplugin = \"./crash.sh\"\n"), good, 1, "plugin exploded"},
		{"bad arg", write("a.toml", "[[rewards]]\nname = \"format\"\nargs = { layot = \"x\" }\n"), good, 1, `unknown argument "layot"`},
		{"bad json", okConfig, write("b.jsonl", "{\"prompt\":\"p\",\"text\":\"x\"}\n{nope\n"), 1, "b.jsonl:2: not a JSON object"},
		{"object field", okConfig, write("o.jsonl", `{"prompt":"p","text":"x","meta":{}}`+"\n"), 1, `o.jsonl:1: field "meta" is an object`},
		{"stats length", okConfig, write("l.jsonl", `{"prompt":"p","text":"x","tokens":[1,2],"entropy":[0.1]}`+"\n"), 1, "entropy has 1 values for 2 tokens"},
		{"empty", okConfig, write("e.jsonl", "\n"), 1, "no completions"},
		{"missing file", okConfig, filepath.Join(dir, "absent.jsonl"), 1, "absent.jsonl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"score", "--config", tc.config}
			if tc.completions != "" {
				args = append(args, "--completions", tc.completions)
			}
			stdout, stderr, code := runRlif(t, rlif, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q", stdout)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "rlif score: ") || !strings.Contains(last, tc.msg) {
				t.Errorf("stderr %q: want one line with %q", stderr, tc.msg)
			}
		})
	}
}

func ptr(x float64) *float64 { return &x }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
