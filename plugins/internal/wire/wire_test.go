package wire

import (
	"math"
	"reflect"
	"testing"

	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

func TestGroupsRoundTrip(t *testing.T) {
	full := rollout.Completion{Prompt: "p", PromptTokens: []int32{1, 2}, Text: "ab", FinishReason: rollout.FinishLength}
	full.Append(7, rollout.TokenStats{LogProb: -0.5, RawLogProb: -0.25, Entropy: 1.5, SelfCertainty: 2})
	full.Append(8, rollout.TokenStats{LogProb: -1e-300, RawLogProb: math.SmallestNonzeroFloat64, Entropy: 0, SelfCertainty: 4})
	full.Finalize()
	tests := []struct {
		name   string
		groups []rewards.Group
	}{
		{"empty batch", []rewards.Group{}},
		{"empty group", []rewards.Group{{Prompt: "q", Fields: map[string]string{}}}},
		{"text only", []rewards.Group{{Prompt: "q", Fields: map[string]string{"answer": "4"},
			Completions: []rollout.Completion{{Prompt: "q", Text: "x"}}}}},
		{"statistics", []rewards.Group{{Prompt: "p", Fields: map[string]string{"answer": "1/2", "level": "3"},
			Completions: []rollout.Completion{full, {Prompt: "p", Text: ""}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := GroupsFromProto(GroupsToProto(tc.groups))
			if len(got) != len(tc.groups) {
				t.Fatalf("%d groups, want %d", len(got), len(tc.groups))
			}
			for i := range got {
				want := tc.groups[i]
				g := got[i]
				if g.Prompt != want.Prompt || !reflect.DeepEqual(g.Fields, want.Fields) || len(g.Completions) != len(want.Completions) {
					t.Fatalf("group %d: got %+v, want %+v", i, g, want)
				}
				for j := range g.Completions {
					if !equalCompletion(g.Completions[j], want.Completions[j]) {
						t.Errorf("group %d completion %d:\n got %+v\nwant %+v", i, j, g.Completions[j], want.Completions[j])
					}
				}
			}
		})
	}
}

// equalCompletion compares completions, treating nil and empty slices alike (protobuf
// does not tell them apart).
func equalCompletion(a, b rollout.Completion) bool {
	norm := func(c rollout.Completion) rollout.Completion {
		if len(c.PromptTokens) == 0 {
			c.PromptTokens = nil
		}
		if len(c.Tokens) == 0 {
			c.Tokens = nil
		}
		for _, xs := range []*[]float64{&c.LogProb, &c.RawLogProb, &c.Entropy, &c.SelfCertainty} {
			if len(*xs) == 0 {
				*xs = nil
			}
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func TestScoresRoundTrip(t *testing.T) {
	tests := [][][]rewards.Score{
		{},
		{{}},
		{{rewards.Of(0), rewards.NA(), rewards.Of(-1.5)}, {rewards.Of(math.MaxFloat64)}},
	}
	for _, want := range tests {
		got := ScoresFromProto(ScoresToProto(want))
		if len(got) != len(want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		for i := range want {
			if len(got[i]) != len(want[i]) {
				t.Fatalf("got %v, want %v", got, want)
			}
			for j := range want[i] {
				if got[i][j] != want[i][j] {
					t.Errorf("got %v, want %v", got, want)
				}
			}
		}
	}
}
