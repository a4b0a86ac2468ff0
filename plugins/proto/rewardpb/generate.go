// Package rewardpb is the generated Go code of the rlif reward plugin protocol
// (plugins/proto/reward.proto), version 1.
package rewardpb

//go:generate ../gen.sh
