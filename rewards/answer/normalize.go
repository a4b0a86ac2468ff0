package answer

import (
	"math/big"
	"regexp"
	"sort"
	"strings"
)

// maxDepth bounds the recursion over nested structures (tuples of tuples, nested
// fractions), so that adversarial input cannot exhaust the stack.
const maxDepth = 64

var (
	leftRightRE = regexp.MustCompile(`\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr)\b`)
	// spacingRE matches LaTeX spacing commands, including the thin space used as a
	// thousands separator (1\,000).
	spacingRE = regexp.MustCompile(`\\[!,;:> ]|\\q?quad\b|~`)
	fracRE    = regexp.MustCompile(`\\[dtc]frac`)
	binomRE   = regexp.MustCompile(`\\[dt]binom`)
	degreeRE  = regexp.MustCompile(`\^\s*\{?\s*\\circ\s*\}?|\\circ\b|°|\\degree\b`)
	dollarRE  = regexp.MustCompile(`\\?\$`)
	percentRE = regexp.MustCompile(`\\?%`)
	// styleRE matches commands that only change how their argument looks.
	styleRE = regexp.MustCompile(`\\(?:displaystyle|textstyle|scriptstyle|mathbf|mathit|boldsymbol|bf|it|rm)\b`)
	// unitRE matches a trailing text unit such as "\text{ cm}^2" or "\mbox{ inches}".
	unitRE = regexp.MustCompile(`^(.*\S)\s*\\(?:text|textrm|textnormal|mbox|mathrm)\s*\{[^{}]*\}\s*(?:\^\s*\{?\s*\d\s*\}?)?$`)
	// textRE matches a text command whose argument is kept (\text{even}).
	textRE = regexp.MustCompile(`\\(?:text|textrm|textnormal|textbf|textit|mbox|mathrm|operatorname)\s*\{([^{}]*)\}`)
	// plainUnitRE matches a number followed by a common unit word written as prose.
	plainUnitRE  = regexp.MustCompile(`(?i)^(.*[0-9}])\s*(?:square\s+|sq\.?\s*|cubic\s+)?(?:units?|degrees?|radians?|cm|centimeters?|mm|millimeters?|km|kilometers?|meters?|inches|inch|feet|foot|ft|yards?|miles?|mph|dollars?|cents?|hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|pounds?|lbs?|kg|grams?|liters?|gallons?|ounces?|oz|people|students|points?|percent)(?:\^?\s*\{?[23]\}?)?\s*\.?$`)
	fracDigitsRE = regexp.MustCompile(`\\frac\s*(\d)\s*(\d)`)
	fracNumRE    = regexp.MustCompile(`\\frac\s*(\d)\s*\{`)
	fracDenRE    = regexp.MustCompile(`\\frac\s*\{([^{}]*)\}\s*(\d)`)
	sqrtRE       = regexp.MustCompile(`\\sqrt\s*([0-9a-zA-Z])`)
	scriptRE     = regexp.MustCompile(`([_^])\{(\w)\}`)
	// lhsRE matches a simple left-hand side: "x =", "a_1 =", "x \in".
	lhsRE = regexp.MustCompile(`^(?:[a-zA-Z](?:_\{?\w+\}?)?|\\[a-zA-Z]+)(?:=|\\in)`)
	// choiceRE matches a parenthesized multiple-choice letter "(C)".
	choiceRE     = regexp.MustCompile(`^\(([A-Za-z])\)$`)
	wordRE       = regexp.MustCompile(`^[A-Za-z]{2,}$`)
	thousandsRE  = regexp.MustCompile(`^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$`)
	decimalRE    = regexp.MustCompile(`^[+-]?(?:\d+\.?\d*|\.\d+)$`)
	matrixRE     = regexp.MustCompile(`^\\begin\{([pbvBV]?matrix|array)\}(?:\{[^{}]*\})?(.*)\\end\{([pbvBV]?matrix|array)\}$`)
	whitespaceRE = regexp.MustCompile(`\s+`)
	cmdSpaceRE   = regexp.MustCompile(`(\\[a-zA-Z]+)\s+([a-zA-Z])`)
)

// Normalize returns a canonical key of an answer: two answers with the same key are
// equivalent (the converse holds for most but not all answers; use Equivalent to
// compare). Numbers become exact reduced fractions ("0.5", "\frac12", "1/2" → "1/2"),
// LaTeX decorations, units and spacing are dropped, tuples and intervals are
// normalized element by element, and unordered lists and sets are sorted. It
// returns "" when nothing of an answer is left.
func Normalize(s string) string {
	return canon(clean(s), 0)
}

// clean removes what never changes an answer's value and returns a string without
// whitespace.
func clean(s string) string {
	s = strings.TrimSpace(s)
	if a, ok := lastBoxed(s); ok {
		s = strings.TrimSpace(a)
	}
	s = strings.ReplaceAll(s, "\n", " ")
	s = stripDelims(s)
	s = leftRightRE.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "{,}", ",")
	// Protect the row separator \\ of matrices from the spacing command "\ ".
	s = strings.ReplaceAll(s, `\\`, "\x00")
	s = spacingRE.ReplaceAllString(s, " ")
	s = strings.ReplaceAll(s, "\x00", `\\`)
	s = fracRE.ReplaceAllString(s, `\frac`)
	s = binomRE.ReplaceAllString(s, `\binom`)
	s = degreeRE.ReplaceAllString(s, "")
	s = dollarRE.ReplaceAllString(s, "")
	s = percentRE.ReplaceAllString(s, "")
	s = styleRE.ReplaceAllString(s, "")
	s = strings.TrimSpace(s)
	for i := 0; i < 3; i++ { // "5 \text{cm}^2", then a unit may precede a unit
		if m := unitRE.FindStringSubmatch(s); m != nil {
			s = strings.TrimSpace(m[1])
		}
	}
	s = textRE.ReplaceAllString(s, "$1")
	s = strings.TrimSpace(s)
	s = strings.TrimRight(s, ".")
	if m := plainUnitRE.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	s = fracDigitsRE.ReplaceAllString(s, `\frac{$1}{$2}`)
	s = fracNumRE.ReplaceAllString(s, `\frac{$1}{`)
	s = fracDenRE.ReplaceAllString(s, `\frac{$1}{$2}`)
	s = sqrtRE.ReplaceAllString(s, `\sqrt{$1}`)
	// A space ends a command name (\cot x): keep one there, drop all others.
	s = cmdSpaceRE.ReplaceAllString(s, "$1\x01$2")
	s = whitespaceRE.ReplaceAllString(s, "")
	s = strings.ReplaceAll(s, "\x01", " ")
	s = scriptRE.ReplaceAllString(s, "$1$2")
	s = strings.TrimRight(s, ".")
	s = stripDelims(s)
	return s
}

// stripDelims removes enclosing math delimiters: $…$, \(…\), \[…\].
func stripDelims(s string) string {
	for {
		t := strings.TrimSpace(s)
		switch {
		case len(t) >= 2 && t[0] == '$' && t[len(t)-1] == '$':
			t = strings.Trim(t, "$")
		case strings.HasPrefix(t, `\(`) && strings.HasSuffix(t, `\)`) && len(t) >= 4:
			t = t[2 : len(t)-2]
		case strings.HasPrefix(t, `\[`) && strings.HasSuffix(t, `\]`) && len(t) >= 4:
			t = t[2 : len(t)-2]
		}
		if t == s {
			return t
		}
		s = t
	}
}

// canon turns a cleaned answer into its key.
func canon(s string, depth int) string {
	if s == "" || depth > maxDepth {
		return s
	}
	if r, ok := parseRat(s, depth); ok {
		return r.RatString()
	}
	if t := stripLHS(s); t != s {
		return canon(t, depth+1)
	}
	if parts := splitTop(s, `\cup`); len(parts) > 1 {
		for i, p := range parts {
			parts[i] = canon(p, depth+1)
		}
		return strings.Join(parts, `\cup`)
	}
	if rows, ok := matrix(s); ok {
		out := make([]string, len(rows))
		for i, row := range rows {
			for j, e := range row {
				row[j] = canon(e, depth+1)
			}
			out[i] = strings.Join(row, ",")
		}
		return "matrix[" + strings.Join(out, ";") + "]"
	}
	if open, elems, closing, ok := bracketed(s); ok {
		if len(elems) == 1 {
			return canon(elems[0], depth+1)
		}
		for i, e := range elems {
			elems[i] = canon(e, depth+1)
		}
		return open + strings.Join(elems, ",") + closing
	}
	if elems, ok := unordered(s); ok {
		for i, e := range elems {
			elems[i] = canon(e, depth+1)
		}
		sort.Strings(elems)
		return "{" + strings.Join(elems, ",") + "}"
	}
	if m := choiceRE.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	if wordRE.MatchString(s) {
		return strings.ToLower(s)
	}
	return strings.TrimPrefix(s, "+")
}

// stripLHS removes a simple left-hand side ("x=", "k_1=", "x\in") when the rest holds
// no further relation, so that "x = 5" and "5" compare equal.
func stripLHS(s string) string {
	loc := lhsRE.FindStringIndex(s)
	if loc == nil {
		return s
	}
	rest := s[loc[1]:]
	if rest == "" || strings.ContainsAny(rest, "=<>") || strings.Contains(rest, `\in`) {
		return s
	}
	return rest
}

// parseRat reads an exact number: an integer or decimal (thousands separators
// allowed), a ratio a/b, \frac{a}{b}, a mixed number 1\frac{4}{5}, or a negation of
// one of those.
func parseRat(s string, depth int) (*big.Rat, bool) {
	if s == "" || depth > maxDepth {
		return nil, false
	}
	if thousandsRE.MatchString(s) {
		s = strings.ReplaceAll(s, ",", "")
	}
	if decimalRE.MatchString(s) {
		r, ok := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
		return r, ok
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	r, ok := parseUnsignedRat(s, depth)
	if !ok {
		return nil, false
	}
	if neg {
		r.Neg(r)
	}
	return r, true
}

func parseUnsignedRat(s string, depth int) (*big.Rat, bool) {
	if s == "" {
		return nil, false
	}
	if i := strings.IndexByte(s, '/'); i > 0 && strings.Count(s, "/") == 1 && !strings.ContainsAny(s, `\{}`) {
		num, ok1 := parseRat(s[:i], depth+1)
		den, ok2 := parseRat(s[i+1:], depth+1)
		if !ok1 || !ok2 || den.Sign() == 0 || strings.HasPrefix(s[i+1:], "-") {
			return nil, false
		}
		return num.Quo(num, den), true
	}
	whole, mixed := new(big.Rat), false
	if i := strings.Index(s, `\frac`); i > 0 {
		if !isDigits(s[:i]) {
			return nil, false
		}
		whole.SetString(s[:i])
		mixed, s = true, s[i:]
	}
	if !strings.HasPrefix(s, `\frac{`) {
		return nil, false
	}
	num, rest, ok := braceGroup(s[len(`\frac`):])
	if !ok {
		return nil, false
	}
	den, rest, ok := braceGroup(rest)
	if !ok || rest != "" {
		return nil, false
	}
	n, ok1 := parseRat(num, depth+1)
	d, ok2 := parseRat(den, depth+1)
	if !ok1 || !ok2 || d.Sign() == 0 {
		return nil, false
	}
	f := n.Quo(n, d)
	if mixed && f.Sign() < 0 {
		return nil, false // 1\frac{-4}{5} is not a mixed number
	}
	return f.Add(f, whole), true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// splitTop splits s at every occurrence of sep that is outside all brackets.
func splitTop(s, sep string) []string {
	var parts []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '{' || s[i+1] == '}'):
			if s[i+1] == '{' {
				depth++
			} else {
				depth--
			}
			i++
			continue
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		}
		if depth == 0 && strings.HasPrefix(s[i:], sep) {
			parts = append(parts, s[start:i])
			start = i + len(sep)
			i += len(sep) - 1
		}
	}
	return append(parts, s[start:])
}

// bracketed reports whether s is one bracketed group "(…)", "[…]", "(…]" or "[…)"
// whose opening bracket closes at the end of s, and returns its comma-separated
// elements.
func bracketed(s string) (open string, elems []string, closing string, ok bool) {
	if len(s) < 2 || (s[0] != '(' && s[0] != '[') || (s[len(s)-1] != ')' && s[len(s)-1] != ']') {
		return "", nil, "", false
	}
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 && i != len(s)-1 {
				return "", nil, "", false
			}
		}
	}
	if depth != 0 {
		return "", nil, "", false
	}
	inner := s[1 : len(s)-1]
	if inner == "" {
		return "", nil, "", false
	}
	return s[:1], splitTop(inner, ","), s[len(s)-1:], true
}

// unordered reports whether s is a set \{a,b\} or a bare list a,b and returns its
// elements. The order of their elements does not matter.
func unordered(s string) ([]string, bool) {
	if strings.HasPrefix(s, `\{`) && strings.HasSuffix(s, `\}`) && len(s) >= 4 {
		inner := s[2 : len(s)-2]
		if !balanced(inner) {
			return nil, false
		}
		return splitTop(inner, ","), true
	}
	if !balanced(s) {
		return nil, false
	}
	parts := splitTop(s, ",")
	if len(parts) < 2 {
		return nil, false
	}
	return parts, true
}

func balanced(s string) bool {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

// matrix reads \begin{pmatrix} a & b \\ c & d \end{pmatrix} (any matrix style) into
// rows of elements.
func matrix(s string) ([][]string, bool) {
	m := matrixRE.FindStringSubmatch(s)
	if m == nil {
		return nil, false
	}
	body := m[2]
	var rows [][]string
	for _, line := range strings.Split(body, `\\`) {
		if line == "" {
			continue
		}
		rows = append(rows, strings.Split(line, "&"))
	}
	return rows, len(rows) > 0
}
