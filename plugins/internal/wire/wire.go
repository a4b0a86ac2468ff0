// Package wire converts between rlif's reward types and the protocol's messages, and
// adapts the generated gRPC service to go-plugin. The host and the Go SDK share it.
package wire

import (
	"context"
	"unicode/utf8"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/rlif/rlif/plugins/proto/rewardpb"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// GRPCPlugin is the go-plugin plugin of a reward: on the plugin side it registers Impl,
// on the host side it hands out a rewardpb.RewardPluginClient.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is the implementation a plugin process serves (nil on the host side).
	Impl rewardpb.RewardPluginServer
}

// GRPCServer registers the reward service on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	rewardpb.RegisterRewardPluginServer(s, p.Impl)
	return nil
}

// GRPCClient returns the reward service's client on the host's connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return rewardpb.NewRewardPluginClient(c), nil
}

// GroupsToProto converts groups to a score request. Protobuf strings must be valid
// UTF-8: texts, prompts and fields that are not (a Completion a caller built from raw
// bytes) are made valid by rollout.ValidText, the sampler's own rule.
func GroupsToProto(groups []rewards.Group) *rewardpb.ScoreRequest {
	req := &rewardpb.ScoreRequest{Groups: make([]*rewardpb.Group, len(groups))}
	for i, g := range groups {
		pg := &rewardpb.Group{
			Prompt:      rollout.ValidText(g.Prompt),
			Fields:      validFields(g.Fields),
			Completions: make([]*rewardpb.Completion, len(g.Completions)),
		}
		for j := range g.Completions {
			c := &g.Completions[j]
			pg.Completions[j] = &rewardpb.Completion{
				Text:          rollout.ValidText(c.Text),
				Tokens:        c.Tokens,
				FinishReason:  c.FinishReason,
				Logprob:       c.LogProb,
				RawLogprob:    c.RawLogProb,
				Entropy:       c.Entropy,
				SelfCertainty: c.SelfCertainty,
				PromptTokens:  c.PromptTokens,
				TokenEnds:     c.TokenEnds,
			}
		}
		req.Groups[i] = pg
	}
	return req
}

// validFields returns fields with valid UTF-8 keys and values: fields itself when they
// are, a copy otherwise.
func validFields(fields map[string]string) map[string]string {
	valid := true
	for k, v := range fields {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			valid = false
			break
		}
	}
	if valid {
		return fields
	}
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		out[rollout.ValidText(k)] = rollout.ValidText(v)
	}
	return out
}

// GroupsFromProto converts a score request to groups. Prompt and Group of each
// completion are filled from its group; SelfCertaintyMean is recomputed.
func GroupsFromProto(req *rewardpb.ScoreRequest) []rewards.Group {
	groups := make([]rewards.Group, len(req.GetGroups()))
	for i, pg := range req.GetGroups() {
		g := rewards.Group{
			Prompt:      pg.GetPrompt(),
			Fields:      pg.GetFields(),
			Completions: make([]rollout.Completion, len(pg.GetCompletions())),
		}
		if g.Fields == nil {
			g.Fields = map[string]string{}
		}
		for j, pc := range pg.GetCompletions() {
			c := rollout.Completion{
				Prompt:        pg.GetPrompt(),
				PromptTokens:  pc.GetPromptTokens(),
				Tokens:        pc.GetTokens(),
				Text:          pc.GetText(),
				FinishReason:  pc.GetFinishReason(),
				LogProb:       pc.GetLogprob(),
				RawLogProb:    pc.GetRawLogprob(),
				Entropy:       pc.GetEntropy(),
				SelfCertainty: pc.GetSelfCertainty(),
				TokenEnds:     pc.GetTokenEnds(),
			}
			c.Finalize()
			g.Completions[j] = c
		}
		groups[i] = g
	}
	return groups
}

// ScoresToProto converts scores to a score response.
func ScoresToProto(scores [][]rewards.Score) *rewardpb.ScoreResponse {
	resp := &rewardpb.ScoreResponse{Groups: make([]*rewardpb.GroupScores, len(scores))}
	for i, gs := range scores {
		pgs := &rewardpb.GroupScores{Scores: make([]*rewardpb.Score, len(gs))}
		for j, s := range gs {
			if s.Applicable {
				pgs.Scores[j] = &rewardpb.Score{Value: s.Value}
			} else {
				pgs.Scores[j] = &rewardpb.Score{NotApplicable: true}
			}
		}
		resp.Groups[i] = pgs
	}
	return resp
}

// ScoresFromProto converts a score response to scores, without checking its shape.
func ScoresFromProto(resp *rewardpb.ScoreResponse) [][]rewards.Score {
	out := make([][]rewards.Score, len(resp.GetGroups()))
	for i, pgs := range resp.GetGroups() {
		gs := make([]rewards.Score, len(pgs.GetScores()))
		for j, s := range pgs.GetScores() {
			if s.GetNotApplicable() {
				gs[j] = rewards.NA()
			} else {
				gs[j] = rewards.Of(s.GetValue())
			}
		}
		out[i] = gs
	}
	return out
}
