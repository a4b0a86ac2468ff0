package answer

import (
	"strings"
	"testing"
)

func seedCorpus(f *testing.F) {
	for _, tt := range equivalenceCases {
		f.Add(tt.gold, tt.pred)
	}
	f.Add(`\boxed{\frac{1}{2}}`, "#### 7")
	f.Add(`\boxed{`, `\frac{`)
	f.Add(`{{{{}}}}`, `\sqrt[`)
	f.Add(`\left(\right]`, `\{\}`)
	f.Add("10^{1000}", `2^{2^{2^{2^{2}}}}`)
	f.Add(`\frac{1}{0}`, "1/0")
}

// FuzzExtract checks that Extract never panics, returns only answers with a
// non-empty key, and that what it returns is equivalent to itself and is found
// again when the completion is boxed.
func FuzzExtract(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, text, _ string) {
		ans, ok := Extract(text)
		if start, end, found := Locate(text); found != ok || found && text[start:end] != ans {
			t.Fatalf("Locate(%q) = [%d, %d) %v, but Extract = %q, %v", text, start, end, found, ans, ok)
		}
		if !ok {
			if ans != "" {
				t.Fatalf("Extract(%q) = %q with ok=false", text, ans)
			}
			return
		}
		if Normalize(ans) == "" {
			t.Fatalf("Extract(%q) = %q whose key is empty", text, ans)
		}
		if !Equivalent(ans, ans) {
			t.Fatalf("Extract(%q) = %q is not equivalent to itself (key %q)", text, ans, Normalize(ans))
		}
		if !strings.ContainsAny(ans, "{}") {
			again, ok := Extract(`so \boxed{` + ans + `}`)
			if !ok || again != strings.TrimSpace(ans) {
				t.Fatalf("boxing %q extracts %q, %v", ans, again, ok)
			}
		}
		_ = Gold(text)
	})
}

// FuzzEquivalent checks that Equivalent never panics, is reflexive on answers with a
// key and symmetric, and that equal keys imply equivalence.
func FuzzEquivalent(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := Equivalent(a, b), Equivalent(b, a)
		if ab != ba {
			t.Fatalf("Equivalent(%q, %q) = %v but Equivalent(%q, %q) = %v", a, b, ab, b, a, ba)
		}
		ka, kb := Normalize(a), Normalize(b)
		if ka != "" && !Equivalent(a, a) {
			t.Fatalf("Equivalent(%q, itself) = false (key %q)", a, ka)
		}
		if ka != "" && ka == kb && !ab {
			t.Fatalf("equal keys %q but Equivalent(%q, %q) = false", ka, a, b)
		}
	})
}

// FuzzNormalize checks that Normalize never panics and is idempotent on its keys'
// equivalence: a key is equivalent to the answer it came from.
func FuzzNormalize(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, a, _ string) {
		k := Normalize(a)
		if k == "" {
			return
		}
		if Normalize(k) == "" {
			t.Fatalf("Normalize(%q) = %q whose own key is empty", a, k)
		}
	})
}

// FuzzEchoes checks that any bytes are safe as prompt and answer, and that an answer
// echoes only when it is non-empty and some number of the prompt is equivalent to it.
func FuzzEchoes(f *testing.F) {
	f.Add("What is 86 - 70?", "86")
	f.Add("Add 1,000 and -24.", "-24")
	f.Add("\xff\x00 3/0", "3/0")
	f.Fuzz(func(t *testing.T, prompt, ans string) {
		if Echoes(prompt, ans) && Normalize(ans) == "" {
			t.Fatalf("Echoes(%q, %q) with an empty answer", prompt, ans)
		}
	})
}
