package host_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

func TestGoLengthExample(t *testing.T) {
	groups := makeGroups(1, 3, 6) // 6 tokens each
	groups[0].Completions[2].FinishReason = rollout.FinishLength
	tests := []struct {
		name string
		args map[string]any
		want []rewards.Score
	}{
		{"defaults", nil, []rewards.Score{rewards.Of(0), rewards.Of(0), rewards.Of(-1)}},
		{"tight target", map[string]any{"target": 2, "per_token": 0.5, "truncated": -3},
			[]rewards.Score{rewards.Of(-2), rewards.Of(-2), rewards.Of(-3)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, host.Config{Reward: "length", Path: bins["go-length"], Args: tc.args})
			got, err := p.Score(context.Background(), groups)
			if err != nil {
				t.Fatal(err)
			}
			for j, w := range tc.want {
				if got[0][j] != w {
					t.Errorf("completion %d: got %+v, want %+v", j, got[0][j], w)
				}
			}
		})
	}
	_, err := host.Start(context.Background(), host.Config{Reward: "length", Path: bins["go-length"], Args: map[string]any{"tagret": 3}})
	if !errors.Is(err, &host.Error{Kind: host.KindConfigure}) || !strings.Contains(err.Error(), `unknown arg "tagret"`) {
		t.Errorf("misspelt arg: got %v", err)
	}
}

// TestRunByHand checks that a plugin started without the handshake cookie explains
// itself and exits with status 1, in both SDKs.
func TestRunByHand(t *testing.T) {
	py, err := absPath("../../examples/plugins/python-keyword/plugin.py")
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"go": bins["go-length"], "python": py} {
		t.Run(name, func(t *testing.T) {
			if name == "python" {
				needPython(t)
			}
			out, err := exec.Command(path).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1", err)
			}
			if !strings.Contains(string(out), "is an rlif reward plugin") {
				t.Errorf("output %q does not explain", out)
			}
		})
	}
}
