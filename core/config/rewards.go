package config

import (
	"fmt"
	"time"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/builtin"
)

// Reward is one `[[rewards]]` table: what the reward is (rewards.Spec: name, weight,
// args, normalize) and how it is run (host.Deployment: plugin, sha256, mtls, env,
// timeout_seconds). Both halves' keys sit in the one table.
type Reward struct {
	rewards.Spec
	host.Deployment
}

// RewardSpecs returns what the run's rewards are, in config order (for the advantages,
// the metrics and the logs, which do not care how a reward is deployed).
func (r Run) RewardSpecs() []rewards.Spec {
	specs := make([]rewards.Spec, len(r.Rewards))
	for i, rw := range r.Rewards {
		specs[i] = rw.Spec
	}
	return specs
}

// ValidateRewards checks the [[rewards]] tables, the [plugins] limits and the
// [advantage] mix: everything that scoring needs, for `rlif train` (through Validate)
// and `rlif score` alike.
func (r Run) ValidateRewards() error {
	if !(r.Plugins.TimeoutSeconds > 0) {
		return fmt.Errorf("plugins.timeout_seconds = %v: want > 0", r.Plugins.TimeoutSeconds)
	}
	if r.Plugins.Restarts < 0 {
		return fmt.Errorf("plugins.restarts = %d: want >= 0", r.Plugins.Restarts)
	}
	if len(r.Rewards) == 0 {
		return fmt.Errorf("rewards: at least one [[rewards]] table (or --rewards) is required")
	}
	if err := rewards.ValidateSpecs(r.RewardSpecs()); err != nil {
		return fmt.Errorf("rewards: %w", err)
	}
	for _, rw := range r.Rewards {
		if err := rw.Deployment.Validate(rw.Name); err != nil {
			return fmt.Errorf("rewards: %w", err)
		}
		_, isBuiltinName := builtin.Lookup(rw.Name)
		switch {
		case rw.IsBuiltin():
			if err := builtin.ValidateSpec(rw.Spec); err != nil {
				return fmt.Errorf("rewards: %w", err)
			}
		case isBuiltinName:
			// A reward's name keys its metrics and says what it is (the intuitor mix
			// finds the built-in self_certainty by name).
			return fmt.Errorf("rewards: reward %s: a plugin cannot take the name of a built-in reward; name it differently", rw.Name)
		}
	}
	if err := r.Advantage.Validate(r.RewardSpecs()); err != nil {
		return fmt.Errorf("advantage: %w", err)
	}
	if n := r.VoteSize(); n != r.Sampling.GroupSize {
		switch s := r.Sampling; {
		case n < s.GroupSize:
			return fmt.Errorf("rewards: reward %s: args.%s = %d: want >= sampling.group_size (%d): the vote group holds the training group", builtin.PluralityVote, builtin.VoteNArg, n, s.GroupSize)
		case n > s.ParallelSequences:
			return fmt.Errorf("rewards: reward %s: args.%s = %d: want <= sampling.parallel_sequences (%d): a vote group is decoded together; raise parallel_sequences", builtin.PluralityVote, builtin.VoteNArg, n, s.ParallelSequences)
		}
	}
	return nil
}

// VoteSize returns how many completions the trainer samples per prompt: the built-in
// plurality_vote's args.vote_n when it sets one (TTRL's vote over more samples than it
// trains on), else sampling.group_size. Every reward scores all of them (they all
// vote); the advantages and the learner take the first group_size. Its args are
// assumed valid (ValidateRewards).
func (r Run) VoteSize() int {
	for _, rw := range r.Rewards {
		if rw.IsBuiltin() && rw.Name == builtin.PluralityVote {
			if n, err := builtin.VoteSize(rw.Args); err == nil && n > 0 {
				return n
			}
		}
	}
	return r.Sampling.GroupSize
}

// AnswerField returns the dataset field that reward rw reads a gold answer from, ""
// when it reads none: the built-in accuracy reward, and plurality_vote in its hybrid
// mode, read their `field` arg, or else the run's data.answer_field.
func (r Run) AnswerField(rw Reward) string {
	readsGold := rw.Name == builtin.Accuracy || rw.Name == builtin.PluralityVote && rw.Args["mode"] == builtin.HybridMode
	if !rw.IsBuiltin() || !readsGold {
		return ""
	}
	if f, ok := rw.Args["field"].(string); ok && f != "" {
		return f
	}
	return r.Data.AnswerField
}

// CheckRewardFields checks that the data holds what the rewards read: a gold answer
// field that no row has would make the accuracy reward score every completion "not
// applicable". has reports whether any row has a non-empty value of a field; source
// names the data in the error. `rlif train` and `rlif score` both call it.
func (r Run) CheckRewardFields(source string, has func(field string) bool) error {
	for _, rw := range r.Rewards {
		if f := r.AnswerField(rw); f != "" && !has(f) {
			return fmt.Errorf("reward %s: data %s: no row has the %q field (set data.answer_field, or the reward's args.field)", rw.Name, source, f)
		}
	}
	return nil
}

// CheckRewardData is CheckRewardFields for the rows of a data file (`rlif train`): it
// also refuses a gold answer field that holds an object or an array
// (data.CheckAnswerField).
func (r Run) CheckRewardData(source string, rows []data.Row) error {
	if err := r.CheckRewardFields(source, func(field string) bool { return data.HasField(rows, field) }); err != nil {
		return err
	}
	for _, rw := range r.Rewards {
		if f := r.AnswerField(rw); f != "" {
			if err := data.CheckAnswerField(source, rows, f); err != nil {
				return fmt.Errorf("reward %s: %w", rw.Name, err)
			}
		}
	}
	return nil
}

// PluginConfigs returns how to run each reward of the run, in config order: built-ins
// served by the rlif executable exe (empty: this process's), plugins from their paths,
// each with the [plugins] limits unless its own
// table sets a timeout. It is the one place that turns a run's rewards into plugin
// configurations.
func (r Run) PluginConfigs(exe string) ([]host.Config, error) {
	if err := r.ValidateRewards(); err != nil {
		return nil, err
	}
	timeout := time.Duration(r.Plugins.TimeoutSeconds * float64(time.Second))
	cfgs := make([]host.Config, len(r.Rewards))
	for i, rw := range r.Rewards {
		args := rw.Args
		if f := r.AnswerField(rw); f != "" {
			// The rewards that read a gold answer read the field the config names.
			args = make(map[string]any, len(rw.Args)+1)
			for k, v := range rw.Args {
				args[k] = v
			}
			args["field"] = f
		}
		c, err := rw.Deployment.Config(rw.Name, args, exe, timeout)
		if err != nil {
			return nil, fmt.Errorf("rewards: %w", err)
		}
		c.Retries = r.Plugins.Restarts
		if c.Retries == 0 {
			c.Retries = -1 // host.Config: 0 is the default, negative is none
		}
		cfgs[i] = c
	}
	return cfgs, nil
}
