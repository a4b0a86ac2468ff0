package sampling

import (
	"math"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Params{MaxTokens: 16, Temperature: 0.9, TopP: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid params: %v", err)
	}
	for _, tc := range []struct {
		name        string
		change      func(*Params)
		param, flag string
	}{
		{"no tokens", func(p *Params) { p.MaxTokens = 0 }, "max_tokens", "--max-tokens 0"},
		{"NaN temperature", func(p *Params) { p.Temperature = math.NaN() }, "temperature", "--temperature NaN"},
		{"infinite temperature", func(p *Params) { p.Temperature = math.Inf(1) }, "temperature", "--temperature +Inf"},
		{"negative temperature", func(p *Params) { p.Temperature = -1 }, "temperature", "--temperature -1"},
		{"NaN top-p", func(p *Params) { p.TopP = math.NaN() }, "top_p", "--top-p NaN"},
		{"top-p above 1", func(p *Params) { p.TopP = 1.5 }, "top_p", "--top-p 1.5"},
		{"negative top-k", func(p *Params) { p.TopK = -1 }, "top_k", "--top-k -1"},
		{"NaN min-p", func(p *Params) { p.MinP = math.NaN() }, "min_p", "--min-p NaN"},
		{"empty stop", func(p *Params) { p.Stop = []string{"x", ""} }, "stop", "--stop \"\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.change(&p)
			err := p.Validate()
			pe, isParam := err.(*ParamError)
			if !isParam || pe.Param != tc.param || !strings.HasPrefix(pe.Flag(), tc.flag+": want ") || !strings.HasPrefix(pe.Error(), tc.param+" = ") {
				t.Fatalf("err %v (flag form %q), want one naming %s", err, flagOf(err), tc.param)
			}
		})
	}
	if err := CheckThreads("threads", -4); err == nil || !strings.Contains(err.Error(), "threads = -4") {
		t.Errorf("threads -4: %v", err)
	}
	if err := CheckThreads("threads", 0); err != nil {
		t.Errorf("threads 0: %v", err)
	}
}

func flagOf(err error) string {
	if pe, ok := err.(*ParamError); ok {
		return pe.Flag()
	}
	return ""
}
