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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rlif/rlif/internal/num"
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
