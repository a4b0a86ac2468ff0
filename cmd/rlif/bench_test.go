package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// rlif bench times a step with this build (first row), with another build that speaks
// `bench --row`, and with a build older than `rlif bench` (a wrapper that refuses the
// command as such a build does and runs `train` with the real binary), all on one table.
func TestBenchCompare(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rlif")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	old := filepath.Join(dir, "rlif-old")
	script := "#!/bin/sh\nif [ \"$1\" = bench ]; then echo 'rlif: unknown command \"bench\"; run '\\''rlif help'\\'' for the list' >&2; exit 2; fi\nexec " + bin + " \"$@\"\n"
	if err := os.WriteFile(old, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "run.toml")
	toml := `model = "` + testutil.StoriesModel(t) + `"
steps = 9
seed = 11
[data]
raw = true
builtin_size = 16
[sampling]
prompts_per_step = 2
group_size = 3
max_tokens = 16
temperature = 1.0
threads = 1
[learner]
threads = 1
[sync]
precision = "f32"
[[rewards]]
name = "self_certainty"
`
	if err := os.WriteFile(cfg, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "bench", "--config", cfg, "--json", "--compare", bin, "--compare", old)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if rep.Steps != 1 || rep.Config != cfg || len(rep.Rows) != 3 {
		t.Fatalf("report %+v, want 1 step of %s in 3 rows", rep, cfg)
	}
	for i, want := range []struct{ binary, via string }{{bin + " (this build)", "bench"}, {bin, "bench"}, {old, "train"}} {
		r := rep.Rows[i]
		if r.Binary != want.binary || r.Via != want.via || r.Steps != 1 {
			t.Errorf("row %d: %s via %s, %d steps; want %s via %s, 1 step", i, r.Binary, r.Via, r.Steps, want.binary, want.via)
		}
		s := r.Seconds
		if r.CompletionTokens <= 0 || s.Sample <= 0 || s.Learn <= 0 || s.Sync <= 0 || r.PeakRSSBytes <= 0 || r.WallSeconds < s.Step {
			t.Errorf("row %d is not a measured step: %+v", i, r)
		}
		// Each phase's peak memory (reset at its start) is logged, and the row's peak is
		// at least the largest of them.
		if p := r.PeakGiB; p == nil || p.Sample <= 0 || p.Learn <= 0 || p.Sync <= 0 || float64(r.PeakRSSBytes) < max(p.Sample, p.Learn, p.Sync)*(1<<30)*0.999 {
			t.Errorf("row %d: phase peaks %+v, peak %d bytes", i, p, r.PeakRSSBytes)
		}
		if d := s.Step - (s.Sample + s.Score + s.Learn + s.Sync); d > 1e-9 || d < -1e-9 {
			t.Errorf("row %d: step %v s is not the sum of its phases %+v", i, s.Step, s)
		}
		if got := r.TokensPerSecond.Sample * s.Sample; got < r.CompletionTokens*0.999 || got > r.CompletionTokens*1.001 {
			t.Errorf("row %d: sample tok/s %v × %v s ≠ %v tokens", i, r.TokensPerSecond.Sample, s.Sample, r.CompletionTokens)
		}
	}

	// The table: a header and one line per build, this build first. A build that cannot
	// run the config (here one that refuses its data, as a build older than named data
	// sets does) gets a row that says why, the other rows stand, and the exit is non-zero.
	broken := filepath.Join(dir, "rlif-broken")
	script = "#!/bin/sh\necho 'rlif train: data math-train: unknown format \"\"; want .jsonl or .parquet' >&2\nexit 1\n"
	if err := os.WriteFile(broken, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "bench", "--config", cfg, "--compare", old, "--compare", broken)
	stderr.Reset()
	cmd.Stderr = &stderr
	table, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); !ok || !strings.Contains(stderr.String(), "1 of 3 builds could not be timed") {
		t.Fatalf("bench with a broken build: %v (want a non-zero exit)\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(table)), "\n")
	if len(lines) != 6 || !strings.Contains(lines[2], "sample tok/s") || !strings.Contains(lines[2], "peak RSS MiB") || !strings.Contains(lines[2], "peak GiB sample/learn/sync") ||
		!strings.Contains(lines[3], "(this build)") || !strings.Contains(lines[4], "rlif-old") || !strings.Contains(lines[4], "train") ||
		!strings.Contains(lines[5], "rlif-broken") || !strings.Contains(lines[5], "failed:") || !strings.Contains(lines[5], "unknown format") {
		t.Fatalf("table:\n%s", table)
	}
}

// Bad input to rlif bench is a one-line error and a non-zero exit.
func TestBenchBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing config", []string{"--config", filepath.Join(dir, "none.toml")}, "none.toml"},
		{"no steps", []string{"--config", filepath.Join(dir, "none.toml"), "--steps", "0"}, "--steps"},
		{"missing other build", []string{"--config", writeBenchFile(t, dir, "a.toml", "steps = 1\n"), "--compare", filepath.Join(dir, "nope")}, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t, append([]string{"bench"}, tc.args...)...)
			line := strings.TrimSpace(errs)
			if code == 0 || strings.Contains(line, "\n") || !strings.Contains(line, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s", code, errs)
			}
		})
	}
}

func writeBenchFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
