// Package answer extracts final answers from model completions and dataset gold
// fields, and decides whether two answers are equivalent. It is shared by the
// answer-based rewards (accuracy, plurality vote, semantic entropy) and by
// evaluation, so that training and scoring agree on what "the same answer" means.
//
// The checker is string based with exact rational arithmetic for numbers and a
// small numeric evaluator for closed-form constants (fractions, square roots, π);
// it is not a computer algebra system: x+1 and 1+x are different answers.
package answer

import (
	"regexp"
	"strings"
	"unicode"
)

// boxCommands are the LaTeX commands whose argument is taken as a final answer.
var boxCommands = []string{`\boxed`, `\fbox`}

// Extract returns the final answer of a model completion, trying in turn: the
// argument of the last \boxed{…} (or \fbox{…}), nested braces allowed; the text after
// the last GSM8K-style "####"; the answer stated after the last "answer is" /
// "answer:" phrase (its first math span, or its first number); the last number in the
// text. The first of these whose normalized form is non-empty wins; ok is false when
// there is none.
func Extract(text string) (ans string, ok bool) {
	start, end, ok := Locate(text)
	if !ok {
		return "", false
	}
	return text[start:end], true
}

// Locate returns where Extract's answer stands in text: text[start:end] is the answer,
// space trimmed. It is the one extraction rule, for the answer rewards and for the
// rewards that read the tokens of the answer span (the answer window of entropy and
// self_certainty, which maps the span to tokens by their text offsets).
func Locate(text string) (start, end int, ok bool) {
	for _, find := range []func(string) (int, int, bool){lastBoxedSpan, afterHashesSpan, answerPhraseSpan, lastNumberSpan} {
		if s, e, found := find(text); found {
			if s, e, ok := nonEmptySpan(text, s, e); ok {
				return s, e, true
			}
		}
	}
	return 0, 0, false
}

// Check returns a completion's final answer (Extract) and whether it is equivalent to
// gold: the rule of the accuracy reward and of an evaluation's accuracy.
func Check(text string, gold Answer) (extracted string, extractable, correct bool) {
	extracted, extractable = Extract(text)
	if !extractable {
		return "", false, false
	}
	return extracted, true, Prepare(extracted).Equivalent(gold)
}

// Boxed returns the answer in the last \boxed{…} (or \fbox{…}) of a completion, as
// Extract reads it first; ok is false when there is none, or nothing of it is left
// after normalization (\boxed{}). It is what the format reward's "boxed" layout and
// an evaluation's boxed fraction count.
func Boxed(text string) (ans string, ok bool) {
	if s, e, found := lastBoxedSpan(text); found {
		if s, e, ok := nonEmptySpan(text, s, e); ok {
			return text[s:e], true
		}
	}
	return "", false
}

// GoldField is the dataset field that holds the gold answer unless another is named:
// the accuracy reward's default and rlif eval's.
const GoldField = "answer"

// Gold returns the reference answer held in a dataset field: the number after the
// last "####" of a GSM8K worked solution, the last \boxed{…} of a MATH solution, or
// else the field itself, trimmed. It returns "" for a field with no answer.
func Gold(field string) string {
	if s, e, found := afterHashesSpan(field); found {
		return field[s:e]
	}
	if s, e, found := lastBoxedSpan(field); found {
		return strings.TrimSpace(field[s:e])
	}
	return strings.TrimSpace(field)
}

// nonEmptySpan trims the space around text[start:end] and reports whether anything of
// it is left after normalization.
func nonEmptySpan(text string, start, end int) (int, int, bool) {
	a := text[start:end]
	t := strings.TrimLeftFunc(a, unicode.IsSpace)
	start += len(a) - len(t)
	end = start + len(strings.TrimRightFunc(t, unicode.IsSpace))
	if Normalize(text[start:end]) == "" {
		return 0, 0, false
	}
	return start, end, true
}

// lastBoxed returns the argument of the last \boxed or \fbox in s (lastBoxedSpan).
func lastBoxed(s string) (string, bool) {
	start, end, ok := lastBoxedSpan(s)
	return s[start:end], ok
}

// lastBoxedSpan returns where the argument of the last \boxed or \fbox in s stands:
// s[start:end]. Both the braced form \boxed{…} (nested braces allowed) and the spaced
// form "\boxed 5" are read. An unterminated brace makes that occurrence unusable;
// earlier ones still count.
func lastBoxedSpan(s string) (start, end int, found bool) {
	bestAt := -1
	for _, cmd := range boxCommands {
		from := len(s)
		for from > 0 {
			i := strings.LastIndex(s[:from], cmd)
			if i < 0 {
				break
			}
			from = i
			if i <= bestAt {
				break
			}
			at := i + len(cmd)
			if as, ae, ok := commandArg(s[at:]); ok {
				start, end, bestAt = at+as, at+ae, i
				break
			}
		}
	}
	return start, end, bestAt >= 0
}

// commandArg finds the argument of a command in rest, the text right after the
// command name: rest[start:end] is either the content of a balanced {…} group (spaces
// allowed before it) or, after at least one space, a bare token up to the next space
// or '$'.
func commandArg(rest string) (start, end int, ok bool) {
	if rest != "" && isLetter(rest[0]) {
		return 0, 0, false // \boxedfoo is another command
	}
	t := strings.TrimLeft(rest, " \t")
	skipped := len(rest) - len(t)
	if strings.HasPrefix(t, "{") {
		inner, _, ok := braceGroup(t)
		return skipped + 1, skipped + 1 + len(inner), ok
	}
	if skipped == 0 || t == "" {
		return 0, 0, false
	}
	n := strings.IndexAny(t, " \t\n$")
	if n < 0 {
		n = len(t)
	}
	return skipped, skipped + n, n > 0
}

// braceGroup reads a balanced group starting at s[0] == '{' and returns its content
// and the remainder after the closing brace. Escaped braces \{ \} are content.
func braceGroup(s string) (inner, rest string, ok bool) {
	if s == "" || s[0] != '{' {
		return "", s, false
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // skip the escaped character
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[1:i], s[i+1:], true
			}
		}
	}
	return "", s, false
}

// afterHashesSpan returns where the text after the last "####" marker stands, up to
// the end of its line, space trimmed: s[start:end].
func afterHashesSpan(s string) (start, end int, found bool) {
	i := strings.LastIndex(s, "####")
	if i < 0 {
		return 0, 0, false
	}
	rest := s[i+4:]
	a := strings.TrimLeft(rest, "# \t")
	start = i + 4 + len(rest) - len(a)
	if j := strings.IndexByte(a, '\n'); j >= 0 {
		a = a[:j]
	}
	t := strings.TrimLeftFunc(a, unicode.IsSpace)
	start += len(a) - len(t)
	end = start + len(strings.TrimRightFunc(t, unicode.IsSpace))
	return start, end, end > start
}

var (
	// answerPhraseRE finds the phrases that introduce a final answer in plain prose.
	answerPhraseRE = regexp.MustCompile(`(?i)\banswer\s*(?:is|=|:)\s*(?:\*\*)?\s*`)
	// mathSpanRE matches an inline math span $…$ or \( … \).
	mathSpanRE = regexp.MustCompile(`\$([^$]+)\$|\\\((.+?)\\\)`)
	// numberRE matches a plain number: an integer with optional thousands
	// separators, an optional decimal part, or a bare decimal, optionally a ratio.
	numberRE = regexp.MustCompile(`(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+(?:\.\d+)?)?|\.\d+`)
)

// answerPhraseSpan returns where the answer stated after the last "answer is" (or
// "answer:", "answer =") phrase stands: the first math span in the rest of that line
// (its content), or else the first number in it.
func answerPhraseSpan(s string) (start, end int, found bool) {
	locs := answerPhraseRE.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return 0, 0, false
	}
	from := locs[len(locs)-1][1]
	rest := s[from:]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	if m := mathSpanRE.FindStringSubmatchIndex(rest); m != nil && m[0] < 3 {
		if m[2] >= 0 {
			return from + m[2], from + m[3], true
		}
		return from + m[4], from + m[5], true
	}
	loc := numberRE.FindStringIndex(rest)
	if loc == nil {
		return 0, 0, false
	}
	start, end = signedSpan(rest, loc[0], loc[1])
	return from + start, from + end, true
}

// lastNumberSpan returns where the last plain number in s stands, with its minus sign
// when the sign stands where a sign can (start, after a space, '(', '=', '$' or ':'),
// not as the hyphen of "3-4".
func lastNumberSpan(s string) (start, end int, found bool) {
	locs := numberRE.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return 0, 0, false
	}
	l := locs[len(locs)-1]
	start, end = signedSpan(s, l[0], l[1])
	return start, end, true
}

// Echoes reports whether ans is equivalent to a number the prompt itself states: the answer
// of a completion that restates its question instead of solving it ("What is 86 - 70?" →
// "To find 86 - 70, we simply subtract 70 from 86." answers 86). Such echoes took over
// every label-free run here that collapsed (docs/experiments/label-free.md), and are rare
// in a model that computes (an arithmetic answer seldom equals an operand).
func Echoes(prompt, ans string) bool {
	a := Prepare(ans)
	if a.Empty() {
		return false
	}
	for _, l := range numberRE.FindAllStringIndex(prompt, -1) {
		start, end := signedSpan(prompt, l[0], l[1])
		if Prepare(prompt[start:end]).Equivalent(a) {
			return true
		}
	}
	return false
}

// signedSpan extends the number s[start:end] by its minus sign when it has one (a '+'
// is left out: +5 is 5).
func signedSpan(s string, start, end int) (int, int) {
	if start > 0 && s[start-1] == '-' {
		if start == 1 || strings.IndexByte(" \t\n(=$:[{", s[start-2]) >= 0 {
			return start - 1, end
		}
	}
	return start, end
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
