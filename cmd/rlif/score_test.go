package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
		{"[1,2]\n", "in:1: a JSON array, not an object"},
		{"5\n", "in:1: not a JSON object: 5"},
		{`{"prompt":"a","text":1}` + "\n", "in:1: bad completion"},
		{`{"prompt":"a","text":"x","ok":true}` + "\n", `in:1: field "ok" is a boolean`},
		{`{"prompt":"a","text":"x","n":null}` + "\n", `in:1: field "n" is null`},
		{`{"prompt":"a","text":"x","tokens":[1],"self_certainty":[1,2]}` + "\n", "self_certainty has 2 values for 1 tokens"},
		{`{"prompt":"a","text":"","answer":"1"}` + "\n" + `{"prompt":"a","text":"","answer":"2"}` + "\n", `in:2: field "answer" is "2", but "1"`},
		{`{"prompt":"a","group":"g","text":""}` + "\n" + `{"prompt":"b","group":"g","text":""}` + "\n", "in:2: prompt differs"},
		{"  \n\n", "in: no completions"},
		// Every reward reads the prompt and the text: a line without one is refused.
		{`{"prompt":"p","text":"hello"}` + "\n" + `{"text":"x"}` + "\n", `in:2: no "prompt": every line needs the prompt and the completion's text`},
		{`{"prompt":"p","text":"hello"}` + "\n\n" + `{"prompt":"p"}` + "\n", `in:3: no "text"`},
		{"\xef\xbb\xbf\xef\xbb\xbf" + `{"prompt":"p","text":"x"}` + "\n", "in:1: not a JSON object"},
	}
	for _, tc := range tests {
		_, _, _, err := readCompletions(strings.NewReader(tc.input), "in")
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: got %v, want an error with %q", tc.input, err, tc.msg)
		}
	}
}

// A file saved with a byte-order mark (Notepad) reads as without; line numbers stay.
func TestReadCompletionsByteOrderMark(t *testing.T) {
	groups, lines, _, err := readCompletions(strings.NewReader("\xef\xbb\xbf"+`{"prompt":"a","text":"1"}`+"\n"+`{"prompt":"a","text":"2"}`+"\n"), "in")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 1 || groups[0].Prompt != "a" || len(lines) != 2 || lines[1].line != 2 {
		t.Fatalf("groups %+v lines %+v", groups, lines)
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

// --completions naming a directory or a named pipe (which would block the read forever)
// is refused, naming it and what is wanted; so is a reward mix whose weights are all 0.
// Each is one line and a non-zero exit, before any reward starts.
func TestScoreBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	format := write("format.toml", "[[rewards]]\nname = \"format\"\n")
	allZero := write("zero.toml", "[[rewards]]\nname = \"format\"\nweight = 0\n")
	completions := write("c.jsonl", `{"prompt":"p","text":"a"}`+"\n"+`{"prompt":"p","text":"b"}`+"\n")
	fifo := filepath.Join(dir, "pipe.jsonl")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config, completions, want string
	}{
		{"directory", format, dir, "--completions " + dir + " is a directory: give a JSONL file of completions (- reads stdin)"},
		{"named pipe", format, fifo, "--completions " + fifo + " is a named pipe, not a regular file"},
		{"every weight 0", allZero, completions, "rewards: every [[rewards]] entry has weight 0 (format)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t, "score", "--config", tc.config, "--completions", tc.completions)
			if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q: want exit 1 and one line containing %q", code, errs, tc.want)
			}
			if out != "" {
				t.Errorf("scores printed: %s", out)
			}
		})
	}
}
