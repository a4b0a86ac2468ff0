// Package builtin holds the reward functions that ship with rlif: the intrinsic
// rewards computed from the policy's own token statistics (self_certainty, entropy,
// trajectory_entropy, sequence_probability), the label-free answer rewards computed
// over a group (semantic_entropy, plurality_vote), and the external ones (format,
// accuracy). The rlif binary serves them out of
// process like any plugin; Builtins lists them with their arguments.
package builtin

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
	"github.com/rlif/rlif/rewards/answer"
)

// Arg describes one argument of a built-in reward (an entry of the `args` table of
// its `[[rewards]]` entry).
type Arg struct {
	Name    string
	Type    string // "string", "number", "int" or "bool"
	Default any    // nil when there is none
	Doc     string
}

// Builtin is a built-in reward: New builds the reward function from its `args`
// table (nil or empty for the defaults).
type Builtin struct {
	Name    string
	Summary string
	Args    []Arg
	New     func(args map[string]any) (rewards.Func, error)
}

// Names of the built-in rewards.
const (
	SelfCertainty       = "self_certainty"
	Entropy             = "entropy"
	TrajectoryEntropy   = "trajectory_entropy"
	SequenceProbability = "sequence_probability"
	SemanticEntropy     = "semantic_entropy"
	PluralityVote       = "plurality_vote"
	Format              = "format"
	Accuracy            = "accuracy"
)

// windowArgs are the arguments of the per-token rewards' token window.
var windowArgs = []Arg{
	{Name: "window", Type: "string", Default: WindowAll, Doc: `tokens the mean is over (RENT, arXiv 2505.22660): "all", "last" (the last k) or "answer" (the tokens that spell the final answer: inside the last \boxed{}, after ####, after "answer is", or the last number)`},
	{Name: "k", Type: "int", Doc: `how many last tokens, with window = "last"`},
}

// trajectoryArgs are trajectory_entropy's arguments.
var trajectoryArgs = []Arg{
	{Name: "aggregate", Type: "string", Default: AggregateMean, Doc: `"mean": the mean chosen-token log-prob (the URLVR code's trajectory_level_entropy); "sum": log π(y|x), the unnormalized estimate of −H`},
}

// VoteNArg is the plurality_vote argument that makes the trainer sample more
// completions than it trains on (config.Run.VoteSize reads it).
const VoteNArg = "vote_n"

// voteArgs are plurality_vote's arguments.
var voteArgs = []Arg{
	{Name: VoteNArg, Type: "int", Doc: "TTRL's vote group: the trainer samples vote_n completions per prompt, all vote (all rewards score them), and trains on the first sampling.group_size; without it the group votes"},
	{Name: "mode", Type: "string", Default: VoteMode, Doc: `"vote" (TTRL) or "hybrid" (the URLVR code's: the gold answer is the label where some completion matches it, the vote's label elsewhere; reads the gold field)`},
	{Name: "field", Type: "string", Default: answer.GoldField, Doc: `dataset field holding the gold answer, with mode = "hybrid"`},
}

// Builtins returns the built-in rewards, sorted by name. The slice is new on every
// call: callers may modify it.
func Builtins() []Builtin {
	bs := []Builtin{
		{
			Name:    SelfCertainty,
			Summary: "mean per-token self-certainty KL(U || p) of the completion (Intuitor), over a token window (RENT); n/a when the window is empty",
			Args:    windowArgs,
			New:     newTokenMean(SelfCertainty, 1, selfCertaintyStat),
		},
		{
			Name:    Entropy,
			Summary: "negative mean per-token entropy of the completion (entropy minimization; EM-RL's token-level reward), over a token window (RENT); n/a when the window is empty",
			Args:    windowArgs,
			New:     newTokenMean(Entropy, -1, entropyStat),
		},
		{
			Name:    TrajectoryEntropy,
			Summary: "EM-RL (arXiv 2505.15134): negative trajectory entropy estimated from the sampled completion, its mean (or summed) chosen-token log-probability; n/a when empty",
			Args:    trajectoryArgs,
			New:     newTrajectoryEntropy,
		},
		{
			Name:    SequenceProbability,
			Summary: "the completion's probability π(y|x) = exp(Σ chosen-token log-probs) (the URLVR estimator \"probability\"); n/a when empty",
			New:     noArgs(SequenceProbability, func() rewards.Func { return sequenceProbability{} }),
		},
		{
			Name:    SemanticEntropy,
			Summary: "EMPO: share of the group whose final answer is equivalent to this one; 0 without an answer or when all answers differ",
			New:     noArgs(SemanticEntropy, func() rewards.Func { return semanticEntropy{} }),
		},
		{
			Name:    PluralityVote,
			Summary: "TTRL (arXiv 2504.16084): 1 when the final answer is equivalent to the group's most frequent answer (a tie goes to the one that appeared first), else 0; n/a when no completion of the group has an answer",
			Args:    voteArgs,
			New:     newPluralityVote,
		},
		{
			Name:    Format,
			Summary: "1 when the completion has a layout (by default a final answer in \\boxed{}) or matches a regular expression, else 0",
			Args: []Arg{
				{Name: "pattern", Type: "string", Doc: "Go regular expression (RE2 syntax) searched in the completion text; instead of layout"},
				{Name: "layout", Type: "string", Default: LayoutBoxed, Doc: `preset layout: "boxed" (the last \boxed{…} or \fbox{…} holds an answer, as the answer rewards read it) or "think_answer" (<think>…</think> then <answer>…</answer>)`},
			},
			New: newFormat,
		},
		{
			Name:    Accuracy,
			Summary: "1 when the final answer is equivalent to the gold answer of a dataset field, else 0; n/a when the row has none",
			Args: []Arg{
				{Name: "field", Type: "string", Default: answer.GoldField, Doc: "dataset field holding the gold answer (a GSM8K solution ending in #### N, a MATH \\boxed{} or a plain answer)"},
			},
			New: newAccuracy,
		},
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].Name < bs[j].Name })
	return bs
}

// Lookup returns the built-in reward called name.
func Lookup(name string) (Builtin, bool) {
	for _, b := range Builtins() {
		if b.Name == name {
			return b, true
		}
	}
	return Builtin{}, false
}

// New builds the built-in reward called name with its args table.
func New(name string, args map[string]any) (rewards.Func, error) {
	b, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("no built-in reward %q (built-ins: %s)", name, strings.Join(names(), ", "))
	}
	f, err := b.New(args)
	if err != nil {
		return nil, fmt.Errorf("reward %s: %w", name, err)
	}
	return f, nil
}

func names() []string {
	var ns []string
	for _, b := range Builtins() {
		ns = append(ns, b.Name)
	}
	return ns
}

// noArgs wraps the constructor of a reward that takes no arguments.
func noArgs(name string, mk func() rewards.Func) func(map[string]any) (rewards.Func, error) {
	return func(args map[string]any) (rewards.Func, error) {
		if err := checkArgs(args, nil); err != nil {
			return nil, err
		}
		return mk(), nil
	}
}

// checkArgs returns an error naming the first (in sorted order) argument that is not
// among known.
func checkArgs(args map[string]any, known []Arg) error {
	var unknown []string
	for k := range args {
		found := false
		for _, a := range known {
			if a.Name == k {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	if len(known) == 0 {
		return fmt.Errorf("unknown argument %q: this reward takes no arguments", unknown[0])
	}
	var ks []string
	for _, a := range known {
		ks = append(ks, a.Name)
	}
	return fmt.Errorf("unknown argument %q (arguments: %s)", unknown[0], strings.Join(ks, ", "))
}

// stringArg returns args[name] as a string, def when it is absent.
func stringArg(args map[string]any, name, def string) (string, error) {
	v, ok := args[name]
	if !ok || v == nil {
		return def, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("argument %q: want a string, got %v (%T)", name, v, v)
	}
	return s, nil
}

// intArg returns args[name] as an int, def when it is absent. A TOML table gives
// integers as int64, the plugin protocol's JSON as float64: both are read, a number
// with a fraction is not.
func intArg(args map[string]any, name string, def int) (int, error) {
	v, ok := args[name]
	if !ok || v == nil {
		return def, nil
	}
	switch x := v.(type) {
	case int:
		return x, nil
	case int64:
		return int(x), nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<31 {
			return int(x), nil
		}
	}
	return 0, fmt.Errorf("argument %q: want a whole number, got %v (%T)", name, v, v)
}

// newTokenMean returns the constructor of a per-token reward (sign × the mean of stat
// over a token window).
func newTokenMean(name string, sign float64, stat func(*rollout.Completion) []float64) func(map[string]any) (rewards.Func, error) {
	return func(args map[string]any) (rewards.Func, error) {
		if err := checkArgs(args, windowArgs); err != nil {
			return nil, err
		}
		kind, err := stringArg(args, "window", WindowAll)
		if err != nil {
			return nil, err
		}
		k, err := intArg(args, "k", 0)
		if err != nil {
			return nil, err
		}
		switch {
		case kind != WindowAll && kind != WindowLast && kind != WindowAnswer:
			return nil, fmt.Errorf("argument %q: unknown window %q (want %q, %q or %q)", "window", kind, WindowAll, WindowLast, WindowAnswer)
		case kind == WindowLast && k < 1:
			return nil, fmt.Errorf("argument %q = %d: window %q needs k >= 1 tokens", "k", k, WindowLast)
		case kind != WindowLast && args["k"] != nil:
			return nil, fmt.Errorf("argument %q is for window %q; window is %q", "k", WindowLast, kind)
		}
		return tokenMean{name: name, sign: sign, stat: stat, window: tokenWindow{kind: kind, k: k}}, nil
	}
}

func newTrajectoryEntropy(args map[string]any) (rewards.Func, error) {
	if err := checkArgs(args, trajectoryArgs); err != nil {
		return nil, err
	}
	agg, err := stringArg(args, "aggregate", AggregateMean)
	if err != nil {
		return nil, err
	}
	if agg != AggregateMean && agg != AggregateSum {
		return nil, fmt.Errorf("argument %q: unknown aggregate %q (want %q or %q)", "aggregate", agg, AggregateMean, AggregateSum)
	}
	return trajectoryEntropy{mean: agg == AggregateMean}, nil
}

// VoteSize returns the vote group that a plurality_vote spec's args ask for: its vote_n,
// or 0 when it sets none. The error names a vote_n that is not a whole number >= 2.
func VoteSize(args map[string]any) (int, error) {
	n, err := intArg(args, VoteNArg, 0)
	if err != nil {
		return 0, err
	}
	if args[VoteNArg] != nil && n < 2 {
		return 0, fmt.Errorf("argument %q = %d: a vote group needs at least 2 completions", VoteNArg, n)
	}
	return n, nil
}

func newPluralityVote(args map[string]any) (rewards.Func, error) {
	if err := checkArgs(args, voteArgs); err != nil {
		return nil, err
	}
	if _, err := VoteSize(args); err != nil {
		return nil, err
	}
	mode, err := stringArg(args, "mode", VoteMode)
	if err != nil {
		return nil, err
	}
	field, err := stringArg(args, "field", answer.GoldField)
	if err != nil {
		return nil, err
	}
	switch {
	case mode != VoteMode && mode != HybridMode:
		return nil, fmt.Errorf("argument %q: unknown mode %q (want %q or %q)", "mode", mode, VoteMode, HybridMode)
	case field == "":
		return nil, fmt.Errorf("argument %q: empty field name", "field")
	case mode != HybridMode && args["field"] != nil:
		return nil, fmt.Errorf("argument %q is read in mode %q; mode is %q", "field", HybridMode, mode)
	}
	return pluralityVote{hybrid: mode == HybridMode, field: field}, nil
}

// ValidateSpec checks a `[[rewards]]` entry that names a built-in: the spec itself
// (rewards.Spec.Validate), that the built-in exists, and that it accepts the args.
// (A plugin's spec is checked by Validate alone: its arguments are the plugin's.)
func ValidateSpec(s rewards.Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b, ok := Lookup(s.Name)
	if !ok {
		return fmt.Errorf("reward %s: no built-in reward of that name and no plugin given (built-ins: %s)", s.Name, strings.Join(names(), ", "))
	}
	if _, err := b.New(s.Args); err != nil {
		return fmt.Errorf("reward %s: %w", s.Name, err)
	}
	return nil
}
