// Package builtin holds the reward functions that ship with rlif: the intrinsic
// rewards computed from the policy's own token statistics (self_certainty, entropy),
// the label-free answer rewards computed over a group (semantic_entropy, plurality_vote),
// and the external ones (format, accuracy). The rlif binary serves them out of
// process like any plugin; Builtins lists them with their arguments.
package builtin

import (
	"fmt"
	"sort"
	"strings"

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
	SelfCertainty   = "self_certainty"
	Entropy         = "entropy"
	SemanticEntropy = "semantic_entropy"
	PluralityVote   = "plurality_vote"
	Format          = "format"
	Accuracy        = "accuracy"
)

// Builtins returns the built-in rewards, sorted by name. The slice is new on every
// call: callers may modify it.
func Builtins() []Builtin {
	bs := []Builtin{
		{
			Name:    SelfCertainty,
			Summary: "mean per-token self-certainty KL(U || p) of the completion (Intuitor); n/a when empty",
			New:     noArgs(SelfCertainty, func() rewards.Func { return tokenMean{name: SelfCertainty, sign: 1, stat: selfCertaintyStat} }),
		},
		{
			Name:    Entropy,
			Summary: "negative mean per-token entropy of the completion (entropy minimization); n/a when empty",
			New:     noArgs(Entropy, func() rewards.Func { return tokenMean{name: Entropy, sign: -1, stat: entropyStat} }),
		},
		{
			Name:    SemanticEntropy,
			Summary: "EMPO: share of the group whose final answer is equivalent to this one; 0 without an answer or when all answers differ",
			New:     noArgs(SemanticEntropy, func() rewards.Func { return semanticEntropy{} }),
		},
		{
			Name:    PluralityVote,
			Summary: "TTRL / GRPO-PV: 1 when the final answer is equivalent to the group's most frequent answer (a tie goes to the one that appeared first), else 0; n/a when no completion of the group has an answer",
			New:     noArgs(PluralityVote, func() rewards.Func { return pluralityVote{} }),
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
