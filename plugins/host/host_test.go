package host_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// bins holds the plugin executables that TestMain builds once for all tests.
var bins = map[string]string{}

// buildPlugins lists the packages built into real plugin executables for the tests.
var buildPlugins = map[string]string{
	"testplugin": "github.com/rlif/rlif/plugins/internal/testplugin",
	"go-length":  "github.com/rlif/rlif/examples/plugins/go-length",
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rlif-host-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if os.Getenv("RLIF_TEST_HOST_CHILD") == "1" { // TestPluginDiesWithHost's host: builds nothing
		os.Exit(m.Run())
	}
	for name, pkg := range buildPlugins {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		bins[name] = out
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// makeGroups returns nGroups groups of nComp completions with nTok tokens of statistics
// each. Completion j of a group has a text of j+1 characters.
func makeGroups(nGroups, nComp, nTok int) []rewards.Group {
	groups := make([]rewards.Group, nGroups)
	for i := range groups {
		g := rewards.Group{Prompt: fmt.Sprintf("question %d", i), Fields: map[string]string{"answer": "42"}}
		for j := 0; j < nComp; j++ {
			c := rollout.Completion{Prompt: g.Prompt, Text: strings.Repeat("x", j+1), FinishReason: rollout.FinishEOS}
			for k := 0; k < nTok; k++ {
				c.Append(int32(k%500), rollout.TokenStats{
					LogProb:       -0.5 - float64(k%7)/10,
					RawLogProb:    -0.4 - float64(k%5)/10,
					Entropy:       1 + float64(k%3)/10,
					SelfCertainty: float64(j) + float64(k%4)/4,
				})
			}
			c.Finalize()
			g.Completions = append(g.Completions, c)
		}
		groups[i] = g
	}
	return groups
}

func start(t *testing.T, cfg host.Config) *host.Plugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := host.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testConfig(args map[string]any) host.Config {
	return host.Config{Reward: "probe", Path: bins["testplugin"], Args: args, Timeout: 20 * time.Second}
}

func TestScoreRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		args map[string]any
		mtls bool
		want func(g, j int, c rollout.Completion) rewards.Score
	}{
		{"length, mTLS", nil, true, func(_, _ int, c rollout.Completion) rewards.Score { return rewards.Of(float64(len(c.Text))) }},
		{"length, plain", map[string]any{"mode": "ok"}, false, func(_, _ int, c rollout.Completion) rewards.Score {
			return rewards.Of(float64(len(c.Text)))
		}},
		{"self-certainty statistics cross", map[string]any{"stat": "self_certainty"}, true, func(_, _ int, c rollout.Completion) rewards.Score {
			return rewards.Of(c.SelfCertaintyMean)
		}},
		{"not applicable", map[string]any{"mode": "na_odd"}, true, func(_, j int, c rollout.Completion) rewards.Score {
			if j%2 == 1 {
				return rewards.NA()
			}
			return rewards.Of(float64(len(c.Text)))
		}},
	}
	groups := makeGroups(3, 5, 16)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.args)
			cfg.DisableMTLS = !tc.mtls
			p := start(t, cfg)
			got, err := p.Score(context.Background(), groups)
			if err != nil {
				t.Fatalf("Score: %v", err)
			}
			if len(got) != len(groups) {
				t.Fatalf("got %d groups, want %d", len(got), len(groups))
			}
			for i, g := range groups {
				for j, c := range g.Completions {
					want := tc.want(i, j, c)
					if got[i][j].Applicable != want.Applicable || math.Abs(got[i][j].Value-want.Value) > 1e-12 {
						t.Errorf("group %d completion %d: got %+v, want %+v", i, j, got[i][j], want)
					}
				}
			}
		})
	}
}

func TestInfo(t *testing.T) {
	p := start(t, testConfig(nil))
	info := p.Info()
	if info.Name != "testplugin" || info.ProtocolVersion != 1 || info.Summary == "" {
		t.Errorf("Info = %+v", info)
	}
	if len(info.Args) != 1 || info.Args[0].Name != "mode" || info.Args[0].DefaultJSON != `"ok"` {
		t.Errorf("Info.Args = %+v", info.Args)
	}
}

func TestScoreFailures(t *testing.T) {
	tests := []struct {
		mode     string
		kind     host.Kind
		contains []string
	}{
		{"crash", host.KindCrash, []string{`"probe"`, "crashed during Score", "exit status 3", "crashing on purpose", "again after 1 restart"}},
		{"hang", host.KindTimeout, []string{`"probe"`, "hung", "did not answer within 2s", "again after 1 restart"}},
		{"short", host.KindBadCount, []string{`"probe"`, "returned 4 scores for group 2, which has 5 completions"}},
		{"nan", host.KindBadValue, []string{`"probe"`, "returned NaN for completion 1 of group 0"}},
		{"inf", host.KindBadValue, []string{`"probe"`, "returned -Inf for completion 1 of group 0"}},
		{"error", host.KindFailed, []string{`"probe"`, "the reward refuses this batch"}},
		{"panic", host.KindFailed, []string{`"probe"`, "panic: testplugin panics on purpose"}},
	}
	groups := makeGroups(3, 5, 8)
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := testConfig(map[string]any{"mode": tc.mode})
			cfg.Timeout = 2 * time.Second
			p := start(t, cfg)
			began := time.Now()
			got, err := p.Score(context.Background(), groups)
			if err == nil {
				t.Fatalf("Score succeeded with %v, want a %v error", got, tc.kind)
			}
			if got != nil {
				t.Errorf("Score returned scores %v with its error", got)
			}
			var he *host.Error
			if !errors.As(err, &he) || he.Kind != tc.kind {
				t.Fatalf("error %v: want kind %v", err, tc.kind)
			}
			if !errors.Is(err, &host.Error{Kind: tc.kind}) {
				t.Errorf("errors.Is(err, kind %v) is false", tc.kind)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("the failure took %v to report", d)
			}
		})
	}
}

func TestCrashRetries(t *testing.T) {
	tests := []struct {
		name     string
		retries  int
		wantErr  bool
		restarts int
	}{
		{"default restarts once", 0, false, 1},
		{"retries disabled", -1, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "crashed")
			cfg := testConfig(map[string]any{"mode": "crash_once", "marker": marker})
			cfg.Retries = tc.retries
			p := start(t, cfg)
			got, err := p.Score(context.Background(), makeGroups(2, 3, 4))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Score error = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, &host.Error{Kind: host.KindCrash}) {
				t.Errorf("error %v is not a crash", err)
			}
			if err == nil && got[1][2].Value != 3 {
				t.Errorf("after the restart, got %v", got)
			}
			if _, err := os.Stat(marker); err != nil {
				t.Errorf("the plugin did not crash first: %v", err)
			}
			if r := p.Restarts(); r != tc.restarts {
				t.Errorf("Restarts = %d, want %d", r, tc.restarts)
			}
		})
	}
}

func TestHangThenNextCallRestarts(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "hung")
	cfg := testConfig(map[string]any{"mode": "hang_once", "marker": marker})
	cfg.Timeout = time.Second
	cfg.Retries = -1 // no retry within the call
	p := start(t, cfg)
	groups := makeGroups(1, 2, 2)
	if _, err := p.Score(context.Background(), groups); !errors.Is(err, &host.Error{Kind: host.KindTimeout}) {
		t.Fatalf("first call: got %v, want a timeout", err)
	}
	got, err := p.Score(context.Background(), groups)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	if got[0][1].Value != 2 || p.Restarts() != 1 {
		t.Errorf("second call: got %v, restarts %d", got, p.Restarts())
	}
}

func TestCallerCancel(t *testing.T) {
	cfg := testConfig(map[string]any{"mode": "hang"})
	p := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := p.Score(ctx, makeGroups(1, 2, 2))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's context error", err)
	}
}

func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("#!/bin/sh\necho hello, not a handshake\nsleep 5\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dies := filepath.Join(dir, "dies")
	if err := os.WriteFile(dies, []byte("#!/bin/sh\necho 'cannot import my_model' >&2\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A script without a #! line, as `plugin = "ok.py"` often is: the kernel cannot run it.
	noShebang := filepath.Join(dir, "ok.py")
	if err := os.WriteFile(noShebang, []byte("import sys\nprint('hello')\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	noInterpreter := filepath.Join(dir, "old.py")
	if err := os.WriteFile(noInterpreter, []byte("#!/nonexistent/python9 -u\nimport sys\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := func(path string) string {
		t.Helper()
		out, err := exec.Command("sha256sum", path).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))[0]
	}
	tests := []struct {
		name     string
		cfg      host.Config
		kind     host.Kind
		contains []string
	}{
		{"missing", host.Config{Reward: "m", Path: filepath.Join(dir, "nope")}, host.KindNotFound, []string{`"m"`, "nope", "not found"}},
		{"not executable", host.Config{Reward: "n", Path: notExec}, host.KindNotExecutable, []string{`"n"`, "not executable", "-rw-r--r--"}},
		{"directory", host.Config{Reward: "d", Path: dir}, host.KindNotExecutable, []string{"directory"}},
		{"no #! line", host.Config{Reward: "k", Path: noShebang}, host.KindNotExecutable,
			[]string{`"k"`, "ok.py", "not executable as a program", "needs a #! line first, e.g. #!/usr/bin/env python3", "or give a compiled binary"}},
		{"missing interpreter", host.Config{Reward: "i", Path: noInterpreter}, host.KindNotExecutable,
			[]string{`"i"`, "old.py", "its #! line names the interpreter /nonexistent/python9, which does not exist"}},
		{"wrong sha256", host.Config{Reward: "s", Path: bins["testplugin"], SHA256: strings.Repeat("ab", 32)}, host.KindChecksum,
			[]string{`"s"`, "sha256 pin", "pinned abab", sum(bins["testplugin"])}},
		{"malformed sha256", host.Config{Reward: "s", Path: bins["testplugin"], SHA256: "xyz"}, host.KindChecksum, []string{"64 hex digits"}},
		{"no handshake", host.Config{Reward: "g", Path: garbage, StartTimeout: 5 * time.Second}, host.KindStart, []string{`"g"`, `"hello, not a handshake", is not go-plugin's handshake line`}},
		{"exits at start", host.Config{Reward: "e", Path: dies, StartTimeout: 5 * time.Second}, host.KindStart, []string{`"e"`, "exit status 7", "cannot import my_model"}},
		{"rejects args", testConfig(map[string]any{"mode": "bad_config"}), host.KindConfigure, []string{"mode bad_config is refused"}},
		{"wrong arg type", testConfig(map[string]any{"mode": 3}), host.KindConfigure, []string{`arg \"mode\": want a string`}},
		{"hangs in Configure", func() host.Config {
			c := testConfig(map[string]any{"mode": "hang_configure"})
			c.StartTimeout = 2 * time.Second
			return c
		}(), host.KindTimeout, []string{"hung: Configure did not answer within 2s"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := host.Start(context.Background(), tc.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("Start succeeded, want a %v error", tc.kind)
			}
			var he *host.Error
			if !errors.As(err, &he) || he.Kind != tc.kind {
				t.Fatalf("error %v: want kind %v", err, tc.kind)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), strings.ReplaceAll(s, `\"`, `"`)) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestSHA256PinAccepts(t *testing.T) {
	out, err := exec.Command("sha256sum", bins["testplugin"]).Output()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(nil)
	cfg.SHA256 = strings.ToUpper(strings.Fields(string(out))[0])
	p := start(t, cfg)
	if _, err := p.Score(context.Background(), makeGroups(1, 2, 2)); err != nil {
		t.Fatal(err)
	}
}

func TestCloseStopsProcess(t *testing.T) {
	py, err := absPath("../../examples/plugins/python-keyword/plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"go": bins["testplugin"], "python": py} {
		t.Run(name, func(t *testing.T) {
			if name == "python" {
				needPython(t)
			}
			p := start(t, host.Config{Reward: name, Path: path})
			began := time.Now()
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			// go-plugin kills a plugin that has not exited 2 s after the shutdown call.
			if d := time.Since(began); d > 1900*time.Millisecond {
				t.Errorf("Close took %v; the plugin should shut down gracefully at once", d)
			}
			if _, err := p.Score(context.Background(), makeGroups(1, 1, 1)); err == nil {
				t.Error("Score after Close succeeded")
			}
		})
	}
}

// TestPluginDiesWithHost kills a host process with SIGKILL and checks that its plugin
// (which the host cannot stop any more) exits by itself.
func TestPluginDiesWithHost(t *testing.T) {
	if os.Getenv("RLIF_TEST_HOST_CHILD") == "1" {
		p, err := host.Start(context.Background(), host.Config{Reward: "orphan", Path: os.Getenv("RLIF_TEST_PLUGIN")})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("pid", p.Pid())
		time.Sleep(time.Hour)
	}
	py, err := absPath("../../examples/plugins/python-keyword/plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"go": bins["testplugin"], "python": py} {
		t.Run(name, func(t *testing.T) {
			if name == "python" {
				needPython(t)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestPluginDiesWithHost$")
			cmd.Env = append(os.Environ(), "RLIF_TEST_HOST_CHILD=1", "RLIF_TEST_PLUGIN="+path)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var word string
			var pid int
			if _, err := fmt.Fscan(out, &word, &pid); err != nil || word != "pid" {
				cmd.Process.Kill()
				t.Fatalf("host child: %q %v", word, err)
			}
			cmd.Process.Kill()
			cmd.Wait()
			deadline := time.Now().Add(5 * time.Second)
			for syscall.Kill(pid, 0) == nil {
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					t.Fatalf("plugin %d outlived its host by 5 s", pid)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
