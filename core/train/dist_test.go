package train

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/core/config"
	"github.com/rlif/rlif/rewards"
)

// distRun is storiesRun with four prompts a step (two per rank) and f32 everywhere, so
// that one rank and two compute the same numbers up to the order of float sums.
func distRun(t *testing.T, out string, steps int) config.Run {
	cfg := storiesRun(t, out, steps)
	cfg.Sampling.PromptsPerStep = 4
	cfg.Learner.Precision = "f32"
	return cfg
}

func writeRunConfig(t *testing.T, cfg config.Run) string {
	t.Helper()
	b, err := cfg.Encode()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "run.toml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// trainRanks runs `rlif train --nproc 2` with args; tmp is the ranks' TMPDIR.
func trainRanks(tmp string, args ...string) *exec.Cmd {
	cmd := exec.Command(rlifBin, append([]string{"train", "--nproc", "2", "--dist-timeout", "60s"}, args...)...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	return cmd
}

func stepLines(t *testing.T, path string, step int) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"step":`+strconv.Itoa(step)+",") {
			out = append(out, sc.Text())
		}
	}
	return out
}

// TestDistributedRunMatchesOneRank: `rlif train --nproc 2` (two Gloo ranks on loopback,
// each sampling, scoring and learning on half of every step's prompts) trains as one
// process does on the whole step: step 1 samples the same completions (each prompt keeps
// its seeds), and its metrics are the same: the rewards exactly, the loss and gradient
// norm to f32 rounding. Rank 0 alone writes the run directory; the other rank leaves
// nothing behind. With self-certainty normalized over the batch, the ranks' advantages
// are those of the whole step's batch.
func TestDistributedRunMatchesOneRank(t *testing.T) {
	for _, normalize := range []string{rewards.NormalizeGroup, rewards.NormalizeBatch} {
		t.Run(normalize, func(t *testing.T) { distributedRunMatchesOneRank(t, normalize) })
	}
}

func distributedRunMatchesOneRank(t *testing.T, normalize string) {
	const steps = 2
	run := func(out string) config.Run {
		cfg := distRun(t, out, steps)
		cfg.Rewards[0].Normalize = normalize
		return cfg
	}
	one := t.TempDir()
	if _, err := Run(context.Background(), run(one), Options{Executable: rlifBin}); err != nil {
		t.Fatal(err)
	}
	two, tmp := t.TempDir(), t.TempDir()
	cmd := trainRanks(tmp, "--config", writeRunConfig(t, run(two)))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rlif train --nproc 2: %v\n%s", err, b)
	}
	want := readMetrics(t, filepath.Join(one, "metrics.jsonl"))
	got := readMetrics(t, filepath.Join(two, "metrics.jsonl"))
	if len(got) != steps || len(want) != steps {
		t.Fatalf("%d metric lines from two ranks, %d from one; want %d", len(got), len(want), steps)
	}
	for _, k := range []string{"reward/self_certainty/mean", "reward/self_certainty/std", "reward/format/mean", "advantage/std",
		"completion_length/mean", "completion_length/max", "tokens", "lr", "completion/repetition_4gram"} {
		if got[0][k] != want[0][k] {
			t.Errorf("step 1 %s: two ranks %v, one rank %v", k, got[0][k], want[0][k])
		}
	}
	for _, k := range []string{"loss", "grad_norm", "kl", "ratio/mean", "is_weight/mean"} {
		if d := math.Abs(got[0][k] - want[0][k]); d > 1e-6+1e-5*math.Abs(want[0][k]) {
			t.Errorf("step 1 %s: two ranks %.9g, one rank %.9g", k, got[0][k], want[0][k])
		}
	}
	if want[0]["grad_norm"] == 0 {
		t.Fatal("step 1 had no gradient: the comparison proves nothing")
	}
	// Step 2 samples from weights that differ by f32 rounding: a single token drawn
	// otherwise changes its completions, so step 2 is not compared.
	c1, c2 := stepLines(t, filepath.Join(one, "completions.jsonl"), 1), stepLines(t, filepath.Join(two, "completions.jsonl"), 1)
	if len(c1) != 12 || len(c2) != len(c1) {
		t.Fatalf("step 1: %d completions from two ranks, %d from one; want 12", len(c2), len(c1))
	}
	for i := range c1 {
		if c1[i] != c2[i] {
			t.Errorf("step 1 completion %d:\ntwo ranks %s\none rank  %s", i, c2[i], c1[i])
		}
	}
	if _, err := os.Stat(filepath.Join(two, "final", "model.gguf")); err != nil {
		t.Errorf("no final model: %v", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the ranks left %d entries in their TMPDIR (%s …)", len(left), left[0].Name())
	}
}

// rankPIDs are the pids of the launcher's children (the ranks), in pid order: the
// launcher starts rank 0 first. Any of its threads may have forked them.
func rankPIDs(t *testing.T, launcher int) []int {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(launcher) + "/task/*/children")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of the launcher: %v", err)
	}
	var pids []int
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			p, _ := strconv.Atoi(f)
			pids = append(pids, p)
		}
	}
	slices.Sort(pids)
	return pids
}

// TestDistributedKillAndResume: rank 1 of a two-rank job is killed (SIGKILL) while the
// job runs; rank 0 ends with an error naming rank 1 and checkpoints the last complete
// step; both ranks resume from it, and the job ends with the metrics of an
// uninterrupted two-rank job.
func TestDistributedKillAndResume(t *testing.T) {
	const steps = 4
	ref, tmp := t.TempDir(), t.TempDir()
	if b, err := trainRanks(tmp, "--config", writeRunConfig(t, distRun(t, ref, steps))).CombinedOutput(); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, b)
	}
	want := readMetrics(t, filepath.Join(ref, "metrics.jsonl"))

	out := t.TempDir()
	cmd := trainRanks(tmp, "--config", writeRunConfig(t, distRun(t, out, steps)))
	var errs strings.Builder
	cmd.Stderr = &errs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitForMetricsLines(t, cmd, out, 1)
	pids := rankPIDs(t, cmd.Process.Pid)
	if len(pids) != 2 {
		t.Fatalf("the launcher has %d children, want 2 ranks", len(pids))
	}
	if err := syscall.Kill(pids[1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err := cmd.Wait()
	if err == nil {
		t.Fatalf("the job succeeded with rank 1 killed:\n%s", errs.String())
	}
	// Rank 0's own error, not only the launcher's note of the killed rank.
	if !strings.Contains(errs.String(), "rank 0 of 2") || !strings.Contains(errs.String(), "rank 1 (pid") {
		t.Errorf("rank 0's error does not name rank 1:\n%s", errs.String())
	}
	if time.Since(t0) > 30*time.Second {
		t.Errorf("rank 0 took %v to notice rank 1 was gone", time.Since(t0))
	}
	killedAt := len(readMetrics(t, filepath.Join(out, "metrics.jsonl")))
	if killedAt >= steps {
		t.Fatalf("the kill came after the job had finished: the test proves nothing")
	}
	t.Logf("rank 1 killed after %d logged steps; rank 0 said:\n%s", killedAt, errs.String())

	if b, err := trainRanks(tmp, "--resume", out).CombinedOutput(); err != nil || !strings.Contains(string(b), "resuming from") {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	got := readMetrics(t, filepath.Join(out, "metrics.jsonl"))
	if len(got) != steps {
		t.Fatalf("%d metric lines after resume, want %d", len(got), steps)
	}
	for i := range got {
		for _, k := range []string{"step", "reward/self_certainty/mean", "reward/format/mean", "loss", "kl", "grad_norm", "completion_length/mean", "lr"} {
			if got[i][k] != want[i][k] {
				t.Errorf("step %d %s: resumed %v, uninterrupted %v", i+1, k, got[i][k], want[i][k])
			}
		}
	}
}

// TestDistributedStopAgreed: an interrupt that reaches only rank 1 stops both ranks after
// the same step: rank 0 writes that step's checkpoint and the job exits with status 130;
// a resume then completes the run.
func TestDistributedStopAgreed(t *testing.T) {
	const steps = 6
	out, tmp := t.TempDir(), t.TempDir()
	cmd := trainRanks(tmp, "--config", writeRunConfig(t, distRun(t, out, steps)))
	var errs strings.Builder
	cmd.Stderr = &errs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "step 1/") {
			pids := rankPIDs(t, cmd.Process.Pid)
			if len(pids) != 2 {
				t.Fatalf("the launcher has %d children, want 2 ranks", len(pids))
			}
			if err := syscall.Kill(pids[1], syscall.SIGINT); err != nil { // rank 1 only
				t.Fatal(err)
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(seen.String(), "stopped after step") {
		t.Fatalf("exit %v, want status 130 after a stop; stdout:\n%s\nstderr:\n%s", err, seen.String(), errs.String())
	}
	done := len(readMetrics(t, filepath.Join(out, "metrics.jsonl")))
	if done >= steps {
		t.Fatalf("the job ran all %d steps: the stop proves nothing", steps)
	}
	if _, err := os.Stat(filepath.Join(out, "checkpoints", "step-"+strconv.Itoa(done), "state.json")); err != nil {
		t.Fatalf("rank 0 stopped after step %d without its checkpoint: %v", done, err)
	}
	if b, err := trainRanks(tmp, "--resume", out).CombinedOutput(); err != nil {
		t.Fatalf("resume: %v\n%s", err, b)
	}
	if n := len(readMetrics(t, filepath.Join(out, "metrics.jsonl"))); n != steps {
		t.Fatalf("%d metric lines after resume, want %d", n, steps)
	}
	t.Logf("both ranks stopped after step %d of %d", done, steps)
}

// rankProcess runs `rlif train` as rank `rank` of a job of world ranks whose rendezvous is
// at 127.0.0.1:port, with a short --dist-timeout. A rank that outlives the test's bound
// (a hang) is killed, and the test fails.
func rankProcess(t *testing.T, ctx context.Context, config string, rank, world, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, rlifBin, "train", "--config", config, "--dist-timeout", "2s")
	cmd.Env = append(os.Environ(), "RANK="+strconv.Itoa(rank), "WORLD_SIZE="+strconv.Itoa(world), "LOCAL_RANK="+strconv.Itoa(rank),
		"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "TMPDIR="+t.TempDir())
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// holdPort listens on a free loopback port from the test process, as another program
// would, and accepts connections without ever answering them.
func holdPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, silent, until the test ends
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestRendezvousFailures: a rank whose job does not gather ends, within about
// --dist-timeout, with one line that says what went wrong: the ranks that never joined,
// or that MASTER_PORT belongs to another process (which never answers a rank, or leaves
// rank 0 no port to serve on). Every rank is a real `rlif train` process; a rank that
// hangs is killed after two minutes and fails the test.
func TestRendezvousFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		world int
		ranks []int // the ranks started
		held  bool  // another process (the test) owns MASTER_PORT
		want  map[int][]string
	}{
		{"rank 0 alone", 2, []int{0}, false, map[int][]string{0: {"rank 1 never joined within 2s (--dist-timeout)"}}},
		{"rank 1 alone", 2, []int{1}, false, map[int][]string{1: {"rank 0 never joined within 2s (--dist-timeout): nothing listens at port"}}},
		// Rank 1 ends at its own deadline or, when rank 0's came first, when rank 0's store
		// goes away: either way it says how far the meeting got.
		{"two of three", 3, []int{0, 1}, false, map[int][]string{
			0: {"rank 2 never joined within 2s (--dist-timeout): 2 of 3 ranks did"},
			1: {"2 of 3 ranks did", "start every rank"}}},
		{"port held, rank 0", 2, []int{0}, true, map[int][]string{0: {"is in use by another process", "another MASTER_PORT"}}},
		{"port held, rank 1", 2, []int{1}, true, map[int][]string{1: {"did not answer as rank 0's rendezvous store", "in use by another process", "another MASTER_PORT"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freeLoopbackPort(t)
			if tc.held {
				port = holdPort(t)
			}
			config := writeRunConfig(t, distRun(t, t.TempDir(), 1))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmds := map[int]*exec.Cmd{}
			errs := map[int]*strings.Builder{}
			for _, r := range tc.ranks {
				cmds[r], errs[r] = rankProcess(t, ctx, config, r, tc.world, port), &strings.Builder{}
				cmds[r].Stderr = errs[r]
				if err := cmds[r].Start(); err != nil {
					t.Fatal(err)
				}
			}
			for _, r := range tc.ranks {
				err := cmds[r].Wait()
				if ctx.Err() != nil {
					t.Fatalf("rank %d still waited after %v: killed", r, 2*time.Minute)
				}
				line := strings.TrimSpace(errs[r].String())
				where := fmt.Sprintf("rank %d of %d: rendezvous at 127.0.0.1:%d: ", r, tc.world, port)
				if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, where) {
					t.Fatalf("rank %d: exit %v, want one line with %q; stderr:\n%s", r, err, where, errs[r].String())
				}
				for _, w := range tc.want[r] {
					if !strings.Contains(line, w) {
						t.Errorf("rank %d: %q does not say %q", r, line, w)
					}
				}
				t.Logf("rank %d: %s", r, line)
			}
		})
	}
}

// TestLauncherChecksBeforeRanks: `rlif train --nproc N` checks the run as its ranks would
// before it starts any: a run that every rank would refuse is one error line and a
// non-zero exit, with no rank started and nothing written.
func TestLauncherChecksBeforeRanks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nproc int
		edit  func(*config.Run)
		want  string
	}{
		{"fewer prompts than ranks", 64, func(c *config.Run) { c.Sampling.PromptsPerStep = 2 },
			"sampling.prompts_per_step = 2 is fewer than the 64 ranks: each rank samples whole prompts of a step; raise prompts_per_step to at least 64, or start at most 2 ranks"},
		{"bad value", 4, func(c *config.Run) { c.Learner.LR = -1 }, "learner.lr = -1: want > 0"},
		{"no model", 4, func(c *config.Run) { c.Model = filepath.Join(t.TempDir(), "missing.gguf") }, "missing.gguf"},
		{"no data", 4, func(c *config.Run) { c.Data.Path = filepath.Join(t.TempDir(), "missing.jsonl") }, "missing.jsonl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cfg := distRun(t, out, 1)
			tc.edit(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, rlifBin, "train", "--nproc", strconv.Itoa(tc.nproc), "--config", writeRunConfig(t, cfg))
			cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
			// Ranks (own process groups) that outlive a killed launcher hold its pipes.
			cmd.WaitDelay = 10 * time.Second
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("the launcher still ran after %v: killed; stderr:\n%s", 2*time.Minute, stderr.String())
			}
			line := strings.TrimSpace(stderr.String())
			if err == nil || strings.Contains(line, "\n") || !strings.Contains(line, tc.want) {
				t.Fatalf("exit %v, want one line with %q; stderr:\n%s", err, tc.want, stderr.String())
			}
			if strings.Contains(stdout.String(), "joining the job") {
				t.Errorf("ranks were started:\n%s", stdout.String())
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused run left its directory %s (%v)", out, err)
			}
			t.Logf("%s", line)
		})
	}
}
