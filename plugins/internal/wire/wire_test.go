package wire

import (
	"math"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/rlif/rlif/plugins/proto/rewardpb"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

func TestGroupsRoundTrip(t *testing.T) {
	full := rollout.Completion{Prompt: "p", PromptTokens: []int32{1, 2}, Text: "ab", FinishReason: rollout.FinishLength}
	full.Append(7, rollout.TokenStats{LogProb: -0.5, RawLogProb: -0.25, Entropy: 1.5, SelfCertainty: 2})
	full.Append(8, rollout.TokenStats{LogProb: -1e-300, RawLogProb: math.SmallestNonzeroFloat64, Entropy: 0, SelfCertainty: 4})
	full.Finalize()
	full.TokenEnds = []int32{1, 2}
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
// does not tell them apart). SampledLogProb is the learner's, not on the wire.
func equalCompletion(a, b rollout.Completion) bool {
	norm := func(c rollout.Completion) rollout.Completion {
		c.SampledLogProb = nil
		if len(c.PromptTokens) == 0 {
			c.PromptTokens = nil
		}
		if len(c.Tokens) == 0 {
			c.Tokens = nil
		}
		if len(c.TokenEnds) == 0 {
			c.TokenEnds = nil
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

// A Completion whose bytes are not valid UTF-8 (a character cut by the token limit, a
// byte-fallback token), built by any Go caller, still crosses the wire: protobuf refuses
// such strings, so they arrive with U+FFFD in place of the invalid bytes.
func TestInvalidUTF8CrossesTheWire(t *testing.T) {
	groups := []rewards.Group{{
		Prompt: "prompt \xff",
		Fields: map[string]string{"answer": "4\xe6", "k\x80": "v"},
		Completions: []rollout.Completion{
			{Text: "cut at the limit: 数\xe6\x95"},
			{Text: "junk \xff\xfe bytes \xed\xa0\x80"},
			{Text: "valid 数"},
		},
	}}
	b, err := proto.Marshal(GroupsToProto(groups))
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	var req rewardpb.ScoreRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	got := GroupsFromProto(&req)[0]
	if want := rollout.ValidText(groups[0].Prompt); got.Prompt != want {
		t.Errorf("prompt %q, want %q", got.Prompt, want)
	}
	if want := map[string]string{"answer": "4\uFFFD", "k\uFFFD": "v"}; !reflect.DeepEqual(got.Fields, want) {
		t.Errorf("fields %q, want %q", got.Fields, want)
	}
	for j, c := range got.Completions {
		if want := rollout.ValidText(groups[0].Completions[j].Text); c.Text != want {
			t.Errorf("completion %d: text %q, want %q", j, c.Text, want)
		}
	}
	if got.Completions[2].Text != "valid 数" {
		t.Errorf("valid text changed to %q", got.Completions[2].Text)
	}
	// The caller's groups are not modified.
	if groups[0].Fields["answer"] != "4\xe6" || groups[0].Completions[0].Text != "cut at the limit: 数\xe6\x95" {
		t.Errorf("GroupsToProto modified its input: %+v", groups[0])
	}
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
