package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/internal/num"
	"github.com/rlif/rlif/policy/rollout"
	"github.com/rlif/rlif/rewards"
)

// scoredLine is one completion read by `rlif score`, with where it sits.
type scoredLine struct {
	line  int // 1-based line number in the file
	group int // index into the groups
	index int // index of the completion within its group
}

// completionKeys are the JSON keys of rollout.Completion: the other keys of a line are
// the dataset fields.
var completionKeys = func() map[string]bool {
	keys := map[string]bool{}
	t := reflect.TypeOf(rollout.Completion{})
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			keys[name] = true
		}
	}
	return keys
}()

// readCompletions reads completions, one JSON object per line, in the format that
// `rlif sample --json` prints plus `prompt` and dataset fields (any other string or
// number keys). Lines with the same `group` (or, without one, the same `prompt`) form
// a group; groups keep the order of their first line. Blank lines are skipped.
func readCompletions(r io.Reader, name string) ([]rewards.Group, []scoredLine, []string, error) {
	var (
		groups []rewards.Group
		keys   []string // group key of each group
		lines  []scoredLine
		byKey  = map[string]int{}
	)
	add := func(n int, text []byte) error {
		c, fields, err := parseCompletionLine(text)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", name, n, err)
		}
		key := c.Group
		if key == "" {
			key = "prompt:" + c.Prompt
		} else {
			key = "group:" + key
		}
		gi, ok := byKey[key]
		if !ok {
			gi = len(groups)
			byKey[key] = gi
			groups = append(groups, rewards.Group{Prompt: c.Prompt, Fields: fields})
			keys = append(keys, key)
		} else {
			g := &groups[gi]
			if c.Prompt != g.Prompt {
				return fmt.Errorf("%s:%d: prompt differs from the first line of group %q", name, n, c.Group)
			}
			for k, v := range fields {
				if old, ok := g.Fields[k]; ok && old != v {
					return fmt.Errorf("%s:%d: field %q is %q, but %q on the group's first line", name, n, k, v, old)
				}
				g.Fields[k] = v
			}
		}
		lines = append(lines, scoredLine{line: n, group: gi, index: len(groups[gi].Completions)})
		groups[gi].Completions = append(groups[gi].Completions, c)
		return nil
	}
	var lineErr error // the error of a line, which names it; any other is the reader's
	if err := data.EachJSONLine(r, func(n int, text []byte) error { lineErr = add(n, text); return lineErr }); err != nil {
		if err == lineErr {
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(lines) == 0 {
		return nil, nil, nil, fmt.Errorf("%s: no completions", name)
	}
	return groups, lines, keys, nil
}

// parseCompletionLine decodes one line: the completion and its dataset fields.
func parseCompletionLine(text []byte) (rollout.Completion, map[string]string, error) {
	var c rollout.Completion
	raw, err := data.DecodeJSONObject(text)
	if err != nil {
		return c, nil, err
	}
	// The prompt and the completion's text are what every reward reads: a line without
	// one would be scored as an empty string.
	for _, k := range []string{"prompt", "text"} {
		if _, ok := raw[k]; !ok {
			return c, nil, fmt.Errorf("no %q: every line needs the prompt and the completion's text (the lines of rlif sample --json have both)", k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	if err := dec.Decode(&c); err != nil {
		return c, nil, fmt.Errorf("bad completion: %v", err)
	}
	fields := map[string]string{}
	for k, v := range raw {
		if completionKeys[k] {
			continue
		}
		var val any
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if err := d.Decode(&val); err != nil {
			return c, nil, fmt.Errorf("field %q: %v", k, err)
		}
		switch x := val.(type) {
		case string:
			fields[k] = x
		case json.Number:
			fields[k] = x.String()
		default:
			return c, nil, fmt.Errorf("field %q is %s; dataset fields must be strings or numbers", k, jsonKind(val))
		}
	}
	if err := checkStats(&c); err != nil {
		return c, nil, err
	}
	if len(c.SelfCertainty) > 0 {
		c.Finalize()
	}
	return c, fields, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}

// checkStats requires each per-token array to be absent or as long as tokens, and
// finite. (A hand-written line may give only text for text-based rewards.)
func checkStats(c *rollout.Completion) error {
	n := len(c.Tokens)
	for _, a := range []struct {
		name string
		xs   []float64
	}{{"logprob", c.LogProb}, {"raw_logprob", c.RawLogProb}, {"entropy", c.Entropy}, {"self_certainty", c.SelfCertainty}} {
		if len(a.xs) == 0 {
			continue
		}
		if len(a.xs) != n {
			return fmt.Errorf("%s has %d values for %d tokens", a.name, len(a.xs), n)
		}
		for i, x := range a.xs {
			if !num.Finite(x) {
				return fmt.Errorf("%s[%d] is not finite", a.name, i)
			}
		}
	}
	return nil
}
