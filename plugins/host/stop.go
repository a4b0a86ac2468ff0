package host

// Stopping a plugin process: gracefully, or at once (Kill), and its socket directory with it.

import (
	"os"
	"os/exec"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
)

// stopLocked stops the running process: gracefully (go-plugin's shutdown call), or at
// once when hard is set (a hung or crashed plugin). p.mu is held.
func (p *Plugin) stopLocked(hard bool) {
	if p.client == nil {
		return
	}
	p.live.Lock()
	p.live.pid, p.live.sockDir = 0, ""
	p.live.Unlock()
	p.stopProcess(p.client, p.proc, p.sockDir, hard)
	p.client, p.rpc, p.proc, p.sockDir = nil, nil, nil, ""
}

// Kill kills the plugin's process group at once and removes its socket directory,
// without waiting for a call in flight (which then fails) or for go-plugin; the
// plugin is not started again. It is for a host that is about to exit (a second
// Ctrl-C), where Close would wait; Close is still safe to call after it.
//
// The socket directory goes first, then the process group: whoever sees the plugin's
// process gone (a test, a waiting parent) knows that its directory is gone too.
func (p *Plugin) Kill() {
	p.live.Lock()
	defer p.live.Unlock()
	p.live.killed = true
	if p.live.sockDir != "" {
		_ = os.RemoveAll(p.live.sockDir)
	}
	killProcessGroup(p.live.pid)
}

// How long stopping a plugin may wait: for a graceful exit (go-plugin's Kill itself
// waits 2 s before it kills the process), then for go-plugin to see the pipes close
// once the whole process group was killed.
const (
	gracefulStopWait = 3 * time.Second
	killedStopWait   = 2 * time.Second
)

// stopProcess stops a plugin process and everything in its process group, then removes
// its socket directory. go-plugin's Client.Kill waits, without a bound, until every
// holder of the plugin's stdout and stderr has closed them, which a wrapper script's
// child (or anything the plugin started) may never do; so Kill runs beside a timer,
// and the whole group is killed when it does not return in time. If the pipes are
// still open after that (a process that left the group), the host stops waiting.
func (p *Plugin) stopProcess(c *goplugin.Client, cmd *exec.Cmd, sockDir string, hard bool) {
	pid := 0
	if cmd != nil && cmd.Process != nil {
		pid = cmd.Process.Pid
	}
	if hard {
		killProcessGroup(pid)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Kill()
	}()
	select {
	case <-done:
	case <-time.After(gracefulStopWait):
		killProcessGroup(pid)
		select {
		case <-done:
		case <-time.After(killedStopWait):
			p.log.Warn("plugin's stdout or stderr is still held open by a process outside its process group; no longer waiting for it", "pid", pid)
		}
	}
	killProcessGroup(pid) // whatever the plugin left running in its group
	if sockDir != "" {
		_ = os.RemoveAll(sockDir)
	}
}

// exited reports whether the client's process has ended, waiting a little for the
// exit to be noticed after a broken connection.
func exited(c *goplugin.Client, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		if c.Exited() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
