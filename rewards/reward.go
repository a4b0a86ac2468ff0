// Package rewards defines what a reward function is and holds the built-in ones.
// A reward scores whole groups (all completions of one prompt) because several
// published rewards (semantic entropy, plurality vote) are defined over the group.
package rewards

import (
	"context"

	"github.com/rlif/rlif/policy/rollout"
)

// Group is the set of completions sampled from one prompt.
type Group struct {
	// Prompt is the user prompt text (before the chat template).
	Prompt string
	// Fields are the dataset row's other fields as strings (for example "answer").
	Fields map[string]string
	// Completions are the G sampled completions with their per-token statistics.
	Completions []rollout.Completion
}

// Texts returns the texts of the group's completions, in order.
func (g Group) Texts() []string {
	texts := make([]string, len(g.Completions))
	for j := range g.Completions {
		texts[j] = g.Completions[j].Text
	}
	return texts
}

// Score is one completion's reward, or "not applicable" (Applicable == false), which
// leaves the completion out of that reward's group statistics.
type Score struct {
	Value      float64
	Applicable bool
}

// Of returns an applicable score.
func Of(v float64) Score { return Score{Value: v, Applicable: true} }

// NA returns the "not applicable" score.
func NA() Score { return Score{} }

// Func is a reward function. Score returns, for every group, one Score per completion,
// in order.
type Func interface {
	Score(ctx context.Context, groups []Group) ([][]Score, error)
}
