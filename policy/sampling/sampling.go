// Package sampling holds the sampling parameters and their one validation, shared by the
// sampler and by everything that configures it (rlif sample, rlif eval, a run's
// [sampling] table). It has no cgo, so configurations are checked without llama.cpp.
package sampling

import (
	"fmt"
	"strings"

	"github.com/rlif/rlif/internal/num"
)

// Params control sampling.
type Params struct {
	MaxTokens   int      // most tokens generated per completion (> 0)
	Temperature float64  // 0 samples greedily
	TopP        float64  // nucleus sampling; 0 or 1 disables
	TopK        int      // 0 disables
	MinP        float64  // 0 disables
	Stop        []string // generation stops when the text contains one of these
	Seed        uint64   // the same seed gives the same completions
	// Progress, when set, is called after every decode step of Sample with the
	// completions finished so far, their total and the tokens generated so far, so that a
	// caller can show a long call moving. It runs on the sampling goroutine: keep it short.
	Progress func(done, total, tokens int)
}

// ParamError names the parameter that is out of range. Param is its snake_case name
// (max_tokens, temperature, top_p, top_k, min_p, stop); callers render it as their own
// key (--max-tokens, sampling.max_tokens).
type ParamError struct {
	Param string
	Value string
	Want  string
}

func (e *ParamError) Error() string { return fmt.Sprintf("%s = %s: want %s", e.Param, e.Value, e.Want) }

// Flag renders the error with the parameter as a command-line flag (--top-p).
func (e *ParamError) Flag() string {
	return fmt.Sprintf("--%s %s: want %s", strings.ReplaceAll(e.Param, "_", "-"), e.Value, e.Want)
}

// Validate checks every parameter: NaN and infinities are refused everywhere (a NaN
// temperature would sample nothing and say nothing).
func (p Params) Validate() error {
	bad := func(param string, v any, want string) error {
		return &ParamError{Param: param, Value: fmt.Sprint(v), Want: want}
	}
	switch {
	case p.MaxTokens <= 0:
		return bad("max_tokens", p.MaxTokens, ">= 1")
	case !num.Finite(p.Temperature) || p.Temperature < 0:
		return bad("temperature", p.Temperature, "a finite number >= 0 (0 decodes greedily)")
	case !num.Finite(p.TopP) || p.TopP < 0 || p.TopP > 1:
		return bad("top_p", p.TopP, "a number in [0, 1] (1 disables)")
	case p.TopK < 0:
		return bad("top_k", p.TopK, ">= 0 (0 disables)")
	case !num.Finite(p.MinP) || p.MinP < 0 || p.MinP > 1:
		return bad("min_p", p.MinP, "a number in [0, 1] (0 disables)")
	}
	for _, s := range p.Stop {
		if s == "" {
			return bad("stop", `""`, "a non-empty string")
		}
	}
	return nil
}

// CheckThreads refuses a negative thread count (0 means all cores).
func CheckThreads(param string, n int) error {
	if n < 0 {
		return &ParamError{Param: param, Value: fmt.Sprint(n), Want: ">= 0 (0 uses all cores)"}
	}
	return nil
}
