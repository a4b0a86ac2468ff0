// Package plugins holds what the rlif host and its reward plugins agree on: the
// protocol version and go-plugin's handshake. The protocol itself is the gRPC
// service in plugins/proto/reward.proto (generated Go code in plugins/proto/rewardpb);
// plugins/host starts and calls plugins, plugins/sdk serves a reward from Go, and
// plugins/sdk/python/rlif_plugin serves one from Python.
package plugins

import goplugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the version of the reward plugin protocol. go-plugin's handshake
// carries it (as the app protocol version) and InfoResponse.protocol_version repeats it.
const ProtocolVersion = 1

// The handshake cookie: go-plugin passes MagicCookieKey=MagicCookieValue in the plugin's
// environment so that a plugin executable run by hand can tell it was not started by rlif.
const (
	MagicCookieKey   = "RLIF_REWARD_PLUGIN"
	MagicCookieValue = "9c1e0d2a-rlif-reward-v1"
)

// PluginKey is the name of the reward plugin in go-plugin's plugin set.
const PluginKey = "reward"

// Handshake returns go-plugin's handshake configuration for reward plugins.
func Handshake() goplugin.HandshakeConfig {
	return goplugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}
