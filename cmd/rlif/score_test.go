package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rlif/rlif/rewards/builtin"
)

func TestReadCompletionsGroups(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		groups  []int               // completions per group
		prompts []string            // prompt of each group
		fields  []map[string]string // fields of each group
		lines   [][3]int            // line, group, index of each completion
	}{
		{
			name: "by prompt, in first-seen order",
			input: `{"prompt":"a","text":"1","answer":"4"}
{"prompt":"b","text":"2","answer":7}

{"prompt":"a","text":"3","answer":"4"}
`,
			groups:  []int{2, 1},
			prompts: []string{"a", "b"},
			fields:  []map[string]string{{"answer": "4"}, {"answer": "7"}},
			lines:   [][3]int{{1, 0, 0}, {2, 1, 0}, {4, 0, 1}},
		},
		{
			name: "by group, which wins over prompt",
			input: `{"prompt":"a","group":"x","text":"1"}
{"prompt":"a","group":"y","text":"2","level":3.5}
{"prompt":"a","group":"x","text":"3","id":"q1"}
`,
			groups:  []int{2, 1},
			prompts: []string{"a", "a"},
			fields:  []map[string]string{{"id": "q1"}, {"level": "3.5"}},
			lines:   [][3]int{{1, 0, 0}, {2, 1, 0}, {3, 0, 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			groups, lines, _, err := readCompletions(strings.NewReader(tc.input), "in")
			if err != nil {
				t.Fatal(err)
			}
			if len(groups) != len(tc.groups) {
				t.Fatalf("%d groups, want %d", len(groups), len(tc.groups))
			}
			for i, g := range groups {
				if len(g.Completions) != tc.groups[i] || g.Prompt != tc.prompts[i] {
					t.Errorf("group %d: %d completions, prompt %q", i, len(g.Completions), g.Prompt)
				}
				if len(g.Fields) != len(tc.fields[i]) {
					t.Errorf("group %d: fields %v, want %v", i, g.Fields, tc.fields[i])
				}
				for k, v := range tc.fields[i] {
					if g.Fields[k] != v {
						t.Errorf("group %d: fields %v, want %v", i, g.Fields, tc.fields[i])
					}
				}
			}
			for i, l := range lines {
				if got := [3]int{l.line, l.group, l.index}; got != tc.lines[i] {
					t.Errorf("completion %d: (line, group, index) = %v, want %v", i, got, tc.lines[i])
				}
			}
		})
	}
}

func TestReadCompletionsErrors(t *testing.T) {
	tests := []struct {
		input, msg string
	}{
		{"[1,2]\n", "in:1: not a JSON object"},
		{`{"prompt":"a","text":1}` + "\n", "in:1: bad completion"},
		{`{"prompt":"a","text":"x","ok":true}` + "\n", `in:1: field "ok" is a boolean`},
		{`{"prompt":"a","text":"x","n":null}` + "\n", `in:1: field "n" is null`},
		{`{"prompt":"a","text":"x","tokens":[1],"self_certainty":[1,2]}` + "\n", "self_certainty has 2 values for 1 tokens"},
		{`{"prompt":"a","answer":"1"}` + "\n" + `{"prompt":"a","answer":"2"}` + "\n", `in:2: field "answer" is "2", but "1"`},
		{`{"prompt":"a","group":"g"}` + "\n" + `{"prompt":"b","group":"g"}` + "\n", "in:2: prompt differs"},
		{"  \n\n", "in: no completions"},
	}
	for _, tc := range tests {
		_, _, _, err := readCompletions(strings.NewReader(tc.input), "in")
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: got %v, want an error with %q", tc.input, err, tc.msg)
		}
	}
}

func TestRewardsCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"rewards"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, b := range builtin.Builtins() {
		if !strings.Contains(out, "\n"+b.Name+"\n") || !strings.Contains(out, b.Summary) {
			t.Errorf("output lacks %s or its summary", b.Name)
		}
		for _, a := range b.Args {
			if !strings.Contains(out, a.Name) || !strings.Contains(out, a.Doc) {
				t.Errorf("output lacks %s's arg %s", b.Name, a.Name)
			}
		}
	}
	if !strings.Contains(out, `default "answer"`) {
		t.Errorf("output lacks accuracy's default:\n%s", out)
	}
	if !strings.Contains(out, "[advantage] entropy_filter_max") {
		t.Errorf("output lacks EMPO's filter:\n%s", out)
	}
	// The hidden plugin command does not show in the help.
	stderr.Reset()
	run(context.Background(), []string{"help"}, &stdout, &stderr)
	if strings.Contains(stderr.String(), "plugin") || !strings.Contains(stderr.String(), "score") {
		t.Errorf("help:\n%s", stderr.String())
	}
}

func TestPluginCommandUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"plugin"}, 2, "usage: rlif plugin serve NAME"},
		{[]string{"plugin", "serve", "nope"}, 2, `no built-in reward "nope"`},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.msg)
		}
	}
}

// rlif score refuses what rlif train refuses: an accuracy reward whose gold answer
// field no completion has (it would score every one "not applicable").
func TestScoreChecksAnswerField(t *testing.T) {
	dir := t.TempDir()
	completions := filepath.Join(dir, "c.jsonl")
	lines := `{"prompt": "2+2?", "text": "\\boxed{4}", "answer": "4"}
{"prompt": "2+2?", "text": "\\boxed{5}", "answer": "4"}
`
	if err := os.WriteFile(completions, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, toml, want string
	}{
		{"no such field", "[[rewards]]\nname = \"accuracy\"\nargs = { field = \"gold\" }\n", `reward accuracy: data ` + completions + `: no row has the "gold" field`},
		{"data.answer_field", "[data]\nanswer_field = \"solution\"\n[[rewards]]\nname = \"accuracy\"\n", `no row has the "solution" field`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			config := filepath.Join(dir, fmt.Sprintf("run%d.toml", i))
			if err := os.WriteFile(config, []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"score", "--config", config, "--completions", completions}, &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q: want an error containing %q", code, stderr.String(), tc.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("scores printed: %s", stdout.String())
			}
		})
	}
}
