package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rlif/rlif/plugins/internal/wire"
	"github.com/rlif/rlif/plugins/proto/rewardpb"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// constant scores every completion with v, and takes one argument, "v".
type constant struct{ v float64 }

func (c *constant) Configure(args map[string]any) error {
	if v, ok := args["v"]; ok {
		f, ok := v.(float64)
		if !ok {
			return errors.New("v must be a number")
		}
		c.v = f
	}
	return nil
}

func (c *constant) Score(_ context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		for range g.Completions {
			out[i] = append(out[i], rewards.Of(c.v))
		}
	}
	return out, nil
}

// failing fails every call: with an error, or a panic.
type failing struct{ panics bool }

func (f failing) Score(context.Context, []rewards.Group) ([][]rewards.Score, error) {
	if f.panics {
		panic("boom")
	}
	return nil, errors.New("no scores today")
}

// The server runs in real plugin processes in plugins/host's tests; these check its
// pieces in process: arguments, defaults, error codes and panics.
func TestServer(t *testing.T) {
	batch := wire.GroupsToProto([]rewards.Group{{Prompt: "p", Completions: make([]rollout.Completion, 2)}})
	tests := []struct {
		name      string
		f         rewards.Func
		args      string // "" skips Configure
		confCode  codes.Code
		scoreCode codes.Code
		want      float64
		msg       string
	}{
		{"configured", &constant{}, `{"v": 2.5}`, codes.OK, codes.OK, 2.5, ""},
		{"never configured: defaults", &constant{v: 1}, "", codes.OK, codes.OK, 1, ""},
		{"args rejected", &constant{}, `{"v": "x"}`, codes.InvalidArgument, codes.OK, 0, "v must be a number"},
		{"args not an object", &constant{}, `[1]`, codes.InvalidArgument, codes.OK, 0, "not a JSON object"},
		{"args to a reward without any", failing{}, `{"x": 1}`, codes.InvalidArgument, codes.OK, 0, "takes no arguments"},
		{"score error", failing{}, `{}`, codes.OK, codes.Unknown, 0, "no scores today"},
		{"score panic", failing{panics: true}, `{}`, codes.OK, codes.Internal, 0, "panic: boom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := NewServer(pluginOf(tc.f, Name("t")))
			ctx := context.Background()
			if tc.args != "" {
				_, err := s.Configure(ctx, &rewardpb.ConfigureRequest{ArgsJson: tc.args})
				if status.Code(err) != tc.confCode {
					t.Fatalf("Configure: %v, want code %v", err, tc.confCode)
				}
				if err != nil {
					if !strings.Contains(err.Error(), tc.msg) {
						t.Errorf("Configure error %q lacks %q", err, tc.msg)
					}
					return
				}
			}
			resp, err := s.Score(ctx, batch)
			if status.Code(err) != tc.scoreCode {
				t.Fatalf("Score: %v, want code %v", err, tc.scoreCode)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("Score error %q lacks %q", err, tc.msg)
				}
				return
			}
			got := wire.ScoresFromProto(resp)
			if len(got) != 1 || len(got[0]) != 2 || got[0][1] != rewards.Of(tc.want) {
				t.Errorf("scores %v, want two of %v", got, tc.want)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	s := NewServer(pluginOf(&constant{}, Name("const"), Summary("a constant"),
		Args(Arg{Name: "v", Type: "number", Default: 1.5, Description: "the score"}, Arg{Name: "w", Required: true})))
	info, err := s.Info(context.Background(), &rewardpb.InfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetName() != "const" || info.GetSummary() != "a constant" || info.GetProtocolVersion() != 1 {
		t.Errorf("Info = %v", info)
	}
	if a := info.GetArgs(); len(a) != 2 || a[0].GetDefaultJson() != "1.5" || a[1].GetDefaultJson() != "" || !a[1].GetRequired() {
		t.Errorf("Info.Args = %v", a)
	}
}
