package answer

import (
	"math"
	"strings"

	"github.com/rlif/rlif/internal/num"
)

// relTol is the relative tolerance of numeric comparison: it absorbs floating-point
// error in evaluated closed forms (\frac{\sqrt3}{3} vs \frac{1}{\sqrt3}), not rounding
// by a model (0.333 is not 1/3).
const relTol = 1e-9

// Equivalent reports whether two answers are the same: equal keys (Normalize), equal
// numeric values (integers, decimals, fractions and closed forms with \sqrt and \pi),
// or tuples, intervals, matrices, unions and sets whose elements are equivalent one by
// one (brackets must match; sets and bare lists in any order). An empty answer is
// equivalent to nothing. Equivalent is symmetric.
func Equivalent(a, b string) bool {
	return Prepare(a).Equivalent(Prepare(b))
}

// Answer is an answer prepared for repeated comparison: the costly normalization is
// done once, so comparing every pair of a group's answers stays cheap.
type Answer struct {
	clean string
	key   string
	num   float64
	isNum bool
}

// Prepare normalizes s for comparison with Answer.Equivalent.
func Prepare(s string) Answer {
	c := clean(s)
	a := Answer{clean: c, key: canon(c, 0)}
	if c != "" {
		a.num, a.isNum = numericValue(c, 0)
	}
	return a
}

// Key returns the answer's canonical key (see Normalize).
func (a Answer) Key() string { return a.key }

// Empty reports whether nothing of the answer is left after normalization.
func (a Answer) Empty() bool { return a.key == "" }

// Equivalent reports whether a and b are equivalent (see the function Equivalent).
func (a Answer) Equivalent(b Answer) bool {
	if a.key == "" || b.key == "" {
		return false
	}
	if a.key == b.key {
		return true
	}
	if a.isNum && b.isNum {
		return closeTo(a.num, b.num)
	}
	return equiv(a.clean, b.clean, 0)
}

func equiv(a, b string, depth int) bool {
	if depth > maxDepth {
		return a == b
	}
	ka, kb := canon(a, depth), canon(b, depth)
	if ka == "" || kb == "" {
		return false
	}
	if ka == kb {
		return true
	}
	if x, ok := numericValue(a, depth); ok {
		if y, ok := numericValue(b, depth); ok {
			return closeTo(x, y)
		}
	}
	if sa, sb := stripLHS(a), stripLHS(b); sa != a || sb != b {
		return equiv(sa, sb, depth+1)
	}
	if pa, pb := splitTop(a, `\cup`), splitTop(b, `\cup`); len(pa) > 1 || len(pb) > 1 {
		return allEquiv(pa, pb, depth)
	}
	ra, okA := matrix(a)
	rb, okB := matrix(b)
	if okA || okB {
		if !okA || !okB || len(ra) != len(rb) {
			return false
		}
		for i := range ra {
			if !allEquiv(ra[i], rb[i], depth) {
				return false
			}
		}
		return true
	}
	oa, ea, za, okA := bracketed(a)
	ob, eb, zb, okB := bracketed(b)
	if okA && len(ea) == 1 {
		return equiv(ea[0], b, depth+1)
	}
	if okB && len(eb) == 1 {
		return equiv(a, eb[0], depth+1)
	}
	if okA || okB {
		return okA && okB && oa == ob && za == zb && allEquiv(ea, eb, depth)
	}
	if ua, ok := unordered(a); ok {
		ub, ok := unordered(b)
		return ok && matchAll(ua, ub, depth)
	}
	return false
}

// allEquiv reports whether xs and ys have the same length and equivalent elements
// in order.
func allEquiv(xs, ys []string, depth int) bool {
	if len(xs) != len(ys) {
		return false
	}
	for i := range xs {
		if !equiv(xs[i], ys[i], depth+1) {
			return false
		}
	}
	return true
}

// matchAll reports whether xs and ys can be paired one to one by equivalence
// (greedily; equivalence is close to transitive on the answers that occur).
func matchAll(xs, ys []string, depth int) bool {
	if len(xs) != len(ys) {
		return false
	}
	used := make([]bool, len(ys))
	for _, x := range xs {
		found := false
		for j, y := range ys {
			if !used[j] && equiv(x, y, depth+1) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func closeTo(x, y float64) bool {
	if x == y {
		return true
	}
	return math.Abs(x-y) <= relTol*math.Max(math.Abs(x), math.Abs(y))
}

// numericValue returns the value of a cleaned answer that is a closed-form number:
// an exact number (see parseRat) or an expression of numbers, + - * / ^, \frac,
// \sqrt, \pi, \cdot and \times, and parentheses, with implicit multiplication.
func numericValue(s string, depth int) (float64, bool) {
	if r, ok := parseRat(s, depth); ok {
		f, _ := r.Float64()
		return f, !math.IsInf(f, 0)
	}
	p := &evaluator{s: s}
	v, ok := p.sum(0)
	if !ok || p.i != len(p.s) || !num.Finite(v) {
		return 0, false
	}
	return v, true
}

// evaluator is a recursive-descent parser that evaluates a small LaTeX arithmetic
// language. Any variable or unknown command makes evaluation fail.
type evaluator struct {
	s string
	i int
}

func (p *evaluator) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *evaluator) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

// sum := product (('+'|'-') product)*
func (p *evaluator) sum(depth int) (float64, bool) {
	if depth > maxDepth {
		return 0, false
	}
	v, ok := p.product(depth + 1)
	if !ok {
		return 0, false
	}
	for {
		switch {
		case p.eat("+"):
			w, ok := p.product(depth + 1)
			if !ok {
				return 0, false
			}
			v += w
		case p.eat("-"):
			w, ok := p.product(depth + 1)
			if !ok {
				return 0, false
			}
			v -= w
		default:
			return v, true
		}
	}
}

// product := unary (('*'|'/'|\cdot|\times)? unary)*
func (p *evaluator) product(depth int) (float64, bool) {
	v, ok := p.unary(depth)
	if !ok {
		return 0, false
	}
	for {
		switch {
		case p.eat("*"), p.eat(`\cdot`), p.eat(`\times`):
			w, ok := p.unary(depth)
			if !ok {
				return 0, false
			}
			v *= w
		case p.eat("/"), p.eat(`\div`):
			w, ok := p.unary(depth)
			if !ok || w == 0 {
				return 0, false
			}
			v /= w
		default:
			c := p.peek()
			if c == 0 || c == '+' || c == '-' || c == ')' || c == '}' || c == ']' {
				return v, true
			}
			// implicit multiplication: 2\sqrt{3}, 3\pi, 2(1+x). A digit run followed
			// by \frac is a mixed number, which parseRat handles; refuse it here.
			if c >= '0' && c <= '9' || strings.HasPrefix(p.s[p.i:], `\frac`) && p.i > 0 && isDigit(p.s[p.i-1]) {
				return 0, false
			}
			w, ok := p.power(depth)
			if !ok {
				return 0, false
			}
			v *= w
		}
	}
}

// unary := ('-'|'+') unary | power
func (p *evaluator) unary(depth int) (float64, bool) {
	if depth > maxDepth {
		return 0, false
	}
	switch {
	case p.eat("-"):
		v, ok := p.unary(depth + 1)
		return -v, ok
	case p.eat("+"):
		return p.unary(depth + 1)
	}
	return p.power(depth)
}

// power := atom ('^' atom)?
func (p *evaluator) power(depth int) (float64, bool) {
	v, ok := p.atom(depth)
	if !ok {
		return 0, false
	}
	if p.eat("^") {
		var e float64
		if p.peek() == '{' || p.peek() == '(' {
			e, ok = p.atom(depth)
		} else if c := p.peek(); isDigit(c) {
			e, ok = float64(c-'0'), true // x^23 is x^2·3 in TeX
			p.i++
		} else {
			e, ok = p.unary(depth + 1)
		}
		if !ok {
			return 0, false
		}
		v = math.Pow(v, e)
	}
	return v, true
}

// atom := number | '(' sum ')' | '{' sum '}' | \frac{…}{…} | \sqrt[n]{…} | \pi
func (p *evaluator) atom(depth int) (float64, bool) {
	if depth > maxDepth {
		return 0, false
	}
	switch c := p.peek(); {
	case isDigit(c) || c == '.':
		start := p.i
		for p.i < len(p.s) && (isDigit(p.s[p.i]) || p.s[p.i] == '.') {
			p.i++
		}
		r, ok := parseRat(p.s[start:p.i], depth+1)
		if !ok {
			return 0, false
		}
		f, _ := r.Float64()
		return f, true
	case c == '(' || c == '{':
		closing := map[byte]string{'(': ")", '{': "}"}[c]
		p.i++
		v, ok := p.sum(depth + 1)
		if !ok || !p.eat(closing) {
			return 0, false
		}
		return v, true
	}
	switch {
	case p.eat(`\frac`):
		n, ok := p.group(depth)
		if !ok {
			return 0, false
		}
		d, ok := p.group(depth)
		if !ok || d == 0 {
			return 0, false
		}
		return n / d, true
	case p.eat(`\sqrt`):
		root := 2.0
		if p.eat("[") {
			r, ok := p.sum(depth + 1)
			if !ok || !p.eat("]") || r == 0 {
				return 0, false
			}
			root = r
		}
		x, ok := p.group(depth)
		if !ok || x < 0 {
			return 0, false
		}
		if root == 2 {
			return math.Sqrt(x), true
		}
		return math.Pow(x, 1/root), true
	case p.eat(`\pi`):
		if c := p.peek(); isLetter(c) {
			return 0, false
		}
		return math.Pi, true
	}
	return 0, false
}

// group reads a braced argument {…}, or a single digit as TeX does (\frac12).
func (p *evaluator) group(depth int) (float64, bool) {
	if p.eat("{") {
		v, ok := p.sum(depth + 1)
		if !ok || !p.eat("}") {
			return 0, false
		}
		return v, true
	}
	if c := p.peek(); isDigit(c) {
		p.i++
		return float64(c - '0'), true
	}
	if p.eat(`\pi`) {
		return math.Pi, true
	}
	return 0, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
