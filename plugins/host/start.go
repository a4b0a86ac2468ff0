package host

// Starting a plugin process: its environment, the go-plugin handshake, mTLS.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/rlif/rlif/plugins"
	"github.com/rlif/rlif/plugins/internal/wire"
	"github.com/rlif/rlif/plugins/proto/rewardpb"
)

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
