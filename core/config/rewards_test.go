package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rlif/rlif/plugins/host"
	"github.com/rlif/rlif/rewards"
)

const pluginTOML = `
[data]
answer_field = "solution"

[[rewards]]
name = "accuracy"

[[rewards]]
name = "length"
plugin = "/opt/rewards/length"
sha256 = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
mtls = false
timeout_seconds = 5
weight = 0.25
env = { LENGTH_TARGET = "256", OMP_NUM_THREADS = "1" }
[rewards.args]
target = 256
`

// A [[rewards]] table holds both halves, the reward's Spec and its Deployment; they
// decode, validate, encode and decode again to the same run.
func TestRewardTables(t *testing.T) {
	r, err := Parse([]byte(pluginTOML))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ValidateRewards(); err != nil {
		t.Fatalf("the sha256: prefix (accepted by the host) is refused by the config: %v", err)
	}
	acc, length := r.Rewards[0], r.Rewards[1]
	if !acc.IsBuiltin() || length.IsBuiltin() {
		t.Fatalf("built-in: accuracy %v, length %v", acc.IsBuiltin(), length.IsBuiltin())
	}
	wantDeploy := host.Deployment{Plugin: "/opt/rewards/length", SHA256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		MTLS: length.MTLS, Env: map[string]string{"LENGTH_TARGET": "256", "OMP_NUM_THREADS": "1"}, TimeoutSeconds: 5}
	if length.MTLS == nil || *length.MTLS || !reflect.DeepEqual(length.Deployment, wantDeploy) {
		t.Errorf("deployment %+v, want %+v", length.Deployment, wantDeploy)
	}
	if length.EffectiveWeight() != 0.25 || length.Args["target"] != int64(256) {
		t.Errorf("spec %+v", length.Spec)
	}
	specs := r.RewardSpecs()
	if len(specs) != 2 || specs[1].Name != "length" || specs[1].EffectiveWeight() != 0.25 {
		t.Errorf("RewardSpecs = %+v", specs)
	}
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(back.Rewards, r.Rewards) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back.Rewards, r.Rewards)
	}
	// A reward's timeout is a limit, like [plugins]: a resumed run may change it.
	h1, _ := r.Hash()
	r.Rewards[1].TimeoutSeconds = 50
	if h2, _ := r.Hash(); h1 != h2 {
		t.Error("the config hash depends on a reward's timeout_seconds")
	}
	if r.Rewards[1].TimeoutSeconds != 50 {
		t.Error("Hash changed the run's rewards")
	}
}

func TestValidateRewards(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	f := false
	plugin := func(name string, d host.Deployment) Reward {
		if d.Plugin == "" {
			d.Plugin = "/bin/reward"
		}
		return Reward{Spec: rewards.Spec{Name: name}, Deployment: d}
	}
	tests := []struct {
		name string
		rw   Reward
		want string // "" when valid
	}{
		{"pinned plugin", plugin("p", host.Deployment{SHA256: sum}), ""},
		{"pin with prefix", plugin("p", host.Deployment{SHA256: "sha256:" + sum}), ""},
		{"upper-case pin", plugin("p", host.Deployment{SHA256: "SHA256:" + strings.ToUpper(sum)}), ""},
		{"short pin", plugin("p", host.Deployment{SHA256: "abcd"}), "64 hex digits"},
		{"non-hex pin", plugin("p", host.Deployment{SHA256: strings.Repeat("zz", 32)}), "64 hex digits"},
		{"pin on a built-in", Reward{Spec: rewards.Spec{Name: "accuracy"}, Deployment: host.Deployment{SHA256: sum}}, "only a plugin executable can be pinned"},
		{"mtls on a built-in", Reward{Spec: rewards.Spec{Name: "accuracy"}, Deployment: host.Deployment{MTLS: &f}}, "mtls"},
		{"blank plugin", plugin("p", host.Deployment{Plugin: "  "}), "plugin path is blank"},
		{"plugin with a built-in's name", plugin("self_certainty", host.Deployment{}), "cannot take the name of a built-in"},
		{"bad env name", plugin("p", host.Deployment{Env: map[string]string{"A=B": "1"}}), "env"},
		{"negative timeout", plugin("p", host.Deployment{TimeoutSeconds: -1}), "timeout_seconds"},
		{"unknown built-in", Reward{Spec: rewards.Spec{Name: "vibes"}}, "vibes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Default()
			r.Rewards = []Reward{tc.rw}
			err := r.ValidateRewards()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.rw.Name):
				t.Errorf("error %q does not name the reward", err)
			}
		})
	}
}

func TestPluginConfigs(t *testing.T) {
	r, err := Parse([]byte(pluginTOML + `
[[rewards]]
name = "relative"
plugin = "bin/relative"

[[rewards]]
name = "acc2"
plugin = "/opt/acc"
args = { field = "x" }

[plugins]
timeout_seconds = 30
restarts = 2
`))
	if err != nil {
		t.Fatal(err)
	}
	cfgs, err := r.PluginConfigs("/usr/bin/rlif")
	if err != nil {
		t.Fatal(err)
	}
	acc, length, rel, acc2 := cfgs[0], cfgs[1], cfgs[2], cfgs[3]
	if !acc.Builtin || acc.Path != "/usr/bin/rlif" || !reflect.DeepEqual(acc.Argv, []string{"plugin", "serve", "accuracy"}) {
		t.Errorf("built-in accuracy: %+v", acc)
	}
	// The accuracy reward reads the answer field the config names.
	if acc.Args["field"] != "solution" {
		t.Errorf("accuracy args %v, want field = data.answer_field", acc.Args)
	}
	if acc.Timeout != 30*time.Second || acc.Retries != 2 {
		t.Errorf("accuracy limits: timeout %v, retries %d", acc.Timeout, acc.Retries)
	}
	if length.Path != "/opt/rewards/length" || length.Timeout != 5*time.Second || !length.DisableMTLS || length.SHA256 == "" ||
		!reflect.DeepEqual(length.Env, []string{"LENGTH_TARGET=256", "OMP_NUM_THREADS=1"}) {
		t.Errorf("plugin length: %+v", length)
	}
	// A path is used as it is: config.Load makes a file's relative paths absolute.
	if rel.Path != "bin/relative" || rel.Timeout != 30*time.Second {
		t.Errorf("relative plugin: %+v", rel)
	}
	// A plugin's args are its own, whatever its name.
	if acc2.Args["field"] != "x" || len(acc2.Args) != 1 {
		t.Errorf("plugin args %v", acc2.Args)
	}
	if r.Rewards[0].Args != nil {
		t.Errorf("PluginConfigs changed the run's args: %v", r.Rewards[0].Args)
	}

	r.Plugins.Restarts = 0
	if cfgs, _ := r.PluginConfigs(""); cfgs[0].Retries >= 0 {
		t.Errorf("restarts = 0 gives host retries %d, want none (negative)", cfgs[0].Retries)
	}
}

func TestCheckRewardFields(t *testing.T) {
	has := func(fields ...string) func(string) bool {
		return func(f string) bool {
			for _, x := range fields {
				if x == f {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name    string
		rewards []Reward
		answer  string
		has     func(string) bool
		want    string
	}{
		{"accuracy with its field", []Reward{{Spec: rewards.Spec{Name: "accuracy"}}}, "answer", has("answer"), ""},
		{"accuracy without", []Reward{{Spec: rewards.Spec{Name: "accuracy"}}}, "answer", has("question"), `reward accuracy: data d.jsonl: no row has the "answer" field`},
		{"data.answer_field", []Reward{{Spec: rewards.Spec{Name: "accuracy"}}}, "solution", has("answer"), `"solution"`},
		{"args.field", []Reward{{Spec: rewards.Spec{Name: "accuracy", Args: map[string]any{"field": "gold"}}}}, "answer", has("answer"), `"gold"`},
		{"no reward reads an answer", []Reward{{Spec: rewards.Spec{Name: "self_certainty"}}}, "answer", has(), ""},
		{"a plugin named like it", []Reward{{Spec: rewards.Spec{Name: "acc"}, Deployment: host.Deployment{Plugin: "/x"}}}, "answer", has(), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Default()
			r.Rewards, r.Data.AnswerField = tc.rewards, tc.answer
			err := r.CheckRewardFields("d.jsonl", tc.has)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TTRL's vote group, the hybrid mode's gold field and EMPO's filter, as a config file
// gives them.
func TestVoteGroupAndFilter(t *testing.T) {
	const base = `
[sampling]
group_size = 4
parallel_sequences = 16
[advantage]
entropy_filter_max = 0.9
[data]
answer_field = "solution"
`
	tests := []struct {
		name   string
		toml   string
		vote   int
		answer string // the field the vote reward reads, "" for none
		err    string
	}{
		{"no vote_n: the training group votes", `
[[rewards]]
name = "plurality_vote"`, 4, "", ""},
		{"vote over 16, train on 4", `
[[rewards]]
name = "plurality_vote"
args = { vote_n = 16 }`, 16, "", ""},
		{"vote_n equal to group_size", `
[[rewards]]
name = "plurality_vote"
args = { vote_n = 4 }`, 4, "", ""},
		{"hybrid reads data.answer_field", `
[[rewards]]
name = "plurality_vote"
args = { mode = "hybrid", vote_n = 8 }`, 8, "solution", ""},
		{"hybrid with its own field", `
[[rewards]]
name = "plurality_vote"
args = { mode = "hybrid", field = "gold" }`, 4, "gold", ""},
		{"vote_n below group_size", `
[[rewards]]
name = "plurality_vote"
args = { vote_n = 3 }`, 0, "", "args.vote_n = 3: want >= sampling.group_size (4)"},
		{"vote_n beyond parallel_sequences", `
[[rewards]]
name = "plurality_vote"
args = { vote_n = 32 }`, 0, "", "args.vote_n = 32: want <= sampling.parallel_sequences (16)"},
		{"vote_n of 1", `
[[rewards]]
name = "plurality_vote"
args = { vote_n = 1 }`, 0, "", `argument "vote_n" = 1`},
		{"a plugin's vote_n is its own", `
[[rewards]]
name = "my_vote"
plugin = "/bin/vote"
args = { vote_n = 64 }`, 4, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Parse([]byte(base + tc.toml))
			if err != nil {
				t.Fatal(err)
			}
			if r.Advantage.EntropyFilterMax != 0.9 {
				t.Fatalf("advantage.entropy_filter_max = %v, want 0.9", r.Advantage.EntropyFilterMax)
			}
			err = r.ValidateRewards()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "plurality_vote") {
					t.Fatalf("error %v, want one naming plurality_vote and %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n := r.VoteSize(); n != tc.vote {
				t.Errorf("VoteSize = %d, want %d", n, tc.vote)
			}
			if f := r.AnswerField(r.Rewards[0]); f != tc.answer {
				t.Errorf("AnswerField = %q, want %q", f, tc.answer)
			}
			cfgs, err := r.PluginConfigs("/usr/bin/rlif")
			if err != nil {
				t.Fatal(err)
			}
			if tc.answer != "" && cfgs[0].Args["field"] != tc.answer {
				t.Errorf("the reward is served with args %v, want field = %q", cfgs[0].Args, tc.answer)
			}
		})
	}
	r, _ := Parse([]byte(base + "[[rewards]]\nname = \"self_certainty\"\n"))
	r.Advantage.EntropyFilterMax = -1
	if err := r.ValidateRewards(); err == nil || !strings.Contains(err.Error(), "advantage: entropy_filter_max = -1") {
		t.Errorf("negative entropy_filter_max: %v", err)
	}
}
