package answer

import (
	"strings"
	"testing"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name, text, want string
		ok               bool
	}{
		{"boxed integer", `So $a+b=-3+3=\boxed{0}$.`, "0", true},
		{"last boxed wins", `First \boxed{1}, then \boxed{2}.`, "2", true},
		{"nested braces", `Thus $\boxed{\frac{\sqrt{3}}{3}}$.`, `\frac{\sqrt{3}}{3}`, true},
		{"deeply nested", `\boxed{\left( 3, \frac{\pi}{2} \right)}`, `\left( 3, \frac{\pi}{2} \right)`, true},
		{"fbox", `the answer is \fbox{12}`, "12", true},
		{"fbox after boxed", `\boxed{1} and finally \fbox{7}`, "7", true},
		{"boxed with space", `\boxed {5}`, "5", true},
		{"boxed bare token", `$\boxed 5$`, "5", true},
		{"escaped braces in boxed", `\boxed{\{1,2\}}`, `\{1,2\}`, true},
		{"unterminated last boxed falls back to earlier", `\boxed{3} then \boxed{4`, "3", true},
		{"unterminated only boxed uses number", `\boxed{4`, "4", true},
		{"empty boxed then number", `\boxed{} so 7`, "7", true},
		{"boxed matrix", `$\boxed{\begin{pmatrix} -1 \\ 2 \end{pmatrix}}$`, `\begin{pmatrix} -1 \\ 2 \end{pmatrix}`, true},
		{"boxed text", `\boxed{\text{(C)}}`, `\text{(C)}`, true},
		{"gsm8k hashes", "She makes 9 * 2 = $18.\n#### 18", "18", true},
		{"gsm8k hashes thousands", "so 70,000\n#### 70,000", "70,000", true},
		{"gsm8k hashes negative", "#### -5", "-5", true},
		{"hashes then more text", "#### 42\nDone.", "42", true},
		{"answer is number", "The answer is 42.", "42", true},
		{"answer is math", "So the final answer is $\\frac{1}{2}$.", `\frac{1}{2}`, true},
		{"answer colon", "Answer: 17 apples", "17", true},
		{"answer is negative", "Therefore the answer is -3.", "-3", true},
		{"answer bold", "The answer is **25**.", "25", true},
		{"last number", "We get 3 apples and then 5 pears", "5", true},
		{"last number decimal", "Total cost: $18.90.", "18.90", true},
		{"last number thousands", "He made 1,250 dollars", "1,250", true},
		{"last number bare decimal", "p is .35", ".35", true},
		{"last number ratio", "probability 3/4", "3/4", true},
		{"hyphen is not minus", "pages 3-4", "4", true},
		{"minus after equals", "x =-4", "-4", true},
		{"no answer", "I do not know.", "", false},
		{"empty", "", "", false},
		{"boxed wins over hashes", "#### 5\n\\boxed{6}", "6", true},
		{"boxedfoo is not boxed", `\boxedfoo{1} 2`, "2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Extract(tt.text)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Extract(%q) = %q, %v; want %q, %v", tt.text, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestGold(t *testing.T) {
	tests := []struct{ field, want string }{
		{"Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day at the farmer’s market.\n#### 18", "18"},
		{"So he made a profit of 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70000", "70000"},
		{"He has 2,125 left\n#### 2,125", "2,125"},
		{`Therefore, the polar coordinates are $\boxed{\left( 3, \frac{\pi}{2} \right)}.$`, `\left( 3, \frac{\pi}{2} \right)`},
		{`\frac{14}{3}`, `\frac{14}{3}`},
		{`  \text{(C)} `, `\text{(C)}`},
		{"42", "42"},
		{"", ""},
		{"   ", ""},
	}
	for _, tt := range tests {
		if got := Gold(tt.field); got != tt.want {
			t.Errorf("Gold(%q) = %q, want %q", tt.field, got, tt.want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"42", "42"},
		{"0.5", "1/2"},
		{`\frac12`, "1/2"},
		{`\dfrac{17}{50}`, "17/50"},
		{`\tfrac{1}{4}`, "1/4"},
		{`\frac{270}7\text{ degrees}`, "270/7"},
		{`137 \frac{1}{2}`, "275/2"},
		{`1\frac{4}{5}`, "9/5"},
		{`-\frac{3}{8}`, "-3/8"},
		{`\$32,\!348`, "32348"},
		{`11,\! 111,\! 111,\! 100`, "11111111100"},
		{`1{,}000`, "1000"},
		{`864 \mbox{ inches}^2`, "864"},
		{`30^\circ`, "30"},
		{`30^{\circ}`, "30"},
		{`50\%`, "50"},
		{`\text{Evelyn}`, "evelyn"},
		{`\text{(C)}`, "C"},
		{`\left( \frac{3}{2}, -13 \right)`, "(3/2,-13)"},
		{`\left(\frac{3}{5},\frac{8}{3}\right]`, "(3/5,8/3]"},
		{`\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}`, "matrix[1/5;-18/5]"},
		{`3, 5, 7`, "{3,5,7}"},
		{`7, 3, 5`, "{3,5,7}"},
		{`\{1\pm\sqrt{5},-2\}`, `{-2,1\pm\sqrt{5}}`},
		{`x \in [-2,7]`, "[-2,7]"},
		{`y = 2x + 3`, "2x+3"},
		{`4210_{5}`, "4210_5"},
		{`\cot x`, `\cot x`},
		{`11\sqrt2`, `11\sqrt{2}`},
		{`$\boxed{5}$`, "5"},
		{"", ""},
		{`\,`, ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// equivalenceCases are gold answers taken from ../shared/data (MATH-500, MATH,
// GSM8K) paired with variants a model writes, and near misses that must not match.
var equivalenceCases = []struct {
	gold, pred string
	want       bool
}{
	// integers and GSM8K answers
	{"18", "18", true},
	{"18", "18.0", true},
	{"18", "18.00", true},
	{"18", "$18", true},
	{"18", `\$18`, true},
	{"18", "18 dollars", true},
	{"18", "18.", true},
	{"18", "17", false},
	{"70000", "70,000", true},
	{"70000", `70{,}000`, true},
	{"70000", `70\,000`, true},
	{"2,125", "2125", true},
	{"1,450,000", "1450000", true},
	{"1,450,000", "1,450,001", false},
	{"-1", "-1", true},
	{"-1", "1", false},
	{"0", "-0", true},
	{"0", "0.0", true},
	{"540", "540 meters", true},
	{"5", "x = 5", true},
	{"x=5", "5", true},
	{"x=5", "x = 5", true},
	{"x=5", "y=6", false},
	{"12", `12\text{ cm}`, true},
	{`15\mbox{ cm}^2`, "15", true},
	{`15\mbox{ cm}^2`, `15 \text{ cm}^2`, true},
	{`864 \mbox{ inches}^2`, "864", true},
	{`5.4 \text{ cents}`, "5.4", true},
	{`5.4 \text{ cents}`, "5.40", true},
	{`\$18.90`, "18.9", true},
	{`\$18.90`, "18.91", false},
	{`\$32,\!348`, "32348", true},
	{`10,\!080`, "10080", true},
	{`11,\! 111,\! 111,\! 100`, "11111111100", true},
	{"58,500", "58500", true},
	// degrees and percent
	{`30^\circ`, "30", true},
	{`30^\circ`, `30^{\circ}`, true},
	{`30^\circ`, "30°", true},
	{`30^\circ`, `30 \text{ degrees}`, true},
	{`120^\circ`, "60", false},
	{`90^\circ`, "90 degrees", true},
	{"50", `50\%`, true},
	{"50", "50%", true},
	// fractions and decimals
	{`\frac{1}{2}`, "0.5", true},
	{`\frac{1}{2}`, "1/2", true},
	{`\frac{1}{2}`, `\frac12`, true},
	{`\frac{1}{2}`, `\dfrac{1}{2}`, true},
	{`\frac{1}{2}`, `\tfrac12`, true},
	{`\frac{1}{2}`, `\frac{2}{4}`, true},
	{`\frac{1}{2}`, `\frac{1}{3}`, false},
	{`\frac{1}{4}`, "0.25", true},
	{`\frac{1}{3}`, "0.333", false},
	{`\frac{3}{2}`, "1.5", true},
	{`\frac 34`, `\frac{3}{4}`, true},
	{`\frac 59`, "5/9", true},
	{`\frac9{19}`, `\frac{9}{19}`, true},
	{`\frac43`, "4/3", true},
	{`\dfrac{33}{100}`, "0.33", true},
	{`\dfrac{17}{50}`, "0.34", true},
	{`-\frac{3}{8}`, "-0.375", true},
	{`-\frac{3}{8}`, `\frac{-3}{8}`, true},
	{`-\frac{3}{8}`, "0.375", false},
	{`-\frac{35}{9}`, "-35/9", true},
	{`\frac{270}7\text{ degrees}`, `\frac{270}{7}`, true},
	{`137 \frac{1}{2}`, "137.5", true},
	{`1\frac{4}{5}`, "1.8", true},
	{`1\frac{4}{5}`, `\frac{9}{5}`, true},
	{".35625", "0.35625", true},
	{".35625", `\frac{57}{160}`, true},
	{".0000672", "0.0000672", true},
	{".0000672", "0.0000673", false},
	{"0.15", `\frac{3}{20}`, true},
	{"1.25", `\frac54`, true},
	{"4.5", "9/2", true},
	{"3.21", "3.2", false},
	{`\frac{448}{15625}`, "0.028672", true},
	// radicals, pi, closed forms
	{`\sqrt{5}`, `\sqrt5`, true},
	{`11\sqrt2`, `11\sqrt{2}`, true},
	{`11\sqrt2`, `11 \sqrt{2}`, true},
	{`2\sqrt{5}`, `\sqrt{20}`, true},
	{`2 \sqrt{5}`, `2\sqrt{5}`, true},
	{`\frac{\sqrt{3}}{3}`, `\frac{1}{\sqrt{3}}`, true},
	{`\frac{\sqrt{3}}{3}`, `\frac{\sqrt3}{3}`, true},
	{`\frac{\sqrt{3}}{3}`, `\frac{\sqrt{3}}{2}`, false},
	{`\frac{3\sqrt{3}}{4}`, `\frac34\sqrt3`, true},
	{`3\sqrt{13}`, `\sqrt{117}`, true},
	{`-\sqrt{3}`, `-\sqrt3`, true},
	{`-\sqrt{3}`, `\sqrt{3}`, false},
	{`1+2\sqrt{3}`, `2\sqrt{3}+1`, true},
	{`\pi`, `\pi`, true},
	{`8 \pi`, `8\pi`, true},
	{`12\pi`, `12 \pi`, true},
	{`-\frac{\pi}{6}`, `-\frac16\pi`, true},
	{`\frac{20000}{\pi}`, `\frac{20000}{\pi}`, true},
	{`18+2\pi`, `2\pi+18`, true},
	{`288 \pi`, `287\pi`, false},
	{`\sqrt{66}`, `\sqrt{65}`, false},
	// tuples, intervals, sets, matrices
	{"(8,-2)", "(8, -2)", true},
	{"(8,-2)", "(-2,8)", false},
	{"(8,-2)", "[8,-2]", false},
	{`\left( \frac{3}{2}, -13 \right)`, "(1.5, -13)", true},
	{`\left( 3, \frac{\pi}{2} \right)`, `(3,\frac{\pi}{2})`, true},
	{`\left( 3, \frac{\pi}{2} \right)`, `\left(3, \frac{\pi}{3}\right)`, false},
	{"(1,-16,-4,43)", "(1, -16, -4, 43)", true},
	{"(1,-16,-4,43)", "(1, -16, -4)", false},
	{"(6,31,-1)", `\left(6,31,-1\right)`, true},
	{"(3,4]", "(3, 4]", true},
	{"(3,4]", "(3,4)", false},
	{"(3,4]", "[3,4]", false},
	{`\left(\frac{3}{5},\frac{8}{3}\right]`, "(0.6, 8/3]", true},
	{`(-\infty, 0]`, `(-\infty,0]`, true},
	{`(-\infty, 0]`, `(-\infty,0)`, false},
	{`(-\infty, 2) \cup (3, \infty)`, `(-\infty,2)\cup(3,\infty)`, true},
	{`(-\infty, 2) \cup (3, \infty)`, `(-\infty,2]\cup(3,\infty)`, false},
	{`(0,9) \cup (9,36)`, `(0, 9) \cup (9, 36)`, true},
	{`x \in [-2,7]`, "[-2,7]", true},
	{`x \in [-2,7]`, "[-2, 7]", true},
	{`\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]`, `[\frac{\pi^2}{8},\frac{5\pi^2}{4}]`, true},
	{"3, 5, 7", "3,5,7", true},
	{"3, 5, 7", "7, 5, 3", true},
	{"3, 5, 7", "3, 5", false},
	{"1,-2", "-2, 1", true},
	{"-2,1", "1,-2", true},
	{`\{1\pm\sqrt{5},-2\}`, `-2, 1\pm\sqrt5`, true},
	{`\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}`, `\begin{pmatrix} \frac15 \\ -\frac{18}{5} \end{pmatrix}`, true},
	{`\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}`, `\begin{bmatrix} 0.2 \\ -3.6 \end{bmatrix}`, true},
	{`\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}`, `\begin{pmatrix}-1&0\\0&-1\end{pmatrix}`, true},
	{`\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}`, `\begin{pmatrix}-1&0\\0&1\end{pmatrix}`, false},
	{`\begin{pmatrix} -7 \\ 16 \\ 5 \end{pmatrix}`, "(-7,16,5)", false},
	// expressions, complex numbers, text
	{"y = 2x + 3", "2x+3", true},
	{"y = 2x + 3", "y=2x+3", true},
	{"y = 2x + 3", "y=3x+2", false},
	{"y = -2x", "-2x", true},
	{"-2 + 7i", "-2+7i", true},
	{"6 - 5i", "6-5i", true},
	{"6 - 5i", "6+5i", false},
	{"x^3+3x-6", "x^3 + 3x - 6", true},
	{"8n^2 + 4n + 1", "8n^2+4n+1", true},
	{"(a+5)(b+2)", "(a+5)(b+2)", true},
	{"(a+5)(b+2)", "(a+5)(b+3)", false},
	{`\frac{11+9a}{20}`, `\dfrac{11+9a}{20}`, true},
	{`4210_{5}`, "4210_5", true},
	{"52_8", "52_{8}", true},
	{"52_8", "52", false},
	{`\cot x`, `\cot x`, true},
	{`\cot x`, `\tan x`, false},
	{`\text{(C)}`, "C", true},
	{`\text{(C)}`, "(C)", true},
	{`\text{(C)}`, `\text{(B)}`, false},
	{`\text{Evelyn}`, "Evelyn", true},
	{`\text{Evelyn}`, "evelyn", true},
	{`\text{east}`, "East", true},
	{`\text{even}`, `\text{odd}`, false},
	{"p - q", "p-q", true},
	{"3R^2", "3R^2", true},
	// more ways a model writes an answer

	{`5\text{ dollars}`, "5", true},
	{`\$5.00`, "5", true},
	{`\dfrac{1}{2}.`, "0.5", true},
	{`3\%`, "3", true},
	{`\textbf{(C)}`, "C", true},
	{`\mathrm{(C)}`, "(C)", true},
	{"C", "c", false},
	{`\frac{-1}{2}`, "-0.5", true},
	{`-\dfrac{1}{2}`, `\frac{-1}{2}`, true},
	{"1/2", "2/4", true},
	{`(1,2)`, `\left(1,2\right)`, true},
	{`[1,2)`, `[1, 2)`, true},
	{`\infty`, `\infty`, true},
	{`(-\infty,\infty)`, `(-\infty, \infty)`, true},
	{`\frac{\pi}{2}`, `\pi/2`, true},
	{`\frac{\pi}{2}`, `0.5\pi`, true},
	{`\frac{\pi}{2}`, `1.5707963267948966`, true},
	{`\sqrt{2}/2`, `\frac{\sqrt2}{2}`, true},
	{`2^{10}`, "1024", true},
	{`10^3`, "1000", true},
	{"1000", "1 000", true},
	{"3.0", "3", true},
	{"03", "3", true},
	{"+3", "3", true},
	{"-3", "- 3", true},
	{`x=2 \text{ or } x=3`, "2, 3", false},
	{`\pm 2`, `\pm2`, true},
	{"2i", "2i", true},
	{`\{1,2\}`, `\{2,1\}`, true},
	{`\{1,2\}`, `(1,2)`, false},
	{`a`, `b`, false},
	{"12", "12.5", false},
	{"1e3", "1000", false},
	{`\boxed{5}`, "5", true},
	{`5 \text{ cm}^2`, "5", true},
	{`5\,\text{cm}`, "5", true},
	{"5 cm", "5", true},
	{"5 square units", "5", true},
	{`90^{\circ}`, "90", true},
	{`\frac{1}{2}\text{ hour}`, "0.5", true},
	{`k = \frac{1}{2}`, "0.5", true},
	{`\theta = 30^\circ`, "30", true},
	// empty never matches
	{"", "", false},
	{"5", "", false},
}

func TestEquivalent(t *testing.T) {
	for _, tt := range equivalenceCases {
		if got := Equivalent(tt.gold, tt.pred); got != tt.want {
			t.Errorf("Equivalent(%q, %q) = %v, want %v (keys %q, %q)", tt.gold, tt.pred, got, tt.want, Normalize(tt.gold), Normalize(tt.pred))
		}
		if got := Equivalent(tt.pred, tt.gold); got != tt.want {
			t.Errorf("Equivalent(%q, %q) = %v, want %v (not symmetric)", tt.pred, tt.gold, got, tt.want)
		}
	}
}

// TestEquivalentAfterExtract checks the whole path a reward takes: extract from a
// completion, compare with a gold field.
func TestEquivalentAfterExtract(t *testing.T) {
	tests := []struct {
		completion, gold string
		want             bool
	}{
		{`So the answer is $\boxed{\dfrac{1}{2}}$.`, `\frac{1}{2}`, true},
		{`The total is $\boxed{70,\!000}$ dollars.`, "He made ... \n#### 70000", true},
		{"Janet makes 9 * 2 = 18 dollars.\nThe answer is 18.", "#### 18", true},
		{"Janet makes 9 * 2 = 18 dollars.\nThe answer is 19.", "#### 18", false},
		{`We get $x = 5$, so \boxed{x=5}.`, "5", true},
		{`\boxed{(3, \frac{\pi}{2})}`, `Therefore $\boxed{\left( 3, \frac{\pi}{2} \right)}.$`, true},
		{`The angle is \boxed{30^{\circ}}`, `30^\circ`, true},
		{"#### 1,600", "1600", true},
	}
	for _, tt := range tests {
		ans, ok := Extract(tt.completion)
		if got := ok && Equivalent(ans, Gold(tt.gold)); got != tt.want {
			t.Errorf("Extract(%q) = %q; Equivalent to Gold(%q) = %q: %v, want %v", tt.completion, ans, tt.gold, Gold(tt.gold), got, tt.want)
		}
	}
}

func TestEquivalentCasesCount(t *testing.T) {
	n := len(equivalenceCases)
	t.Logf("%d equivalence cases", n)
	if n < 100 {
		t.Fatalf("only %d equivalence cases; the suite promises at least 100", n)
	}
}

func BenchmarkExtract(b *testing.B) {
	text := "Let me think step by step. We have 3 + 4 = 7 apples, then 7 * 2 = 14.\n" +
		"So the probability is $\\frac{14}{28} = \\frac{1}{2}$, and the answer is $\\boxed{\\frac{1}{2}}$."
	for i := 0; i < b.N; i++ {
		Extract(text)
	}
}

func BenchmarkEquivalent(b *testing.B) {
	pairs := [][2]string{
		{`\frac{1}{2}`, "0.5"},
		{`\left( 3, \frac{\pi}{2} \right)`, `(3, \pi/2)`},
		{"70,000", "70000"},
		{`2\sqrt{5}`, `\sqrt{20}`},
		{"y = 2x + 3", "2x+3"},
	}
	for i := 0; i < b.N; i++ {
		p := pairs[i%len(pairs)]
		Equivalent(p[0], p[1])
	}
}

// TestLocate checks where the answer stands in the completion (the span the answer
// window of entropy and self_certainty maps to tokens): the test text marks it with a
// '|' on each side; a text without marks has no answer.
func TestLocate(t *testing.T) {
	for _, marked := range []string{
		`So \boxed{|\frac{1}{2}|}.`,
		`first \boxed{3} then \fbox{ |4| } end`,
		`spaced \boxed |5| and more`,
		"Janet sells 16 eggs.\n#### |18|\n",
		`The answer is $|x^2|$ here`,
		`answer: about |42| apples, or 43`,
		`we get 7 - 10 = |-3|`,
		`from 3-|4|`,
		`+|5| is five`,
		`no answer here`,
	} {
		text := strings.ReplaceAll(marked, "|", "")
		start, end, ok := Locate(text)
		if !strings.Contains(marked, "|") {
			if ok {
				t.Errorf("Locate(%q) = %q, want none", text, text[start:end])
			}
			continue
		}
		wantStart, wantEnd := strings.Index(marked, "|"), strings.LastIndex(marked, "|")-1
		if !ok || start != wantStart || end != wantEnd {
			t.Errorf("Locate(%q) = [%d, %d) %v, want [%d, %d)", text, start, end, ok, wantStart, wantEnd)
			continue
		}
		if ans, _ := Extract(text); ans != text[start:end] {
			t.Errorf("Extract(%q) = %q but Locate gives %q", text, ans, text[start:end])
		}
	}
}

// Echoes: an answer equivalent to a number the prompt states, signs and thousands
// separators read as the extractor reads them.
func TestEchoes(t *testing.T) {
	for _, tc := range []struct {
		prompt, ans string
		want        bool
	}{
		{"What is 86 - 70?", "86", true},
		{"What is 86 - 70?", "70", true},
		{"What is 86 - 70?", "16", false},
		{"What is 86 - 70?", "86.0", true},
		{"What is 86 - 70?", "8", false},    // a digit of a number is not the number
		{"What is -5 + 3?", "-5", true},     // the sign belongs to the number
		{"What is 12-5?", "-5", false},      // a hyphen between numbers is not a sign
		{"Add 1,000 and 24.", "1000", true}, // thousands separators
		{"Halve 3/4.", "0.75", true},        // a fraction, by value
		{"No numbers here.", "3", false},
		{"What is 2 + 2?", "", false},
		{"", "4", false},
	} {
		if got := Echoes(tc.prompt, tc.ans); got != tc.want {
			t.Errorf("Echoes(%q, %q) = %v, want %v", tc.prompt, tc.ans, got, tc.want)
		}
	}
}
