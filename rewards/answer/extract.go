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
	for _, find := range []func(string) (string, bool){lastBoxed, afterHashes, answerPhrase, lastNumber} {
		if a, found := find(text); found {
			if a, ok := nonEmpty(a); ok {
				return a, true
			}
		}
	}
	return "", false
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
	if a, found := lastBoxed(text); found {
		return nonEmpty(a)
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
	if a, found := afterHashes(field); found {
		return a
	}
	if a, found := lastBoxed(field); found {
		return strings.TrimSpace(a)
	}
	return strings.TrimSpace(field)
}

func nonEmpty(a string) (string, bool) {
	a = strings.TrimSpace(a)
	if Normalize(a) == "" {
		return "", false
	}
	return a, true
}

// lastBoxed returns the argument of the last \boxed or \fbox in s. Both the braced
// form \boxed{…} (nested braces allowed) and the spaced form "\boxed 5" are read.
// An unterminated brace makes that occurrence unusable; earlier ones still count.
func lastBoxed(s string) (string, bool) {
	best, bestAt := "", -1
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
			if arg, ok := commandArg(s[i+len(cmd):]); ok {
				best, bestAt = arg, i
				break
			}
		}
	}
	return best, bestAt >= 0
}

// commandArg reads the argument of a command from rest, the text right after the
// command name: either a balanced {…} group (spaces allowed before it) or, after at
// least one space, a bare token up to the next space or '$'.
func commandArg(rest string) (string, bool) {
	if rest != "" && isLetter(rest[0]) {
		return "", false // \boxedfoo is another command
	}
	t := strings.TrimLeft(rest, " \t")
	if strings.HasPrefix(t, "{") {
		inner, _, ok := braceGroup(t)
		return inner, ok
	}
	if len(t) == len(rest) || t == "" {
		return "", false
	}
	end := strings.IndexAny(t, " \t\n$")
	if end < 0 {
		end = len(t)
	}
	return t[:end], end > 0
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

// afterHashes returns the text after the last "####" marker, up to the end of its
// line, with GSM8K's decorations (a leading "$", a trailing ".") removed.
func afterHashes(s string) (string, bool) {
	i := strings.LastIndex(s, "####")
	if i < 0 {
		return "", false
	}
	a := strings.TrimLeft(s[i+4:], "# \t")
	if j := strings.IndexByte(a, '\n'); j >= 0 {
		a = a[:j]
	}
	a = strings.TrimSpace(a)
	return a, a != ""
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

// answerPhrase returns the answer stated after the last "answer is" (or "answer:",
// "answer =") phrase: the first math span in the rest of that line, or else the
// first number in it.
func answerPhrase(s string) (string, bool) {
	locs := answerPhraseRE.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return "", false
	}
	rest := s[locs[len(locs)-1][1]:]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	if m := mathSpanRE.FindStringSubmatch(rest); m != nil && strings.Index(rest, m[0]) < 3 {
		if m[1] != "" {
			return m[1], true
		}
		return m[2], true
	}
	return firstNumber(rest)
}

func firstNumber(s string) (string, bool) {
	loc := numberRE.FindStringIndex(s)
	if loc == nil {
		return "", false
	}
	return signed(s, loc[0], loc[1]), true
}

// lastNumber returns the last plain number in s, with its minus sign when the sign
// stands where a sign can (start, after a space, '(', '=', '$' or ':'), not as the
// hyphen of "3-4".
func lastNumber(s string) (string, bool) {
	locs := numberRE.FindAllStringIndex(s, -1)
	if len(locs) == 0 {
		return "", false
	}
	l := locs[len(locs)-1]
	return signed(s, l[0], l[1]), true
}

func signed(s string, start, end int) string {
	num := s[start:end]
	if start > 0 && (s[start-1] == '-' || s[start-1] == '+') {
		if start == 1 || strings.IndexByte(" \t\n(=$:[{", s[start-2]) >= 0 {
			if s[start-1] == '-' {
				return "-" + num
			}
		}
	}
	return num
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
