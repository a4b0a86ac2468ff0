package main

import (
	"flag"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/testutil"
)

// TestDistFromEnv: torchrun's variables place a rank in its job; a missing or malformed
// one is a one-line error naming it; without WORLD_SIZE (or with 1) the run is alone.
func TestDistFromEnv(t *testing.T) {
	job := map[string]string{"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29500"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range job {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		backend string
		alone   bool
		want    string // error substring; "" for none
	}{
		{"no job", map[string]string{}, "", true, ""},
		{"world of one", map[string]string{"WORLD_SIZE": "1"}, "", true, ""},
		{"job", job, "", false, ""},
		{"no local rank", with("LOCAL_RANK", ""), "", false, ""},
		{"no rank", with("RANK", ""), "", false, "RANK is not set"},
		{"rank not a number", with("RANK", "two"), "", false, `RANK="two"`},
		{"rank too large", with("RANK", "4"), "", false, "RANK=4: want below WORLD_SIZE=4"},
		{"no address", with("MASTER_ADDR", ""), "", false, "MASTER_ADDR is not set"},
		{"no port", with("MASTER_PORT", ""), "", false, "MASTER_PORT is not set"},
		{"port out of range", with("MASTER_PORT", "70000"), "", false, "MASTER_PORT=70000"},
		{"world not a number", with("WORLD_SIZE", "x"), "", false, `WORLD_SIZE="x"`},
		{"unknown backend", job, "mpi", false, `--backend "mpi"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("train", flag.ContinueOnError)
			df := addDistFlags(fs)
			*df.backend = tc.backend
			d, err := distFromEnv(func(k string) string { return tc.env[k] }, df)
			switch {
			case tc.want != "":
				if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want one line with %q", err, tc.want)
				}
			case err != nil:
				t.Fatal(err)
			case tc.alone != (d == nil):
				t.Fatalf("job %+v, alone %v", d, tc.alone)
			case d != nil:
				if d.World != 4 || d.Rank != 3 || d.Addr != "10.0.0.7" || d.Port != 29500 || d.Timeout != 10*time.Minute {
					t.Fatalf("job %+v", d)
				}
				if want := map[bool]int{true: 1, false: 0}[tc.env["LOCAL_RANK"] != ""]; d.LocalRank != want {
					t.Fatalf("local rank %d, want %d", d.LocalRank, want)
				}
			}
		})
	}
}

// TestTrainNprocRefusals: --nproc below 1, or together with torchrun's variables, is a
// usage error (status 2, one line).
func TestTrainNprocRefusals(t *testing.T) {
	code, _, errs := runCLI(t, "train", "--nproc", "0")
	if code != 2 || !strings.Contains(errs, "--nproc 0") {
		t.Errorf("--nproc 0: exit %d, %q", code, errs)
	}
	t.Setenv("WORLD_SIZE", "2")
	code, _, errs = runCLI(t, "train", "--nproc", "2")
	if code != 2 || !strings.Contains(errs, "WORLD_SIZE is set") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("--nproc with WORLD_SIZE: exit %d, %q", code, errs)
	}
}

// TestTrainRendezvousTimeout: a rank whose job never gathers (no rank 0 at MASTER_ADDR)
// fails within --dist-timeout with a one-line error naming its rank and the address.
func TestTrainRendezvousTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nobody serves the rendezvous there
	for k, v := range map[string]string{"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": strconv.Itoa(port)} {
		t.Setenv(k, v)
	}
	t0 := time.Now()
	code, _, errs := runCLI(t, "train", "--model", testutil.StoriesModel(t), "--raw", "--out", t.TempDir(), "--steps", "1", "--dist-timeout", "2s")
	took := time.Since(t0)
	line := strings.TrimSpace(errs)
	if code == 0 || strings.Count(line, "\n") > 0 || !strings.Contains(line, "rank 1 of 2") || !strings.Contains(line, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("exit %d, stderr:\n%s", code, errs)
	}
	if took > 30*time.Second {
		t.Errorf("the rendezvous gave up after %v, timeout 2s", took)
	}
	t.Logf("after %v: %s", took.Round(time.Millisecond), line)
}
