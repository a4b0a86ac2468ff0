package train

import (
	"fmt"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/policy/sampler"
)

// request is the sampler request of data row k: the chat template with the system
// prompt, or BOS + prompt for raw runs.
func (r *run) request(k int) sampler.Request {
	return r.requestFor(r.rows[k].Prompt)
}

// requestFor is the sampler request of a prompt, training's or the evaluation's: both go
// through the same system prompt and template.
func (r *run) requestFor(prompt string) sampler.Request {
	d := r.cfg.Data
	req := sampler.Request{Prompt: prompt, System: d.SystemPrompt, Raw: d.Raw}
	if d.Raw {
		req.System = ""
	}
	return req
}

// checkPrompts reads only the model's vocabulary and puts every row through the chat
// template and the tokenizer, before any model loads: a model without a template, or a
// prompt longer than the model's context, is reported now, naming the data row, rather
// than when its row is drawn (and again at every resume). It records the longest prompt,
// which sizes the sampler's KV cache.
func (r *run) checkPrompts() error {
	c := r.cfg
	v, err := sampler.LoadVocab(c.Model)
	if err != nil {
		return err
	}
	defer v.Close()
	if !c.Data.Raw && v.Info().ChatTemplate == "" {
		return fmt.Errorf("model %s has no chat template: train it on raw prompts (--raw, or data.raw = true in the config)", c.Model)
	}
	if n := v.Info().ContextLength; n > 0 && c.Sampling.MaxTokens >= n {
		return fmt.Errorf("sampling.max_tokens = %d: the model's context holds %d tokens, prompt included", c.Sampling.MaxTokens, n)
	}
	src := c.Data.Path
	for k, row := range r.rows {
		toks, err := v.PromptTokens(r.request(k))
		if err == nil {
			err = v.CheckPromptLen(len(toks))
		}
		if err != nil {
			if src == "" {
				return fmt.Errorf("built-in data: %s: %w", data.Where("", row.Line), err)
			}
			return fmt.Errorf("data %s: %s: %w", src, data.Where(src, row.Line), err)
		}
		r.longestPrompt = max(r.longestPrompt, len(toks))
	}
	for _, it := range r.evalItems {
		toks, err := v.PromptTokens(r.requestFor(it.Prompt))
		if err == nil {
			err = v.CheckPromptLen(len(toks))
		}
		if err != nil {
			return fmt.Errorf("eval.data %s: %s: %w", r.evalPath, data.Where(r.evalPath, it.Line), err)
		}
		r.longestPrompt = max(r.longestPrompt, len(toks))
	}
	return nil
}
