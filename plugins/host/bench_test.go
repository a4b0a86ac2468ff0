package host_test

import (
	"context"
	"testing"

	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// meanSelfCertainty is the in-process twin of the test plugin's stat = "self_certainty".
type meanSelfCertainty struct{}

func (meanSelfCertainty) Score(_ context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		for j, c := range g.Completions {
			out[i][j] = rewards.Of(rollout.Mean(c.SelfCertainty))
		}
	}
	return out, nil
}

// BenchmarkScore64x256 measures one Score call on 64 completions (8 groups of 8) of
// 256 tokens of statistics each: in process, and through a plugin process (Go SDK with
// and without mTLS, Python SDK with mTLS).
//
//	go test -run '^$' -bench Score64x256 ./plugins/host
func BenchmarkScore64x256(b *testing.B) {
	groups := makeGroups(8, 8, 256)
	run := func(b *testing.B, f rewards.Func) {
		b.Helper()
		ctx := context.Background()
		if _, err := f.Score(ctx, groups); err != nil { // warm up
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := f.Score(ctx, groups); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("in-process", func(b *testing.B) { run(b, meanSelfCertainty{}) })
	plugin := func(cfg host.Config) func(b *testing.B) {
		return func(b *testing.B) {
			p, err := host.Start(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			run(b, p)
		}
	}
	goCfg := host.Config{Reward: "bench", Path: bins["testplugin"], Args: map[string]any{"stat": "self_certainty"}}
	b.Run("go-plugin-mtls", plugin(goCfg))
	goCfg.DisableMTLS = true
	b.Run("go-plugin-plain", plugin(goCfg))
	pyCfg := host.Config{Reward: "bench-py", Args: map[string]any{"mode": "sc"}}
	if p, err := absPath("testdata/misbehave.py"); err == nil {
		pyCfg.Path = p
	}
	b.Run("python-plugin-mtls", plugin(pyCfg))
}
