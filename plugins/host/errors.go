package host

import (
	"fmt"
	"strings"
)

// Kind says what went wrong with a plugin.
type Kind int

// The kinds of plugin failure. Each Error names the plugin and carries one of these.
const (
	KindNotFound      Kind = iota + 1 // the executable does not exist
	KindNotExecutable                 // the file exists but cannot be executed
	KindChecksum                      // the executable does not match its sha256 pin
	KindStart                         // the process did not start, handshake or pass the health check
	KindProtocol                      // the plugin speaks another protocol version
	KindConfigure                     // the plugin rejected its arguments
	KindCrash                         // the process died during a call (after the allowed restarts)
	KindTimeout                       // a call did not finish within the timeout (hang)
	KindFailed                        // the plugin answered a call with an error
	KindBadCount                      // the answer had the wrong number of groups or scores
	KindBadValue                      // a score was NaN or infinite
)

var kindNames = map[Kind]string{
	KindNotFound:      "not found",
	KindNotExecutable: "not executable",
	KindChecksum:      "checksum mismatch",
	KindStart:         "start failed",
	KindProtocol:      "protocol mismatch",
	KindConfigure:     "configure failed",
	KindCrash:         "crash",
	KindTimeout:       "timeout",
	KindFailed:        "call failed",
	KindBadCount:      "wrong number of scores",
	KindBadValue:      "bad score",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a plugin failure. Its message names the reward and its executable and says
// what the plugin did.
type Error struct {
	Reward  string // the reward's name in the config
	Builtin bool   // a built-in reward, served by the rlif executable at Path
	Path    string // the executable
	Op      string // "start", "Info", "Configure" or "Score"
	Kind    Kind
	Msg     string // what happened, in words
	Err     error  // the underlying error, if any
	// Stderr holds the plugin's last stderr lines, when they help (a crash, a failed start).
	Stderr []string
}

func (e *Error) Error() string {
	var s string
	if e.Builtin {
		s = fmt.Sprintf("built-in reward %q (served by %s): %s", e.Reward, e.Path, e.Msg)
	} else {
		s = fmt.Sprintf("reward plugin %q (%s): %s", e.Reward, e.Path, e.Msg)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if len(e.Stderr) > 0 {
		s += "; its last stderr lines: " + strings.Join(e.Stderr, " | ")
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error of the same Kind, so that
// errors.Is(err, &host.Error{Kind: host.KindTimeout}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Reward == "" && t.Path == ""
}
