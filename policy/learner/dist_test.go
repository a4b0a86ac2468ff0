package learner

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/testutil"
)

// The ranks of the distributed tests are real processes: this test binary run again
// with distRoleEnv set, which TestMain turns into one rank (c10d keeps one process group
// per process, and a rank that exits must take its sockets with it).
const distRoleEnv = "RLIF_LEARNER_TEST_RANK"

func TestMain(m *testing.M) {
	if role := os.Getenv(distRoleEnv); role != "" {
		if err := runRank(role); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// rankJob is what a rank process is told (as JSON in distRoleEnv).
type rankJob struct {
	Model     string
	Rank      int
	World     int
	Port      int
	TimeoutMS int
	Loss      string
	Steps     int
	Out       string // where the rank writes its rankResult
	// Fault: "" none; "exit": rank 1 exits after joining, before the step; "hang": rank 1
	// joins and then sleeps through the step; "perturb": rank 1 changes a weight after
	// the steps, before the weight check; "resume": after the steps, rank 0 saves its
	// state, both ranks start over from the model file, rank 0 loads the state, it is
	// synced to rank 1 (Trainer.SyncState), and both take one more step.
	Fault string
	// AgentStore: the test process serves the store, as torchrun's agent does.
	AgentStore bool
}

// rankResult is what a rank reports: per step the loss and gradient norm, then its
// weights after the steps.
type rankResult struct {
	Loss, GradNorm []float64
	CommBytes      float64
	Weights        string // file of little-endian float32
	Err            string
	Seconds        float64 // of the failing step
}

// distSamples is the global batch of the tests: 8 sequences of different lengths, two
// halves of four (one per rank).
func distSamples() []Sample {
	rng := rand.New(rand.NewPCG(41, 42))
	var s []Sample
	for i := 0; i < 8; i++ {
		s = append(s, Sample{Prompt: randomTokens(rng, 2+i%3), Completion: randomTokens(rng, 3+(5*i)%11), Advantage: float64(i%4) - 1.4})
	}
	return s
}

// distConfig is an optimizer whose step is proportional to the gradient (a large Adam
// ε), so that a difference in the summed gradients shows in the weights.
//
// Besides the aggregations, loss names a policy option: cispo (with ε_high = 5), sapo, or
// distGSPO, GSPO's sequence ratio with the two-sided clip over 2 optimizer steps per
// generation.
func distConfig(loss string, g *Group) TrainConfig {
	c := TrainConfig{LR: 1e-2, AdamEps: 1, Loss: loss, MicroBatch: 2, Beta: 0.05, Group: g}
	switch loss {
	case LossCISPO:
		c.EpsHigh = 5
	case distGSPO:
		// A smaller learning rate: at 1e-2 the first optimizer step moves this model so far
		// that the second's k3 KL reaches 180 and its gradient 2e4, whose rounding alone
		// parts the ranks' weights by 4e-6.
		c.Loss, c.ImportanceSamplingLevel, c.StepsPerGeneration, c.EpsLow, c.Delta, c.LR = LossDAPO, LevelSequence, 2, 0.05, 1.5, 2e-3
	}
	return c
}

// distGSPO is the data-parallel case of GSPO with 2 steps per generation: each rank splits
// its own half of the batch, so that optimizer step j trains on both ranks' part j.
const distGSPO = "gspo, 2 steps per generation"

// oneRankOrder is the batch as one rank takes it to match two: for distGSPO, each
// optimizer step's part interleaved from the two halves (samples 0, 1, 4, 5, then 2, 3,
// 6, 7).
func oneRankOrder(loss string, s []Sample) []Sample {
	if loss != distGSPO {
		return s
	}
	return []Sample{s[0], s[1], s[4], s[5], s[2], s[3], s[6], s[7]}
}

func runRank(role string) error {
	var job rankJob
	if err := json.Unmarshal([]byte(role), &job); err != nil {
		return err
	}
	res := rankResult{}
	defer func() {
		b, _ := json.Marshal(res)
		_ = os.WriteFile(job.Out, b, 0o644)
	}()
	m, err := Load(job.Model, Options{Threads: 1, Precision: PrecisionF32})
	if err != nil {
		return err
	}
	defer m.Close()
	g, err := JoinGroup(GroupConfig{Addr: "127.0.0.1", Port: job.Port, Rank: job.Rank, World: job.World, Timeout: time.Duration(job.TimeoutMS) * time.Millisecond,
		AgentStore: job.AgentStore, Attempt: "job/0"})
	if err != nil {
		res.Err = err.Error()
		return err
	}
	defer g.Close()
	tr, err := NewTrainer(m, distConfig(job.Loss, g))
	if err != nil {
		res.Err = err.Error()
		return err
	}
	defer tr.Close()
	if job.Rank == 1 {
		switch job.Fault {
		case "exit":
			os.Exit(3)
		case "hang":
			time.Sleep(time.Hour)
		}
	}
	all := distSamples()
	share := len(all) / job.World
	mine := all[job.Rank*share : (job.Rank+1)*share]
	for i := 0; i < job.Steps; i++ {
		t0 := time.Now()
		st, err := tr.Step(mine)
		if err != nil {
			res.Err, res.Seconds = err.Error(), time.Since(t0).Seconds()
			return err
		}
		res.Loss = append(res.Loss, st.Loss)
		res.GradNorm = append(res.GradNorm, st.GradNorm)
		res.CommBytes = st.CommBytes
	}
	if job.Fault == "resume" {
		// The resumed job: rank 0 alone reads the checkpoint.
		dir := filepath.Join(filepath.Dir(job.Out), "state")
		if job.Rank == 0 {
			if err := tr.SaveState(dir); err != nil {
				return err
			}
		}
		if m, err = Load(job.Model, Options{Threads: 1, Precision: PrecisionF32}); err != nil {
			return err
		}
		defer m.Close()
		if tr, err = NewTrainer(m, distConfig(job.Loss, g)); err != nil {
			return err
		}
		defer tr.Close()
		if job.Rank == 0 {
			if err := tr.LoadState(dir); err != nil {
				return err
			}
		}
		if err := tr.SyncState(); err != nil {
			res.Err = err.Error()
			return err
		}
		st, err := tr.Step(mine)
		if err != nil {
			res.Err = err.Error()
			return err
		}
		res.Loss, res.GradNorm = append(res.Loss, st.Loss), append(res.GradNorm, st.GradNorm)
	}
	if job.Rank == 1 && job.Fault == "perturb" {
		w := make([]float32, m.info.Embd)
		if err := m.t.Tensor("output_norm.weight", w, false, false); err != nil {
			return err
		}
		w[0] = math.Nextafter32(w[0], float32(math.Inf(1))) // one weight off by one float32 step
		if err := m.setTensor("output_norm.weight", w); err != nil {
			return err
		}
	}
	if err := tr.CheckParams(); err != nil {
		res.Err = err.Error()
		return err
	}
	res.Weights = job.Out + ".weights"
	return writeFloats(res.Weights, trainableValues(m))
}

// trainableValues are all trainable tensors' values, in order.
func trainableValues(m *Model) []float32 {
	var out []float32
	for i := 0; i < m.t.TrainableCount(); i++ {
		_, n, err := m.t.TrainableInfo(i)
		if err != nil {
			panic(err)
		}
		buf := make([]float32, n)
		if err := m.t.StateIO(i, 0, buf, false); err != nil {
			panic(err)
		}
		out = append(out, buf...)
	}
	return out
}

func writeFloats(path string, v []float32) error {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return os.WriteFile(path, b, 0o644)
}

func readFloats(t *testing.T, path string) []float32 {
	b, err := os.ReadFile(path)
	must(t, err)
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRanks runs world rank processes of job and returns their results once all have
// exited (or deadline has passed: then they are killed and the test fails).
func startRanks(t *testing.T, job rankJob, deadline time.Duration) []rankResult {
	t.Helper()
	exe, err := os.Executable()
	must(t, err)
	dir := t.TempDir()
	cmds := make([]*exec.Cmd, job.World)
	logs := make([]*strings.Builder, job.World)
	for r := range cmds {
		j := job
		j.Rank, j.Out = r, filepath.Join(dir, "rank"+strconv.Itoa(r)+".json")
		b, _ := json.Marshal(j)
		c := exec.Command(exe, "-test.run=^$")
		c.Env = append(os.Environ(), distRoleEnv+"="+string(b))
		logs[r] = &strings.Builder{}
		c.Stdout, c.Stderr = logs[r], logs[r]
		must(t, c.Start())
		cmds[r] = c
	}
	done := make(chan int, job.World)
	for r, c := range cmds {
		go func() { _ = c.Wait(); done <- r }()
	}
	// A rank 1 that exits or hangs on purpose may never end by itself, or leave no
	// result: once the others have ended, it is killed.
	faulty := job.Fault == "exit" || job.Fault == "hang"
	timer := time.After(deadline)
	for exited := map[int]bool{}; len(exited) < job.World; {
		select {
		case r := <-done:
			exited[r] = true
		case <-timer:
			for _, c := range cmds {
				_ = c.Process.Kill()
			}
			t.Fatalf("ranks still running after %v", deadline)
		}
		if faulty && len(exited) == job.World-1 && !exited[1] {
			_ = cmds[1].Process.Kill()
		}
	}
	out := make([]rankResult, job.World)
	for r := range out {
		b, err := os.ReadFile(filepath.Join(dir, "rank"+strconv.Itoa(r)+".json"))
		if err == nil {
			err = json.Unmarshal(b, &out[r])
		}
		if err != nil && !(faulty && r == 1) {
			t.Fatalf("rank %d left no result (%v); its output:\n%s", r, err, logs[r])
		}
	}
	return out
}

// TestDistributedStepMatchesOneRank: a global batch split over two Gloo ranks on
// loopback takes the steps one rank takes on the whole batch: the same loss, gradient
// norm and weights, for every loss aggregation (each of which divides by sizes of the
// whole batch) and with the KL term.
func TestDistributedStepMatchesOneRank(t *testing.T) {
	path := testutil.StoriesModel(t)
	for _, loss := range []string{LossGRPO, LossBNPO, LossDAPO, LossDrGRPO, LossCISPO, LossSAPO, distGSPO} {
		t.Run(loss, func(t *testing.T) {
			const steps = 2
			m, err := Load(path, Options{Threads: 1, Precision: PrecisionF32})
			must(t, err)
			defer m.Close()
			before := trainableValues(m)
			tr, err := NewTrainer(m, distConfig(loss, nil))
			must(t, err)
			defer tr.Close()
			var want []StepStats
			for i := 0; i < steps; i++ {
				st, err := tr.Step(oneRankOrder(loss, distSamples()))
				must(t, err)
				want = append(want, st)
			}
			wantW := trainableValues(m)

			res := startRanks(t, rankJob{Model: path, World: 2, Port: freePort(t), TimeoutMS: 60000, Loss: loss, Steps: steps}, 3*time.Minute)
			for r, got := range res {
				if got.Err != "" {
					t.Fatalf("rank %d: %s", r, got.Err)
				}
				for i := 0; i < steps; i++ {
					if d := math.Abs(got.Loss[i] - want[i].Loss); d > 1e-5*math.Max(1, math.Abs(want[i].Loss)) {
						t.Errorf("rank %d step %d: loss %.8g, one rank %.8g", r, i+1, got.Loss[i], want[i].Loss)
					}
					if d := math.Abs(got.GradNorm[i] - want[i].GradNorm); d > 1e-5*want[i].GradNorm {
						t.Errorf("rank %d step %d: gradient norm %.8g, one rank %.8g", r, i+1, got.GradNorm[i], want[i].GradNorm)
					}
				}
				w := readFloats(t, got.Weights)
				if len(w) != len(wantW) {
					t.Fatalf("rank %d: %d weights, one rank %d", r, len(w), len(wantW))
				}
				var maxDiff, maxMove float64
				for i := range w {
					maxDiff = math.Max(maxDiff, math.Abs(float64(w[i]-wantW[i])))
					maxMove = math.Max(maxMove, math.Abs(float64(wantW[i]-before[i])))
				}
				// Equal weights after steps that moved nothing would prove nothing.
				if maxMove < 1e-4 {
					t.Fatalf("the steps moved no weight by more than %g", maxMove)
				}
				if maxDiff > 1e-6 {
					t.Errorf("rank %d: weights differ from one rank's by up to %g (the steps moved them up to %g)", r, maxDiff, maxMove)
				}
				t.Logf("rank %d: loss %.6g %.6g, grad norm %.6g %.6g, max weight difference %.2g (moved up to %.2g), %.0f bytes all-reduced per step",
					r, got.Loss[0], got.Loss[1], got.GradNorm[0], got.GradNorm[1], maxDiff, maxMove, got.CommBytes)
			}
		})
	}
}

// TestDistributedResumeSyncsState: a job resumed with the checkpoint read by rank 0 alone
// (the other rank starts from the model file) continues as one rank does: after two steps,
// a save, a restart of both ranks and a third step, the loss, gradient norm and weights
// are those of three steps on one rank (the third step's Adam update needs the moments
// and step count rank 1 got from rank 0).
func TestDistributedResumeSyncsState(t *testing.T) {
	path := testutil.StoriesModel(t)
	m, err := Load(path, Options{Threads: 1, Precision: PrecisionF32})
	must(t, err)
	defer m.Close()
	tr, err := NewTrainer(m, distConfig(LossDAPO, nil))
	must(t, err)
	defer tr.Close()
	var want []StepStats
	for i := 0; i < 3; i++ {
		st, err := tr.Step(distSamples())
		must(t, err)
		want = append(want, st)
	}
	wantW := trainableValues(m)
	res := startRanks(t, rankJob{Model: path, World: 2, Port: freePort(t), TimeoutMS: 60000, Loss: LossDAPO, Steps: 2, Fault: "resume"}, 3*time.Minute)
	for r, got := range res {
		if got.Err != "" || len(got.Loss) != 3 {
			t.Fatalf("rank %d: %d steps, error %q", r, len(got.Loss), got.Err)
		}
		if d := math.Abs(got.GradNorm[2] - want[2].GradNorm); d > 1e-5*want[2].GradNorm {
			t.Errorf("rank %d step 3: gradient norm %.8g, one rank %.8g", r, got.GradNorm[2], want[2].GradNorm)
		}
		if d := math.Abs(got.Loss[2] - want[2].Loss); d > 1e-5*math.Max(1, math.Abs(want[2].Loss)) {
			t.Errorf("rank %d step 3: loss %.8g, one rank %.8g", r, got.Loss[2], want[2].Loss)
		}
		w := readFloats(t, got.Weights)
		var maxDiff float64
		for i := range w {
			maxDiff = math.Max(maxDiff, math.Abs(float64(w[i]-wantW[i])))
		}
		if maxDiff > 1e-6 {
			t.Errorf("rank %d: weights after the resumed step differ from one rank's by up to %g", r, maxDiff)
		}
	}
}

// TestDistributedAgentStore: under torchrun, its agent serves the rendezvous store and
// rank 0 connects to it like the others (TORCHELASTIC_USE_AGENT_STORE). Here the test
// process serves it (a job of its own, of one rank, under another attempt's keys), and
// the two ranks train through it.
func TestDistributedAgentStore(t *testing.T) {
	path := testutil.StoriesModel(t)
	port := freePort(t)
	agent, err := JoinGroup(GroupConfig{Addr: "127.0.0.1", Port: port, Rank: 0, World: 1, Timeout: time.Minute, Attempt: "agent"})
	must(t, err)
	defer agent.Close()
	res := startRanks(t, rankJob{Model: path, World: 2, Port: port, TimeoutMS: 60000, Loss: LossGRPO, Steps: 1, AgentStore: true}, 2*time.Minute)
	for r, got := range res {
		if got.Err != "" {
			t.Fatalf("rank %d: %s", r, got.Err)
		}
	}
	if res[0].Loss[0] != res[1].Loss[0] || res[0].GradNorm[0] != res[1].GradNorm[0] || res[0].GradNorm[0] == 0 {
		t.Errorf("ranks disagree: loss %v %v, gradient norm %v %v", res[0].Loss, res[1].Loss, res[0].GradNorm, res[1].GradNorm)
	}
}

// TestDistributedWeightCheck: the weight check passes when the ranks stepped together
// (TestDistributedStepMatchesOneRank runs it) and fails on every rank, naming rank 1,
// when one weight of rank 1 is off by one float32 step.
func TestDistributedWeightCheck(t *testing.T) {
	path := testutil.StoriesModel(t)
	res := startRanks(t, rankJob{Model: path, World: 2, Port: freePort(t), TimeoutMS: 60000, Loss: LossGRPO, Steps: 1, Fault: "perturb"}, 2*time.Minute)
	for r, got := range res {
		if !strings.Contains(got.Err, "the weights of rank(s) 1 differ from rank 0's") {
			t.Errorf("rank %d: error %q, want the weights of rank 1 named", r, got.Err)
		}
	}
}

// TestDistributedPeerLost: when rank 1 exits before the step, or hangs in it, rank 0's
// step fails within the group's timeout with an error that names rank 0 (and the rank
// that exited), instead of waiting forever.
func TestDistributedPeerLost(t *testing.T) {
	path := testutil.StoriesModel(t)
	const timeout = 3 * time.Second
	for _, tc := range []struct {
		fault string
		want  []string
	}{
		{"exit", []string{"rank 0 of 2", "rank 1 (pid", "exited"}},
		{"hang", []string{"rank 0 of 2", "all-reduce"}},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			res := startRanks(t, rankJob{Model: path, World: 2, Port: freePort(t), TimeoutMS: int(timeout.Milliseconds()), Loss: LossGRPO, Steps: 1, Fault: tc.fault}, 2*time.Minute)
			got := res[0]
			if got.Err == "" {
				t.Fatalf("rank 0 finished its step without rank 1")
			}
			for _, w := range tc.want {
				if !strings.Contains(got.Err, w) {
					t.Errorf("rank 0's error %q does not say %q", got.Err, w)
				}
			}
			if got.Seconds > 2*timeout.Seconds()+5 {
				t.Errorf("rank 0 failed after %.1fs, timeout %v", got.Seconds, timeout)
			}
			t.Logf("rank 0 after %.2fs: %s", got.Seconds, got.Err)
		})
	}
}
