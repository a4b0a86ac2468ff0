// Command go-length is a complete rlif reward plugin in Go: a length penalty. A
// completion scores 0 when its token count is at most `target`, and loses `per_token`
// for every token beyond; a completion cut off at the length limit scores
// `truncated` instead.
//
// Build it and name it in a run's config:
//
//	go build -o bin/go-length ./examples/plugins/go-length
//
//	[[rewards]]
//	name   = "length"
//	plugin = "bin/go-length"
//	weight = 0.2
//	args   = { target = 256, per_token = 0.01 }
package main

import (
	"context"
	"fmt"

	"github.com/rlif/rlif/plugins/sdk"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

type lengthPenalty struct {
	target    float64
	perToken  float64
	truncated float64
}

// Configure reads the `args` table; numbers arrive as float64.
func (r *lengthPenalty) Configure(args map[string]any) error {
	for k, v := range args {
		f, ok := v.(float64)
		if !ok {
			return fmt.Errorf("arg %q must be a number, got %v", k, v)
		}
		switch k {
		case "target":
			r.target = f
		case "per_token":
			r.perToken = f
		case "truncated":
			r.truncated = f
		default:
			return fmt.Errorf("unknown arg %q (known: target, per_token, truncated)", k)
		}
	}
	return nil
}

func (r *lengthPenalty) Score(_ context.Context, groups []rewards.Group) ([][]rewards.Score, error) {
	out := make([][]rewards.Score, len(groups))
	for i, g := range groups {
		out[i] = make([]rewards.Score, len(g.Completions))
		for j, c := range g.Completions {
			if c.FinishReason == rollout.FinishLength {
				out[i][j] = rewards.Of(r.truncated)
				continue
			}
			over := max(float64(len(c.Tokens))-r.target, 0)
			out[i][j] = rewards.Of(-r.perToken * over)
		}
	}
	return out, nil
}

func main() {
	sdk.Serve(&lengthPenalty{target: 256, perToken: 0.01, truncated: -1},
		sdk.Name("go-length"),
		sdk.Summary("length penalty: -per_token for each token beyond target; truncated completions score `truncated`"),
		sdk.Args(
			sdk.Arg{Name: "target", Type: "number", Default: 256, Description: "tokens allowed without penalty"},
			sdk.Arg{Name: "per_token", Type: "number", Default: 0.01, Description: "penalty per token beyond target"},
			sdk.Arg{Name: "truncated", Type: "number", Default: -1, Description: "score of a completion cut at the length limit"},
		))
}
