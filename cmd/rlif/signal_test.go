package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/internal/testutil"
)

// A second Ctrl-C stops rlif train at once (status 130); its reward plugins' processes
// and sockets go with it, though the process exits without closing them.
func TestSecondInterruptLeavesNoPluginSockets(t *testing.T) {
	dir := t.TempDir()
	rlif, _ := buildRlif(t, dir)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "run.toml")
	toml := fmt.Sprintf(`model = %q
out = %q
steps = 1000
[data]
raw = true
builtin_size = 64
[sampling]
prompts_per_step = 8
group_size = 4
max_tokens = 200
threads = 1
[learner]
threads = 1
[sync]
precision = "f32"
[[rewards]]
name = "self_certainty"
[[rewards]]
name = "format"
`, testutil.StoriesModel(t), filepath.Join(dir, "run"))
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(rlif, "train", "--config", config)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "step 1/") {
	}
	// The plugins run: their sockets are in $TMPDIR.
	if running, _ := os.ReadDir(tmp); len(running) == 0 {
		t.Fatal("no plugin socket in $TMPDIR while the run runs")
	}
	cmd.Process.Signal(os.Interrupt)
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	go func() {
		for sc.Scan() {
		}
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want status 130; stderr:\n%s", err, stderr.String())
	}
	// Plugins that outlived the host would notice within a second and exit, leaving
	// their sockets: wait longer than that before looking.
	time.Sleep(2 * time.Second)
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in $TMPDIR: %s", e.Name())
	}
}
