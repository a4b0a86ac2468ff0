package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Settings is what a run's checkpoints depend on (Hash's list of keys), flattened to
// "table.key" → the value as JSON text ("rewards[0].name" for arrays of tables). A
// checkpoint records it, so that a later rlif, whose configuration has keys this one
// lacked, can still tell whether the checkpoint was made with the same settings: a hash of
// the whole encoding changes with every key added to rlif.
type Settings map[string]string

// Settings flattens the run's weight-relevant settings.
func (r Run) Settings() (Settings, error) {
	b, err := r.weightSettings().Encode()
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if _, err := toml.Decode(string(b), &tree); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	s := Settings{}
	if err := s.flatten("", tree); err != nil {
		return nil, err
	}
	return s, nil
}

func (s Settings) flatten(prefix string, v any) error {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			if err := s.flatten(key, sub); err != nil {
				return err
			}
		}
		return nil
	case []map[string]any:
		for i, sub := range v {
			if err := s.flatten(fmt.Sprintf("%s[%d]", prefix, i), sub); err != nil {
				return err
			}
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("settings: %s: %w", prefix, err)
	}
	s[prefix] = string(b)
	return nil
}

// Differences lists, one line each and sorted, how the settings recorded by a checkpoint
// differ from s. A key only one side has (a key added to rlif, or removed from it, or one
// written only when set) differs only where that side's value is not this build's default:
// a key rlif added since the checkpoint was written, left at its default, keeps the
// behaviour the checkpoint was trained with.
func (s Settings) Differences(recorded Settings) []string {
	def, err := Default().Settings()
	if err != nil {
		return []string{err.Error()}
	}
	keys := map[string]bool{}
	for k := range s {
		keys[k] = true
	}
	for k := range recorded {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		now, inNow := s[k]
		then, inThen := recorded[k]
		switch {
		case inNow && inThen:
			if now != then {
				out = append(out, fmt.Sprintf("%s = %s in the checkpoint, %s now", k, then, now))
			}
		case inNow && now != def[k]:
			out = append(out, fmt.Sprintf("%s = %s now, unset in the checkpoint", k, now))
		case inThen && then != def[k]:
			out = append(out, fmt.Sprintf("%s = %s in the checkpoint, unset now", k, then))
		}
	}
	sort.Strings(out)
	return out
}

// Summary is the first few differences on one line.
func Summary(diffs []string, most int) string {
	if len(diffs) <= most {
		return strings.Join(diffs, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(diffs[:most], "; "), len(diffs)-most)
}
