package rollout

import (
	"encoding/json"
	"slices"
	"testing"
	"unicode/utf8"
)

func TestValidText(t *testing.T) {
	const fffd = "\uFFFD"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"ascii", "Once upon a time", "Once upon a time"},
		{"multi-byte", "naïve ” 数 🙂", "naïve ” 数 🙂"},
		{"NUL and controls are valid", "a\x00b\x0b", "a\x00b\x0b"},
		{"U+FFFD itself stays", fffd + "x", fffd + "x"},
		{"cut after the lead byte", "数\xe6", "数" + fffd},
		{"cut after two of three bytes", "a\xe6\x95", "a" + fffd + fffd},
		{"cut emoji", "\xf0\x9f\x99", fffd + fffd + fffd},
		{"lone continuation byte", "a\x80b", "a" + fffd + "b"},
		{"byte-fallback junk", "\xff\xfe!", fffd + fffd + "!"},
		{"overlong encoding", "\xc0\xaf", fffd + fffd},
		{"UTF-16 surrogate", "\xed\xa0\x80", fffd + fffd + fffd},
		{"beyond U+10FFFF", "\xf4\x90\x80\x80", fffd + fffd + fffd + fffd},
		{"invalid between valid characters", "é\xe9é", "é" + fffd + "é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ValidText(tc.in)
			if got != tc.want {
				t.Fatalf("ValidText(%q) = %q, want %q", tc.in, got, tc.want)
			}
			checkValidText(t, tc.in, got)
		})
	}
}

// checkValidText checks the properties ValidText promises for input in and its result.
func checkValidText(t *testing.T, in, got string) {
	t.Helper()
	if !utf8.ValidString(got) {
		t.Fatalf("ValidText(%q) = %q is not valid UTF-8", in, got)
	}
	if utf8.ValidString(in) && got != in {
		t.Fatalf("valid input %q changed to %q", in, got)
	}
	if again := ValidText(got); again != got {
		t.Fatalf("not idempotent: %q, then %q", got, again)
	}
	// The same rule as encoding/json's, which completions.jsonl and --json go through.
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back != got {
		t.Fatalf("encoding/json makes %q of %q, ValidText %q", back, in, got)
	}
}

func FuzzValidText(f *testing.F) {
	for _, s := range []string{"", "abc", "数\xe6", "\xff", "\xed\xa0\x80", "\xf0\x9f\x99\x82\xf0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkValidText(t, in, ValidText(in))
	})
}

func TestTextOf(t *testing.T) {
	const fffd = "\uFFFD"
	tests := []struct {
		name   string
		pieces []string // the bytes each token spelled
		cut    int      // the raw text is cut to this many bytes (a stop string); -1: not cut
		text   string
		ends   []int32
	}{
		{"ascii", []string{"The", " answer", " is", " 5"}, -1, "The answer is 5", []int32{3, 10, 13, 15}},
		{"end-of-generation spells nothing", []string{"4", "2", ""}, -1, "42", []int32{1, 2, 2}},
		{"a character across tokens", []string{"数", "\xe5", "\xad\xa6", "!"}, -1, "数学!", []int32{3, 4, 6, 7}},
		{"a cut character is replaced", []string{"a", "\xe6\x95"}, -1, "a" + fffd + fffd, []int32{1, 7}},
		{"byte-fallback junk", []string{"\xff", "b", "\xfe"}, -1, fffd + "b" + fffd, []int32{3, 4, 7}},
		{"stop string cut in the last token", []string{"x = 1", "\nQ", "uestion"}, 5, "x = 1", []int32{5, 5, 5}},
		{"stop string cut across tokens", []string{"ok", " ST", "OP"}, 3, "ok ", []int32{2, 3, 3}},
		{"no tokens", nil, -1, "", []int32{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw []byte
			var ends []int
			for _, p := range tc.pieces {
				raw = append(raw, p...)
				ends = append(ends, len(raw))
			}
			if tc.cut >= 0 {
				raw = raw[:tc.cut]
			}
			text, got := TextOf(raw, ends)
			if text != tc.text || !slices.Equal(got, tc.ends) {
				t.Fatalf("TextOf = %q %v, want %q %v", text, got, tc.text, tc.ends)
			}
			c := Completion{Text: text, TokenEnds: got}
			for range got {
				c.Append(0, TokenStats{})
			}
			c.TokenEnds = got
			if !c.Valid() {
				t.Fatalf("a completion with text %q and token ends %v is not Valid", text, got)
			}
		})
	}
}
