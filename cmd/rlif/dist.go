package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rlif/rlif/core/train"
)

// The variables torchrun sets for each rank it starts; rlif train reads the same ones,
// so that `torchrun --nnodes … --nproc-per-node … $(which rlif) train …` runs a job.
var distEnv = []string{"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}

// distFlags are train's data-parallel flags.
type distFlags struct {
	nproc      *int
	backend    *string
	timeout    *time.Duration
	checkEvery *int
}

func addDistFlags(fs *flag.FlagSet) distFlags {
	return distFlags{
		nproc:      fs.Int("nproc", 1, "data-parallel ranks to start on this machine (torchrun's RANK, WORLD_SIZE, … are read when set)"),
		backend:    fs.String("backend", "", "process-group backend of a job: gloo or nccl (default: nccl when learner.device is CUDA, else gloo)"),
		timeout:    fs.Duration("dist-timeout", 10*time.Minute, "how long a rank waits for the others at the rendezvous and in every exchange"),
		checkEvery: fs.Int("check-every", 10, "steps between comparisons of the ranks' weights (a mismatch is an error; -1: never)"),
	}
}

// distFromEnv reads a rank's place in its job from torchrun's variables. Without
// WORLD_SIZE, or with WORLD_SIZE=1, the run is alone (nil).
func distFromEnv(getenv func(string) string, f distFlags) (*train.Distributed, error) {
	ws := getenv("WORLD_SIZE")
	if ws == "" || ws == "1" {
		return nil, nil
	}
	num := func(name string, def int) (int, error) {
		v := getenv(name)
		if v == "" {
			if def >= 0 {
				return def, nil
			}
			return 0, fmt.Errorf("%s is not set: a job of WORLD_SIZE=%s ranks needs RANK, MASTER_ADDR and MASTER_PORT too (torchrun sets them)", name, ws)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s=%q: want a non-negative integer", name, v)
		}
		return n, nil
	}
	d := &train.Distributed{Backend: *f.backend, Timeout: *f.timeout, CheckEvery: *f.checkEvery,
		// torchrun's agent serves the store itself, and keeps it across restarts.
		AgentStore: getenv("TORCHELASTIC_USE_AGENT_STORE") == "True",
		Attempt:    getenv("TORCHELASTIC_RUN_ID") + "/" + getenv("TORCHELASTIC_RESTART_COUNT")}
	var err error
	if d.World, err = num("WORLD_SIZE", -1); err != nil {
		return nil, err
	}
	if d.Rank, err = num("RANK", -1); err != nil {
		return nil, err
	}
	if d.LocalRank, err = num("LOCAL_RANK", 0); err != nil {
		return nil, err
	}
	if d.Port, err = num("MASTER_PORT", -1); err != nil {
		return nil, err
	}
	if d.Addr = getenv("MASTER_ADDR"); d.Addr == "" {
		return nil, fmt.Errorf("MASTER_ADDR is not set: a job of WORLD_SIZE=%s ranks needs it (torchrun sets it)", ws)
	}
	switch {
	case d.World < 1:
		return nil, fmt.Errorf("WORLD_SIZE=%d: want at least 1", d.World)
	case d.Rank >= d.World:
		return nil, fmt.Errorf("RANK=%d: want below WORLD_SIZE=%d", d.Rank, d.World)
	case d.Port < 1 || d.Port > 65535:
		return nil, fmt.Errorf("MASTER_PORT=%d: want a TCP port (1-65535)", d.Port)
	}
	switch d.Backend {
	case "", "gloo", "nccl":
	default:
		return nil, usageError{fmt.Sprintf("--backend %q: want gloo or nccl", d.Backend)}
	}
	if d.Timeout <= 0 {
		return nil, usageError{fmt.Sprintf("--dist-timeout %v: want a positive duration", d.Timeout)}
	}
	return d, nil
}

// checkLaunchEnv refuses --nproc n in a process that a launcher started as a rank.
func checkLaunchEnv(n int) error {
	for _, v := range distEnv {
		if os.Getenv(v) != "" {
			return usageError{fmt.Sprintf("--nproc %d: %s is set (a launcher such as torchrun started this process): give one or the other", n, v)}
		}
	}
	return nil
}

// launchGrace is how long the ranks of `rlif train --nproc` may run on after one failed:
// a rank sees a peer gone at its next exchange, and rank 0 then writes a checkpoint.
const launchGrace = time.Minute

// launchRanks runs `rlif train` with the same flags as n local ranks of one job on
// 127.0.0.1 (what torchrun --nproc-per-node n would do): rank 0's output is this
// command's, the other ranks' errors come prefixed with their rank. Ctrl-C and SIGTERM
// go to every rank once (they have their own process group, so the terminal's signal
// does not reach them twice). The exit status is rank 0's, or the first failing rank's.
// The caller has checked the environment (checkLaunchEnv) and the run (train.Check).
func launchRanks(fs *flag.FlagSet, n int, stdout, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"train"}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "nproc" {
			args = append(args, "--"+f.Name+"="+f.Value.String())
		}
	})
	port, err := freeLoopbackPort()
	if err != nil {
		return fmt.Errorf("--nproc: no free port on 127.0.0.1 for the rendezvous: %w", err)
	}
	cmds := make([]*exec.Cmd, n)
	var outMu sync.Mutex // the ranks' lines do not interleave within a line
	for r := range cmds {
		c := exec.Command(exe, args...)
		c.Env = append(os.Environ(), "RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n), "LOCAL_RANK="+strconv.Itoa(r),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if r == 0 {
			c.Stdout, c.Stderr = &lockedWriter{w: stdout, mu: &outMu}, &lockedWriter{w: stderr, mu: &outMu}
		} else {
			// Rank 0 reports the job; the others only say what went wrong.
			c.Stdout = io.Discard
			c.Stderr = &prefixWriter{prefix: fmt.Sprintf("[rank %d] ", r), w: stderr, mu: &outMu}
		}
		if err := c.Start(); err != nil {
			for _, s := range cmds[:r] {
				_ = s.Process.Kill()
			}
			return fmt.Errorf("--nproc: start rank %d: %w", r, err)
		}
		cmds[r] = c
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case s := <-sigs:
				for _, c := range cmds {
					_ = c.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	codes := make([]int, n)
	var wg sync.WaitGroup
	// A rank that failed before the others could reach it (say, before the rendezvous)
	// would leave them waiting out --dist-timeout: the survivors get a grace period.
	failed := make(chan int, n)
	go func() {
		var r int
		select {
		case r = <-failed:
		case <-done:
			return
		}
		select {
		case <-time.After(launchGrace):
		case <-done:
			return
		}
		outMu.Lock()
		fmt.Fprintf(stderr, "rlif train: rank %d failed %v ago and the other ranks still run: killing them\n", r, launchGrace)
		outMu.Unlock()
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	}()
	for r, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if codes[r] != 0 {
					failed <- r
				}
			}()
			err := c.Wait()
			var ee *exec.ExitError
			switch {
			case err == nil:
			case errors.As(err, &ee) && ee.ExitCode() >= 0:
				codes[r] = ee.ExitCode()
			default:
				codes[r] = 1 // killed by a signal, or never waited for
				outMu.Lock()
				fmt.Fprintf(stderr, "rank %d: %v\n", r, err)
				outMu.Unlock()
			}
		}()
	}
	wg.Wait()
	for r, code := range codes {
		if code != 0 && r != 0 && code != codes[0] {
			fmt.Fprintf(stderr, "rank %d exited with status %d\n", r, code)
		}
	}
	if codes[0] != 0 {
		return exitStatus{codes[0]}
	}
	for _, code := range codes {
		if code != 0 {
			return exitStatus{code}
		}
	}
	return nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedWriter writes under a mutex shared with the other ranks' writers.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter starts every line with prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
	mu     *sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := -1
		for k, c := range p.buf {
			if c == '\n' {
				i = k
				break
			}
		}
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		_, err := p.w.Write(append([]byte(p.prefix), p.buf[:i+1]...))
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
}
