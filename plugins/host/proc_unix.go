//go:build unix

package host

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup starts the plugin as the leader of a new process group, so that
// stopping it stops whatever it started too (a wrapper script's child, a helper
// process that inherited its stdout or stderr and would keep go-plugin's pipe readers
// waiting).
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killProcessGroup sends SIGKILL to the process group that the plugin process pid
// leads. A group that is already gone is not an error.
func killProcessGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
