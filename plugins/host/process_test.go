package host_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rlif/rlif/plugins/host"
)

func TestHangRetries(t *testing.T) {
	tests := []struct {
		name     string
		mode     string
		retries  int
		wantErr  string // "" for success
		restarts int
	}{
		{"default restarts once after a hang", "hang_once", 0, "", 1},
		{"retries disabled", "hang_once", -1, "did not answer within 1s", 0},
		{"hangs again after the restart", "hang", 0, "did not answer within 1s; the plugin was stopped, again after 1 restart(s)", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "hung")
			cfg := testConfig(map[string]any{"mode": tc.mode, "marker": marker})
			cfg.Timeout = time.Second
			cfg.Retries = tc.retries
			p := start(t, cfg)
			got, err := p.Score(context.Background(), makeGroups(1, 2, 2))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Score: %v", err)
			case tc.wantErr == "" && got[0][1].Value != 2:
				t.Errorf("after the restart, got %v", got)
			case tc.wantErr != "" && !errors.Is(err, &host.Error{Kind: host.KindTimeout}):
				t.Fatalf("Score error = %v, want a timeout", err)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if r := p.Restarts(); r != tc.restarts {
				t.Errorf("Restarts = %d, want %d", r, tc.restarts)
			}
		})
	}
}

func TestEnvOverridesHost(t *testing.T) {
	const key = "RLIF_TEST_ENV_VALUE"
	t.Setenv(key, "1")
	tests := []struct {
		name string
		env  []string
		want float64
	}{
		{"inherits the host's", nil, 1},
		{"Config.Env overrides the host's", []string{key + "=2"}, 2},
		{"the last entry of Config.Env wins", []string{key + "=2", key + "=3"}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(map[string]any{"mode": "env", "marker": key})
			cfg.Env = tc.env
			p := start(t, cfg)
			got, err := p.Score(context.Background(), makeGroups(1, 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			if got[0][0].Value != tc.want {
				t.Errorf("the plugin saw $%s = %v, want %v", key, got[0][0].Value, tc.want)
			}
		})
	}
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// readPid reads the pid a wrapper script wrote.
// The wrapper writes the pid after starting the child, and the child may finish the
// plugin handshake first: wait for a complete line rather than reading once.
func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wrapper wrote no pid within 10 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gone reports whether process pid has ended within a short wait (a zombie not yet
// reaped by its parent, the test process, counts as ended).
func gone(pid int) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// bounded runs f and fails the test if it has not returned within limit: a hang, not
// a slow machine (the limits are many times what the call needs).
func bounded(t *testing.T, what string, limit time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s did not return within %v", what, limit)
	}
}

// TestWrapperScripts runs real plugins behind shell wrappers that leave processes
// behind them: every wait on the plugin must still end, and nothing the wrapper
// started may outlive the plugin.
func TestWrapperScripts(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	plugin := bins["testplugin"]
	py, err := absPath("testdata/misbehave.py")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    string
		mode    string
		python  bool
		wantErr host.Kind // 0: Score succeeds
	}{
		// The background child inherits stdout and stderr and keeps them open after the
		// plugin has exited: go-plugin's Kill waits for them to close.
		{"child keeps stderr open", fmt.Sprintf("sleep 300 &\necho $! > %q\nexec %q \"$@\"\n", pidFile, plugin), "ok", false, 0},
		// No exec: the shell stays the plugin's parent, and killing the shell alone
		// leaves the hung plugin holding the pipes.
		{"no exec, plugin hangs", fmt.Sprintf("%q \"$@\" &\necho $! > %q\nwait\n", plugin, pidFile), "hang", false, host.KindTimeout},
		{"no exec, python plugin hangs", fmt.Sprintf("python3 %q \"$@\" &\necho $! > %q\nwait\n", py, pidFile), "hang", true, host.KindTimeout},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.python {
				needPython(t)
			}
			os.Remove(pidFile)
			wrapper := writeScript(t, filepath.Join(dir, fmt.Sprintf("wrapper-%d", i)), tc.body)
			cfg := host.Config{Reward: "wrapped", Path: wrapper, Args: map[string]any{"mode": tc.mode}, Timeout: 2 * time.Second, Retries: -1}
			p := start(t, cfg)
			child := readPid(t, pidFile)
			var err error
			bounded(t, "Score", 30*time.Second, func() { _, err = p.Score(context.Background(), makeGroups(1, 2, 2)) })
			switch {
			case tc.wantErr == 0 && err != nil:
				t.Fatalf("Score: %v", err)
			case tc.wantErr != 0 && !errors.Is(err, &host.Error{Kind: tc.wantErr}):
				t.Fatalf("Score error = %v, want %v", err, tc.wantErr)
			}
			bounded(t, "Close", 30*time.Second, func() { p.Close() })
			if !gone(child) {
				syscall.Kill(child, syscall.SIGKILL)
				t.Errorf("the wrapper's child %d outlived the plugin", child)
			}
		})
	}
}

// TestSocketsRemoved kills a plugin with SIGKILL (it cannot remove its own Unix socket)
// and checks that nothing the plugin processes made stays in $TMPDIR once the host is
// closed.
func TestSocketsRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	p, err := host.Start(context.Background(), testConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Score(context.Background(), makeGroups(1, 2, 2)); err != nil {
		t.Fatalf("Score after the kill (the host restarts the plugin): %v", err)
	}
	if p.Restarts() != 1 {
		t.Errorf("Restarts = %d, want 1", p.Restarts())
	}
	p.Close()
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in $TMPDIR: %s", e.Name())
	}
}

func TestParseSHA256(t *testing.T) {
	const hexSum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	tests := []struct {
		pin string
		ok  bool
	}{
		{hexSum, true},
		{strings.ToUpper(hexSum), true},
		{"sha256:" + hexSum, true},
		{"SHA256:" + hexSum, true},
		{" sha256:" + hexSum + "\n", true},
		{"", false},
		{"sha256:", false},
		{hexSum[:62], false},
		{hexSum + "00", false},
		{"md5:" + hexSum, false},
		{strings.Replace(hexSum, "9", "g", 1), false},
	}
	for _, tc := range tests {
		sum, err := host.ParseSHA256(tc.pin)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSHA256(%q) error = %v, want ok %v", tc.pin, err, tc.ok)
			continue
		}
		if tc.ok && fmt.Sprintf("%x", sum) != hexSum {
			t.Errorf("ParseSHA256(%q) = %x", tc.pin, sum)
		}
		if !tc.ok && !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("ParseSHA256(%q) error %q does not say what a pin is", tc.pin, err)
		}
	}
}

func FuzzParseSHA256(f *testing.F) {
	f.Add("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
	f.Add("xyz")
	f.Fuzz(func(t *testing.T, pin string) {
		sum, err := host.ParseSHA256(pin)
		if err == nil && len(sum) != 32 {
			t.Fatalf("ParseSHA256(%q) = %d bytes", pin, len(sum))
		}
	})
}

// TestSetKilledWithContext cancels the context a set was started with, as rlif train
// does on a second Ctrl-C before it exits without Close: the plugins' process groups
// (a wrapper's child included) die and their socket directories go. The kill runs on a
// goroutine of its own after cancel returns (context.AfterFunc); it removes a plugin's
// directory before it kills the plugin, so once every process is seen gone (a bounded
// wait), every directory is gone too.
func TestSetKilledWithContext(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	pidFile := filepath.Join(dir, "child.pid")
	wrapper := writeScript(t, filepath.Join(dir, "wrapper"), fmt.Sprintf("sleep 300 &\necho $! > %q\nexec %q \"$@\"\n", pidFile, bins["testplugin"]))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := host.StartAll(ctx, []host.Config{{Reward: "wrapped", Path: wrapper}, testConfig(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	child := readPid(t, pidFile)
	pids := []int{set.Plugins[0].Pid(), set.Plugins[1].Pid(), child}
	cancel()
	for _, pid := range pids {
		if !gone(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d outlived the set's context", pid)
		}
	}
	left, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("left behind in $TMPDIR: %s", e.Name())
	}
	if _, err := set.Plugins[1].Score(ctx, makeGroups(1, 1, 1)); err == nil {
		t.Error("Score after the kill succeeded")
	}
}
