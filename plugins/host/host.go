// Package host runs reward plugins: it starts each plugin's process once (through
// github.com/hashicorp/go-plugin over gRPC), checks its health, configures it, and
// exposes it as a rewards.Func, so that the trainer does not care whether a reward runs
// in or out of process.
//
// A plugin that crashes, or hangs until its call times out, is stopped, restarted and
// the call retried (once by default). Every wait on a plugin process is bounded: the
// plugin leads its own process group, which is killed when it does not stop in time,
// so that a helper process that keeps its pipes open cannot hold the host. Each plugin
// process gets a private directory for its socket, removed when it stops. Every
// failure is an *Error that names the reward, its executable, and what the plugin did.
// A returned score is always finite, and there is always one per completion.
package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/plugins"
	"github.com/rlif/rlif/plugins/internal/wire"
	"github.com/rlif/rlif/plugins/proto/rewardpb"
	"github.com/rlif/rlif/rewards"
)

// Defaults of Config.
const (
	DefaultTimeout      = time.Minute
	DefaultStartTimeout = 30 * time.Second
	DefaultRetries      = 1
)

// Config says how to run one reward plugin.
type Config struct {
	// Reward is the reward's name in the run's config; errors name it.
	Reward string
	// Builtin marks a built-in reward served by the rlif executable (see BuiltinConfig);
	// errors then say "built-in reward" rather than "reward plugin".
	Builtin bool
	// Path is the plugin's executable, and Argv the arguments it is started with.
	Path string
	Argv []string
	// Env holds "KEY=value" entries added to the plugin's environment, which otherwise
	// is the host's; an entry here overrides the host's variable of the same name.
	Env []string
	// Args are passed to the plugin's Configure (the `args` table of its `[[rewards]]`).
	Args map[string]any
	// SHA256, when set (64 hex digits, optionally prefixed "sha256:", see ParseSHA256),
	// pins the executable: a file with another checksum is not started (go-plugin's
	// SecureConfig).
	SHA256 string
	// Timeout bounds each Score call (default DefaultTimeout); StartTimeout bounds the
	// start, health check, Info and Configure (default DefaultStartTimeout).
	Timeout      time.Duration
	StartTimeout time.Duration
	// Retries is how many times a plugin that crashed or hung during a call is restarted
	// and the call retried (default DefaultRetries when 0; negative: never).
	Retries int
	// DisableMTLS turns automatic mutual TLS (go-plugin's AutoMTLS exchange) off for this
	// plugin. It is on by default; the Go and Python SDKs both support it, a plugin
	// written against go-plugin's protocol by hand may not.
	DisableMTLS bool
	// Log receives go-plugin's log lines at LogLevel and above (default os.Stderr, Warn).
	Log      io.Writer
	LogLevel hclog.Level
	// Stderr, if set, receives a copy of the plugin's stderr. The host keeps its last
	// lines in any case, for the error message when the plugin fails.
	Stderr io.Writer
}

// Arg describes one argument of a plugin, as the plugin declares it.
type Arg struct {
	Name        string
	Type        string
	DefaultJSON string // "" when there is none
	Description string
	Required    bool
}

// Info is what a plugin says about itself.
type Info struct {
	Name            string
	ProtocolVersion int
	Summary         string
	Args            []Arg
}

// Plugin is a running reward plugin. It implements rewards.Func; its methods are safe
// for concurrent use (calls to one plugin are serialized).
type Plugin struct {
	cfg    Config
	argsJS string
	stderr *tail
	sink   *logSink
	log    hclog.Logger

	mu      sync.Mutex
	client  *goplugin.Client
	proc    *exec.Cmd // the running process (its pid leads its process group)
	sockDir string    // the running process's private socket directory
	rpc     rewardpb.RewardPluginClient
	info    Info
	starts  int
	closed  bool

	// live is the running process, for Kill, which must not wait for p.mu (a call in
	// flight holds it).
	live struct {
		sync.Mutex
		pid     int
		sockDir string
		killed  bool
	}
}

var _ rewards.Func = (*Plugin)(nil)

// BuiltinConfig returns the Config of a built-in reward: the rlif executable exe (empty
// for os.Executable()) serves it with `rlif plugin serve NAME`.
func BuiltinConfig(exe, name string) (Config, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return Config{}, fmt.Errorf("built-in reward %q: locate the rlif executable: %w", name, err)
		}
	}
	return Config{Reward: name, Builtin: true, Path: exe, Argv: []string{"plugin", "serve", name}}, nil
}

// Start starts the plugin's process, checks its health and protocol version, and
// configures it with cfg.Args.
func Start(ctx context.Context, cfg Config) (*Plugin, error) {
	if cfg.Reward == "" {
		cfg.Reward = cfg.Path
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	} else if cfg.Retries < 0 {
		cfg.Retries = 0
	}
	if cfg.Log == nil {
		cfg.Log = os.Stderr
	}
	if cfg.LogLevel == hclog.NoLevel {
		cfg.LogLevel = hclog.Warn
	}
	args := cfg.Args
	if args == nil {
		args = map[string]any{}
	}
	js, err := json.Marshal(args)
	if err != nil {
		return nil, &Error{Reward: cfg.Reward, Path: cfg.Path, Op: "start", Kind: KindConfigure,
			Msg: "args cannot be sent as JSON", Err: err}
	}
	p := &Plugin{cfg: cfg, argsJS: string(js), stderr: newTail(20)}
	p.sink = &logSink{out: cfg.Log, exits: newTail(8)}
	p.log = hclog.New(&hclog.LoggerOptions{
		Name:   "rlif-plugin." + cfg.Reward,
		Level:  cfg.LogLevel,
		Output: p.sink,
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Info returns what the plugin said about itself when it started.
func (p *Plugin) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Restarts returns how many times the plugin's process was started again after a crash
// or a hang.
func (p *Plugin) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.starts-1, 0)
}

// Pid returns the process id of the plugin's current process, 0 when none runs.
func (p *Plugin) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.client == nil {
		return 0
	}
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Close stops the plugin's process. It is safe to call more than once.
func (p *Plugin) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.stopLocked(false)
	return nil
}

func (p *Plugin) errorf(op string, kind Kind, err error, format string, a ...any) *Error {
	return &Error{Reward: p.cfg.Reward, Builtin: p.cfg.Builtin, Path: p.cfg.Path, Op: op, Kind: kind, Msg: fmt.Sprintf(format, a...), Err: err}
}

// checkExecutable gives the clear error for a missing or non-executable file, before
// go-plugin's less specific one.
func (p *Plugin) checkExecutable() error {
	path := p.cfg.Path
	if path == "" {
		return p.errorf("start", KindNotFound, nil, "no executable given")
	}
	if !strings.ContainsRune(path, os.PathSeparator) {
		found, err := exec.LookPath(path)
		if err != nil {
			return p.errorf("start", KindNotFound, nil, "executable not found in $PATH")
		}
		path = found
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p.errorf("start", KindNotFound, nil, "executable not found")
	case err != nil:
		return p.errorf("start", KindNotFound, err, "cannot stat the executable")
	case fi.IsDir():
		return p.errorf("start", KindNotExecutable, nil, "is a directory, not an executable")
	case fi.Mode()&0o111 == 0:
		return p.errorf("start", KindNotExecutable, nil, "file is not executable (mode %v; chmod +x it)", fi.Mode().Perm())
	}
	return nil
}

// cannotExec says why the system refused to run the file at path, which exists: the
// kernel runs a binary of its own format, or a script whose first line is #! and names
// an interpreter. An exec of anything else fails with "exec format error", and a #! line
// whose interpreter is missing with "no such file or directory", of a file that is there.
// It returns "" when the refusal is neither.
func cannotExec(path string, err error) string {
	if !errors.Is(err, syscall.ENOEXEC) && !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	f, oerr := os.Open(path)
	if oerr != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	line, _, _ := bytes.Cut(head[:n], []byte("\n"))
	if interp, ok := bytes.CutPrefix(line, []byte("#!")); ok {
		fields := strings.Fields(string(interp))
		if len(fields) == 0 {
			return "its #! line names no interpreter: write one, e.g. #!/usr/bin/env python3"
		}
		if _, serr := os.Stat(fields[0]); serr != nil {
			return fmt.Sprintf("its #! line names the interpreter %s, which does not exist: install it, or correct the line (e.g. #!/usr/bin/env python3)", fields[0])
		}
		return ""
	}
	if !errors.Is(err, syscall.ENOEXEC) {
		return ""
	}
	return "is not executable as a program (exec format error): a script needs a #! line first, e.g. #!/usr/bin/env python3; or give a compiled binary"
}

func (p *Plugin) secureConfig() (*goplugin.SecureConfig, error) {
	if p.cfg.SHA256 == "" {
		return nil, nil
	}
	sum, err := ParseSHA256(p.cfg.SHA256)
	if err != nil {
		return nil, p.errorf("start", KindChecksum, nil, "%v", err)
	}
	return &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// ParseSHA256 parses an executable's sha256 pin: 64 hexadecimal digits (either case),
// optionally prefixed "sha256:" as `sha256sum`-style tools and registries print it.
// It is the one parser of a pin; config validation and the host both use it.
func ParseSHA256(pin string) ([]byte, error) {
	digits := strings.TrimSpace(pin)
	if len(digits) >= len("sha256:") && strings.EqualFold(digits[:len("sha256:")], "sha256:") {
		digits = digits[len("sha256:"):]
	}
	sum, err := hex.DecodeString(digits)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 pin %q is not 64 hex digits (optionally prefixed \"sha256:\")", pin)
	}
	return sum, nil
}

// environ returns the plugin process's whole environment: the host's, then Config.Env
// (so that it overrides the host's: exec.Cmd keeps the last value of a repeated key),
// then what the host itself must set. go-plugin's SkipHostEnv is set, since go-plugin
// would otherwise append the host's environment after these and undo the overrides.
func (p *Plugin) environ(sockDir, certPEM string) []string {
	env := append(os.Environ(), p.cfg.Env...)
	env = append(env, goplugin.EnvUnixSocketDir+"="+sockDir)
	if certPEM != "" {
		env = append(env, "PLUGIN_CLIENT_CERT="+certPEM)
	}
	return env
}

// fileSHA256 returns the hex sha256 of a file, for the checksum error message.
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable"
	}
	return hex.EncodeToString(h.Sum(nil))
}

// withStderr adds the plugin's last stderr lines to an error.
func (p *Plugin) withStderr(e *Error) *Error {
	e.Stderr = p.stderr.last(6)
	return e
}

// startLocked starts the process and configures the plugin. p.mu is held.
func (p *Plugin) startLocked(ctx context.Context) error {
	if p.closed {
		return p.errorf("start", KindStart, nil, "plugin was closed")
	}
	p.live.Lock()
	killed := p.live.killed
	p.live.Unlock()
	if killed {
		return p.errorf("start", KindStart, nil, "plugin was killed")
	}
	if err := p.checkExecutable(); err != nil {
		return err
	}
	sc, err := p.secureConfig()
	if err != nil {
		return err
	}
	p.stderr.reset()
	p.sink.exits.reset()
	var stderr io.Writer = p.stderr
	if p.cfg.Stderr != nil {
		stderr = io.MultiWriter(p.stderr, p.cfg.Stderr)
	}
	var tlsConfig *tls.Config
	var certPEM string
	if !p.cfg.DisableMTLS {
		if tlsConfig, certPEM, err = clientTLS(); err != nil {
			return p.errorf("start", KindStart, err, "cannot set up mTLS")
		}
	}
	// A Go plugin listens on a Unix socket in $PLUGIN_UNIX_SOCKET_DIR (else in $TMPDIR,
	// where a plugin that is killed leaves it behind): give each process its own
	// directory, removed when the process stops.
	sockDir, err := os.MkdirTemp("", "rlif-plugin-")
	if err != nil {
		return p.errorf("start", KindStart, err, "cannot make a directory for its socket")
	}
	cmd := exec.Command(p.cfg.Path, p.cfg.Argv...)
	ownProcessGroup(cmd)
	cmd.Env = p.environ(sockDir, certPEM)
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake(),
		Plugins:          goplugin.PluginSet{plugins.PluginKey: &wire.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		SecureConfig:     sc,
		TLSConfig:        tlsConfig, // automatic mTLS, see clientTLS
		StartTimeout:     p.cfg.StartTimeout,
		SkipHostEnv:      true, // cmd.Env is the whole environment, see environ
		Logger:           p.log,
		Stderr:           stderr,
		// A Go plugin's os.Stderr and os.Stdout are forwarded over gRPC after the
		// handshake; keep them with the rest of its stderr.
		SyncStderr: stderr,
		SyncStdout: stderr,
	})
	fail := func(e *Error) error {
		p.stopProcess(client, cmd, sockDir, true)
		return e
	}
	rpcc, err := client.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			p.stopProcess(client, cmd, sockDir, true)
			return p.errorf("start", KindChecksum, nil,
				"executable does not match its sha256 pin (pinned %s, file has %s)", strings.ToLower(p.cfg.SHA256), fileSHA256(p.cfg.Path))
		}
		if why := cannotExec(cmd.Path, err); why != "" {
			p.stopProcess(client, cmd, sockDir, true)
			return p.errorf("start", KindNotExecutable, nil, "%s", why)
		}
		died := exited(client, time.Second)
		// Waits (bounded) for the process, so that its exit status and stderr are in.
		p.stopProcess(client, cmd, sockDir, true)
		msg := "did not start: " + handshakeProblem(err)
		if st := p.sink.exitStatus(); st != "" && died {
			msg += " (" + st + ")"
		}
		return p.withStderr(p.errorf("start", KindStart, nil, "%s", msg))
	}
	gc, ok := rpcc.(*goplugin.GRPCClient)
	if !ok {
		return fail(p.errorf("start", KindStart, nil, "plugin did not negotiate gRPC"))
	}
	sctx, cancel := context.WithTimeout(ctx, p.cfg.StartTimeout)
	defer cancel()
	hc, err := grpc_health_v1.NewHealthClient(gc.Conn).Check(sctx, &grpc_health_v1.HealthCheckRequest{Service: goplugin.GRPCServiceName})
	if err != nil {
		hint := ""
		if !p.cfg.DisableMTLS {
			hint = " (a plugin that does not support automatic mTLS needs it disabled)"
		}
		return fail(p.withStderr(p.errorf("start", KindStart, err, "health check failed%s", hint)))
	}
	if hc.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		return fail(p.errorf("start", KindStart, nil, "health check says %v, not SERVING", hc.GetStatus()))
	}
	raw, err := rpcc.Dispense(plugins.PluginKey)
	if err != nil {
		return fail(p.errorf("start", KindStart, err, "cannot dispense the reward service"))
	}
	rc := raw.(rewardpb.RewardPluginClient)
	info, err := rc.Info(sctx, &rewardpb.InfoRequest{})
	if err != nil {
		return fail(p.callError("Info", err, sctx, ctx, client))
	}
	if info.GetProtocolVersion() != plugins.ProtocolVersion {
		return fail(p.errorf("Info", KindProtocol, nil, "plugin speaks protocol version %d, the host speaks %d",
			info.GetProtocolVersion(), plugins.ProtocolVersion))
	}
	if _, err := rc.Configure(sctx, &rewardpb.ConfigureRequest{ArgsJson: p.argsJS}); err != nil {
		if status.Code(err) == codes.InvalidArgument || status.Code(err) == codes.Unknown {
			return fail(p.errorf("Configure", KindConfigure, nil, "rejected its args %s: %s", p.argsJS, status.Convert(err).Message()))
		}
		return fail(p.callError("Configure", err, sctx, ctx, client))
	}
	p.live.Lock()
	killed = p.live.killed
	if !killed {
		p.live.pid, p.live.sockDir = cmd.Process.Pid, sockDir
	}
	p.live.Unlock()
	if killed {
		return fail(p.errorf("start", KindStart, nil, "plugin was killed"))
	}
	p.client, p.rpc, p.proc, p.sockDir = client, rc, cmd, sockDir
	p.starts++
	p.info = Info{Name: info.GetName(), ProtocolVersion: int(info.GetProtocolVersion()), Summary: info.GetSummary()}
	for _, a := range info.GetArgs() {
		p.info.Args = append(p.info.Args, Arg{Name: a.GetName(), Type: a.GetType(), DefaultJSON: a.GetDefaultJson(),
			Description: a.GetDescription(), Required: a.GetRequired()})
	}
	return nil
}

// handshakeProblem says in one line what go-plugin's (long) start error means.
func handshakeProblem(err error) string {
	msg := err.Error()
	const unrecognized = "Unrecognized remote plugin message: "
	if i := strings.Index(msg, unrecognized); i >= 0 {
		line, _, _ := strings.Cut(msg[i+len(unrecognized):], "\n")
		if strings.TrimSpace(line) == "" {
			return "it exited, or closed stdout, before printing go-plugin's handshake line"
		}
		return fmt.Sprintf("its first line on stdout, %q, is not go-plugin's handshake line", line)
	}
	if strings.Contains(msg, "timeout while waiting for plugin to start") {
		return "no handshake line on stdout within the start timeout"
	}
	first, _, _ := strings.Cut(msg, "\n")
	return first
}

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

// callError classifies a failed call: cancelled by the caller, timed out (hang),
// crashed, or an error the plugin returned.
func (p *Plugin) callError(op string, err error, callCtx, parent context.Context, client *goplugin.Client) *Error {
	if parent.Err() != nil {
		return p.errorf(op, KindFailed, parent.Err(), "%s was cancelled", op)
	}
	code := status.Code(err)
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) || code == codes.DeadlineExceeded {
		limit := p.cfg.Timeout
		if op != "Score" {
			limit = p.cfg.StartTimeout
		}
		return p.errorf(op, KindTimeout, nil, "hung: %s did not answer within %v; the plugin was stopped", op, limit)
	}
	if client.Exited() || code == codes.Unavailable || code == codes.Canceled {
		if exited(client, 2*time.Second) || code == codes.Unavailable {
			how := p.sink.exitStatus()
			if how == "" {
				how = "connection lost"
			}
			return p.withStderr(p.errorf(op, KindCrash, nil, "crashed during %s (%s)", op, how))
		}
	}
	return p.errorf(op, KindFailed, nil, "%s returned an error: %s", op, status.Convert(err).Message())
}

// Score sends the groups to the plugin and returns its scores, checked: one per
// completion, all finite. A crash or a hang (a call that outlives Config.Timeout)
// stops the plugin, restarts it and retries the call (Config.Retries times); after
// that the KindCrash or KindTimeout error is returned.
func (p *Plugin) Score(ctx context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	if len(groups) == 0 {
		return [][]rewards.Score{}, nil
	}
	req := wire.GroupsToProto(groups)
	p.mu.Lock()
	defer p.mu.Unlock()
	var failures []*Error
	for attempt := 0; ; attempt++ {
		if p.rpc == nil {
			if err := p.startLocked(ctx); err != nil {
				if n := len(failures); n > 0 {
					return nil, fmt.Errorf("restart after a %v (%s): %w", failures[n-1].Kind, failures[n-1].Msg, err)
				}
				return nil, err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
		resp, err := p.rpc.Score(cctx, req)
		if err == nil {
			cancel()
			return p.check(groups, resp)
		}
		e := p.callError("Score", err, cctx, ctx, p.client)
		cancel()
		retryable := e.Kind == KindCrash || e.Kind == KindTimeout
		if retryable {
			p.stopLocked(true)
		}
		if !retryable || attempt >= p.cfg.Retries || ctx.Err() != nil {
			if retryable && attempt > 0 {
				e.Msg += fmt.Sprintf(", again after %d restart(s)", attempt)
			}
			return nil, e
		}
		failures = append(failures, e)
		p.log.Warn("plugin failed during Score; restarting it and retrying the call", "failure", e.Kind.String(), "attempt", attempt+1)
	}
}

// check validates the shape and values of a score response.
func (p *Plugin) check(groups []rewards.Group, resp *rewardpb.ScoreResponse) ([][]rewards.Score, error) {
	if got := len(resp.GetGroups()); got != len(groups) {
		return nil, p.errorf("Score", KindBadCount, nil, "returned scores for %d groups, sent %d", got, len(groups))
	}
	out := wire.ScoresFromProto(resp)
	for i, gs := range out {
		if got, want := len(gs), len(groups[i].Completions); got != want {
			return nil, p.errorf("Score", KindBadCount, nil, "returned %d scores for group %d, which has %d completions", got, i, want)
		}
		for j, s := range gs {
			if s.Applicable && !num.Finite(s.Value) {
				return nil, p.errorf("Score", KindBadValue, nil, "returned %v for completion %d of group %d (scores must be finite, or not applicable)", s.Value, j, i)
			}
		}
	}
	return out, nil
}
