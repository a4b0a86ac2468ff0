package host

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Deployment says how a reward is run: the deployment half of a `[[rewards]]` table
// (what the reward is, its name, weight, args and normalization, is a rewards.Spec).
// Its TOML keys sit in the same table as the Spec's.
type Deployment struct {
	// Plugin is the path of a reward plugin executable; empty for a built-in reward,
	// which the rlif executable serves. A relative path is taken from the config's
	// directory.
	Plugin string `toml:"plugin" json:"plugin,omitempty"`
	// SHA256 optionally pins the plugin executable (see ParseSHA256).
	SHA256 string `toml:"sha256" json:"sha256,omitempty"`
	// MTLS, when false, turns off the automatic mutual TLS with a plugin process (for a
	// plugin written against go-plugin's protocol by hand without TLS); nil means on.
	MTLS *bool `toml:"mtls" json:"mtls,omitempty"`
	// Env sets variables in the plugin's environment, over the host's.
	Env map[string]string `toml:"env,omitempty" json:"env,omitempty"`
	// TimeoutSeconds bounds each scoring call of this reward; 0 means the run's
	// [plugins] timeout_seconds.
	TimeoutSeconds float64 `toml:"timeout_seconds,omitempty" json:"timeout_seconds,omitempty"`
}

// IsBuiltin reports whether the reward is a built-in one, served by the rlif executable.
func (d Deployment) IsBuiltin() bool { return d.Plugin == "" }

// Validate checks the deployment of reward name, in a one-line error that names the
// reward and the key.
func (d Deployment) Validate(name string) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("reward %s: %s", name, fmt.Sprintf(format, a...))
	}
	if d.Plugin != "" && strings.TrimSpace(d.Plugin) == "" {
		return fail("plugin path is blank")
	}
	if d.IsBuiltin() {
		switch {
		case d.SHA256 != "":
			return fail("sha256 is set but plugin is not: only a plugin executable can be pinned")
		case d.MTLS != nil:
			return fail("mtls is set but plugin is not: built-in rewards always use mutual TLS")
		}
	}
	if d.SHA256 != "" {
		if _, err := ParseSHA256(d.SHA256); err != nil {
			return fail("%v", err)
		}
	}
	for k := range d.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fail("env: %q is not a variable name", k)
		}
	}
	// (The upper bound keeps the time.Duration from overflowing: about 31 years.)
	if !(d.TimeoutSeconds >= 0 && d.TimeoutSeconds < 1e9) {
		return fail("timeout_seconds = %v: want a number of seconds > 0, or 0 for [plugins] timeout_seconds", d.TimeoutSeconds)
	}
	return nil
}

// Config returns how to run reward name, deployed as d, with args: a built-in is
// served by the rlif executable exe (empty: os.Executable()) as `rlif plugin serve
// NAME`; a plugin path is used as it is (a relative one from the working directory, a
// bare name looked up in $PATH: config.Load has made a config file's paths absolute).
// timeout is used when d has none.
func (d Deployment) Config(name string, args map[string]any, exe string, timeout time.Duration) (Config, error) {
	if err := d.Validate(name); err != nil {
		return Config{}, err
	}
	var cfg Config
	if d.IsBuiltin() {
		var err error
		if cfg, err = BuiltinConfig(exe, name); err != nil {
			return Config{}, err
		}
	} else {
		cfg = Config{Reward: name, Path: d.Plugin, SHA256: d.SHA256, DisableMTLS: d.MTLS != nil && !*d.MTLS}
	}
	cfg.Args = args
	cfg.Timeout = timeout
	if d.TimeoutSeconds > 0 {
		cfg.Timeout = time.Duration(d.TimeoutSeconds * float64(time.Second))
	}
	keys := make([]string, 0, len(d.Env))
	for k := range d.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cfg.Env = append(cfg.Env, k+"="+d.Env[k])
	}
	return cfg, nil
}
