package sampler

import (
	"testing"
)

// TestSampleProgress: the progress callback counts every completion once and every token
// generated, across waves, and ends at done == total.
func TestSampleProgress(t *testing.T) {
	// Two sequences at a time: three prompts of two members take three waves.
	m := loadStories(t, Options{MaxSequences: 2, ContextSize: 512})
	reqs := []Request{{Prompt: "Once upon a time", Raw: true}, {Prompt: "The dog", Raw: true}, {Prompt: "Lily saw", Raw: true}}
	type call struct{ done, total, tokens int }
	var calls []call
	p := Params{MaxTokens: 12, Temperature: 1, Seed: 5, Progress: func(done, total, tokens int) { calls = append(calls, call{done, total, tokens}) }}
	out := sample1(t, m, reqs, 2, p)
	tokens := 0
	for _, g := range out {
		for _, c := range g {
			tokens += len(c.Tokens)
		}
	}
	if len(calls) < 3 {
		t.Fatalf("%d progress calls for three waves", len(calls))
	}
	for i, c := range calls {
		if c.total != 6 || c.done > c.total {
			t.Errorf("call %d: %+v, want total 6 and done <= total", i, c)
		}
		if i > 0 && (c.done < calls[i-1].done || c.tokens < calls[i-1].tokens) {
			t.Errorf("call %d: %+v went back from %+v", i, c, calls[i-1])
		}
	}
	if last := calls[len(calls)-1]; last.done != 6 || last.tokens != tokens {
		t.Errorf("last call %+v, want 6 done and %d tokens", last, tokens)
	}
}
