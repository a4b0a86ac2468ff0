package host_test

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/rewards"
)

// needPython fails the test when python3 or the SDK's packages are missing: they are
// the project's declared dependencies (scripts/py-deps.sh, run by `make deps`).
func needPython(t *testing.T) {
	t.Helper()
	out, err := exec.Command("python3", "-c", "import grpc, grpc_health.v1.health, google.protobuf, cryptography").CombinedOutput()
	if err != nil {
		t.Fatalf("python3 with the plugin SDK's packages is needed (run scripts/py-deps.sh): %v\n%s", err, out)
	}
}

func absPath(rel string) (string, error) { return filepath.Abs(filepath.FromSlash(rel)) }

func misbehave(t *testing.T, mode string) host.Config {
	t.Helper()
	p, err := absPath("testdata/misbehave.py")
	if err != nil {
		t.Fatal(err)
	}
	return host.Config{Reward: "py", Path: p, Args: map[string]any{"mode": mode}, Timeout: 20 * time.Second}
}

func keywordExample(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "examples", "plugins", "python-keyword", "plugin.py"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPythonKeywordExample(t *testing.T) {
	needPython(t)
	groups := makeGroups(2, 3, 4)
	groups[0].Completions[0].Text = "Therefore the answer is \\boxed{4}."
	groups[0].Completions[1].Text = "so, therefore"
	groups[0].Completions[2].Text = ""
	groups[1].Fields["keywords"] = "x, y"
	tests := []struct {
		name string
		mtls bool
		args map[string]any
		want [][]rewards.Score
	}{
		{"defaults, mTLS", true, nil, [][]rewards.Score{
			{rewards.Of(1), rewards.Of(0.5), rewards.NA()},
			{rewards.Of(0.5), rewards.Of(0.5), rewards.Of(0.5)},
		}},
		{"case sensitive, plain", false, map[string]any{"keywords": []string{"Therefore"}, "case_sensitive": true}, [][]rewards.Score{
			{rewards.Of(1), rewards.Of(0), rewards.NA()},
			{rewards.Of(0.5), rewards.Of(0.5), rewards.Of(0.5)},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, host.Config{Reward: "kw", Path: keywordExample(t), Args: tc.args, DisableMTLS: !tc.mtls})
			if info := p.Info(); info.Name != "python-keyword" || info.ProtocolVersion != 1 || len(info.Args) != 2 ||
				info.Args[1].DefaultJSON != "false" {
				t.Errorf("Info = %+v", info)
			}
			got, err := p.Score(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				for j := range tc.want[i] {
					if got[i][j] != tc.want[i][j] {
						t.Errorf("group %d completion %d: got %+v, want %+v", i, j, got[i][j], tc.want[i][j])
					}
				}
			}
		})
	}
}

func TestPythonKeywordRejectsArgs(t *testing.T) {
	needPython(t)
	tests := []struct {
		args map[string]any
		msg  string
	}{
		{map[string]any{"keyword": "x"}, "unknown arg(s) keyword"},
		{map[string]any{"keywords": []string{}}, "keywords must be a non-empty list"},
	}
	for _, tc := range tests {
		_, err := host.Start(context.Background(), host.Config{Reward: "kw", Path: keywordExample(t), Args: tc.args})
		if !errors.Is(err, &host.Error{Kind: host.KindConfigure}) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("args %v: got %v, want a configure error with %q", tc.args, err, tc.msg)
		}
	}
}

func TestPythonFailures(t *testing.T) {
	needPython(t)
	tests := []struct {
		mode     string
		kind     host.Kind
		contains []string
	}{
		{"crash", host.KindCrash, []string{`"py"`, "exit status 3", "misbehave: crashing on purpose"}},
		{"hang", host.KindTimeout, []string{`"py"`, "hung"}},
		{"error", host.KindFailed, []string{`"py"`, "RuntimeError: the python reward refuses this batch"}},
		{"short", host.KindBadCount, []string{"returned 2 scores for group 0, which has 3 completions"}},
		{"nan", host.KindBadValue, []string{"returned NaN for completion 0 of group 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := misbehave(t, tc.mode)
			cfg.Timeout = 2 * time.Second
			p := start(t, cfg)
			_, err := p.Score(context.Background(), makeGroups(2, 3, 4))
			if !errors.Is(err, &host.Error{Kind: tc.kind}) {
				t.Fatalf("got %v, want a %v error", err, tc.kind)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestPythonMTLSRefused(t *testing.T) {
	needPython(t)
	// A plugin that refuses mTLS cannot be reached while the host asks for it...
	cfg := misbehave(t, "ok")
	cfg.Env = []string{"MISBEHAVE_START=no-mtls"}
	cfg.StartTimeout = 3 * time.Second
	if p, err := host.Start(context.Background(), cfg); err == nil {
		p.Close()
		t.Fatal("a plugin without TLS started with AutoMTLS on")
	} else if !errors.Is(err, &host.Error{Kind: host.KindStart}) {
		t.Fatalf("got %v, want a start error", err)
	}
	// ...and works with mTLS disabled for it.
	cfg.DisableMTLS = true
	cfg.StartTimeout = 0 // the default
	p := start(t, cfg)
	if _, err := p.Score(context.Background(), makeGroups(1, 2, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestPythonPrintBeforeServe(t *testing.T) {
	needPython(t)
	cfg := misbehave(t, "ok")
	cfg.Env = []string{"MISBEHAVE_START=print-first"}
	_, err := host.Start(context.Background(), cfg)
	if !errors.Is(err, &host.Error{Kind: host.KindStart}) || !strings.Contains(err.Error(), `"debug output before serve"`) {
		t.Fatalf("got %v, want a start error quoting the stray line", err)
	}
}

// TestLargeBatch sends more than gRPC's default 4 MiB message limit to both SDKs.
func TestLargeBatch(t *testing.T) {
	needPython(t)
	groups := makeGroups(8, 8, 4096) // 262,144 tokens, about 10 MB on the wire
	tests := []struct {
		name string
		cfg  host.Config
	}{
		{"go", testConfig(map[string]any{"stat": "self_certainty"})},
		{"python", misbehave(t, "sc")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.cfg)
			got, err := p.Score(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			for i, g := range groups {
				for j, c := range g.Completions {
					if math.Abs(got[i][j].Value-c.SelfCertaintyMean) > 1e-9 {
						t.Fatalf("group %d completion %d: got %v, want %v", i, j, got[i][j].Value, c.SelfCertaintyMean)
					}
				}
			}
		})
	}
}

func TestPythonBatchAndStdout(t *testing.T) {
	needPython(t)
	groups := makeGroups(3, 2, 2)
	batch := misbehave(t, "ok")
	batch.Args = nil
	batch.Env = []string{"MISBEHAVE_START=batch"}
	printing := misbehave(t, "print")
	tests := []struct {
		name string
		cfg  host.Config
		want func(i, j int) float64
	}{
		{"batch", batch, func(i, j int) float64 { return float64(i) + float64(j)/10 }},
		{"print after the handshake", printing, func(i, j int) float64 { return float64(len(groups[i].Completions[j].Text)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, tc.cfg)
			for call := 0; call < 2; call++ {
				got, err := p.Score(context.Background(), groups)
				if err != nil {
					t.Fatal(err)
				}
				for i := range groups {
					for j := range groups[i].Completions {
						if w := tc.want(i, j); math.Abs(got[i][j].Value-w) > 1e-12 {
							t.Errorf("call %d group %d completion %d: got %v, want %v", call, i, j, got[i][j].Value, w)
						}
					}
				}
			}
		})
	}
}
