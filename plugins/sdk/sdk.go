// Package sdk serves a reward function as an rlif reward plugin. A whole plugin is a
// main package that calls Serve:
//
//	func main() { sdk.Serve(myReward{}) }
//
// where myReward implements rewards.Func. The rlif host starts the executable (as
// `plugin = "path"` in a `[[rewards]]` table), checks its health, passes it the table's
// `args`, and calls it once per training step with every group of completions.
//
// Run by hand (not by rlif), a plugin prints a short notice and exits with status 1.
package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rlif/rlif/plugins"
	"github.com/rlif/rlif/plugins/internal/wire"
	"github.com/rlif/rlif/plugins/proto/rewardpb"
	"github.com/rlif/rlif/rewards"
)

// Arg describes one argument of a plugin, for `rlif rewards` and for users.
type Arg struct {
	Name        string
	Type        string // "string", "number", "int", "bool", "list" or "table"
	Default     any    // nil when there is none
	Description string
	Required    bool
}

// Plugin is a configurable reward: New builds the reward function from the `args` table
// of its `[[rewards]]` entry (an empty map when there is none).
type Plugin struct {
	Name    string
	Summary string
	Args    []Arg
	New     func(args map[string]any) (rewards.Func, error)
}

// Configurable is implemented by a reward passed to Serve that takes arguments: the host
// calls Configure with the `args` table before any Score.
type Configurable interface {
	Configure(args map[string]any) error
}

// Option sets a detail of a plugin served by Serve.
type Option func(*Plugin)

// Name sets the plugin's name (default: the executable's base name).
func Name(name string) Option { return func(p *Plugin) { p.Name = name } }

// Summary sets the plugin's one-line description.
func Summary(s string) Option { return func(p *Plugin) { p.Summary = s } }

// Args declares the plugin's arguments.
func Args(args ...Arg) Option { return func(p *Plugin) { p.Args = append(p.Args, args...) } }

// Serve serves f as a reward plugin and returns when the host stops it. If f implements
// Configurable, Configure receives the reward's `args` table; otherwise any non-empty
// args are an error.
func Serve(f rewards.Func, opts ...Option) {
	ServePlugin(pluginOf(f, opts...))
}

// pluginOf describes f as a Plugin whose New configures f (if it is Configurable).
func pluginOf(f rewards.Func, opts ...Option) Plugin {
	p := Plugin{Name: defaultName()}
	for _, o := range opts {
		o(&p)
	}
	name := p.Name
	p.New = func(args map[string]any) (rewards.Func, error) {
		if c, ok := f.(Configurable); ok {
			if err := c.Configure(args); err != nil {
				return nil, err
			}
		} else if len(args) > 0 {
			return nil, fmt.Errorf("reward %q takes no arguments", name)
		}
		return f, nil
	}
	return p
}

// ServePlugin serves a configurable reward and returns when the host stops it.
func ServePlugin(p Plugin) {
	if p.Name == "" {
		p.Name = defaultName()
	}
	if os.Getenv(plugins.MagicCookieKey) != plugins.MagicCookieValue {
		fmt.Fprintf(os.Stderr, "%s is an rlif reward plugin: name it in a [[rewards]] table "+
			"(plugin = \"path\"), and rlif runs it; it is not meant to be run by hand.\n", p.Name)
		os.Exit(1)
	}
	go exitWithParent(os.Getppid())
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: plugins.Handshake(),
		Plugins: goplugin.PluginSet{
			plugins.PluginKey: &wire.GRPCPlugin{Impl: NewServer(p)},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			// A training batch can exceed gRPC's default 4 MiB message limit.
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(math.MaxInt32), grpc.MaxSendMsgSize(math.MaxInt32))...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       p.Name,
			Level:      hclog.Warn,
			Output:     os.Stderr,
			JSONFormat: true, // the host parses these lines and logs them at their level
		}),
	})
}

// exitWithParent ends the plugin when the host dies without stopping it (its parent
// changes), so that no plugin outlives its run.
func exitWithParent(parent int) {
	for range time.Tick(time.Second) {
		if os.Getppid() != parent {
			os.Exit(1)
		}
	}
}

func defaultName() string {
	exe, err := os.Executable()
	if err != nil {
		return "plugin"
	}
	return filepath.Base(exe)
}

// server implements the protocol's service for one Plugin.
type server struct {
	rewardpb.UnimplementedRewardPluginServer
	p Plugin

	mu sync.Mutex
	f  rewards.Func // nil until configured
}

// NewServer returns the gRPC service implementation that serves p. Serve and
// ServePlugin use it; it is exported for plugins that run their own go-plugin server.
func NewServer(p Plugin) rewardpb.RewardPluginServer { return &server{p: p} }

func (s *server) Info(context.Context, *rewardpb.InfoRequest) (*rewardpb.InfoResponse, error) {
	resp := &rewardpb.InfoResponse{
		Name:            s.p.Name,
		ProtocolVersion: plugins.ProtocolVersion,
		Summary:         s.p.Summary,
	}
	for _, a := range s.p.Args {
		pa := &rewardpb.Arg{Name: a.Name, Type: a.Type, Description: a.Description, Required: a.Required}
		if a.Default != nil {
			b, err := json.Marshal(a.Default)
			if err != nil {
				return nil, status.Errorf(codes.Internal, "arg %q: default value: %v", a.Name, err)
			}
			pa.DefaultJson = string(b)
		}
		resp.Args = append(resp.Args, pa)
	}
	return resp, nil
}

func (s *server) Configure(_ context.Context, req *rewardpb.ConfigureRequest) (resp *rewardpb.ConfigureResponse, err error) {
	args := map[string]any{}
	if j := req.GetArgsJson(); j != "" {
		if err := json.Unmarshal([]byte(j), &args); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "args are not a JSON object: %v", err)
		}
	}
	defer recoverPanic(&err)
	f, err := s.build(args)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.f = f
	s.mu.Unlock()
	return &rewardpb.ConfigureResponse{}, nil
}

func (s *server) build(args map[string]any) (rewards.Func, error) {
	if s.p.New == nil {
		return nil, status.Error(codes.FailedPrecondition, "plugin has no reward function (Plugin.New is nil)")
	}
	f, err := s.p.New(args)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "configure: %v", err)
	}
	if f == nil {
		return nil, status.Error(codes.Internal, "configure: New returned a nil reward")
	}
	return f, nil
}

func (s *server) Score(ctx context.Context, req *rewardpb.ScoreRequest) (resp *rewardpb.ScoreResponse, err error) {
	defer recoverPanic(&err)
	s.mu.Lock()
	f := s.f
	s.mu.Unlock()
	if f == nil { // never configured: the reward's defaults
		if f, err = s.build(map[string]any{}); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.f = f
		s.mu.Unlock()
	}
	groups := wire.GroupsFromProto(req)
	scores, err := f.Score(ctx, groups)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return wire.ScoresToProto(scores), nil
}

// recoverPanic turns a panic in the reward's code into an error the host reports, with
// the stack on stderr (which the host keeps for its error message).
func recoverPanic(err *error) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "panic: %v\n%s", r, debug.Stack())
		*err = status.Errorf(codes.Internal, "panic: %v", r)
	}
}
