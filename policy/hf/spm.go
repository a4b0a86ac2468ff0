package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"
)

// spaceMark is how sentencepiece writes a space inside its pieces.
const spaceMark = "▁"

// setSentencepieceVocab writes kv's tokenizer keys for llama.cpp's sentencepiece ("llama")
// vocabulary: pieces, their scores (llama.cpp merges by them) and types, and whether "▁"
// goes before the text.
func setSentencepieceVocab(kv fsggml.KV, tokens []string, scores []float32, types []int32, spacePrefix bool) {
	kv["tokenizer.ggml.model"] = "llama"
	kv["tokenizer.ggml.pre"] = "default"
	kv["tokenizer.ggml.tokens"] = tokens
	kv["tokenizer.ggml.scores"] = scores
	kv["tokenizer.ggml.token_type"] = types
	kv["tokenizer.ggml.add_space_prefix"] = spacePrefix
}

// sentencepieceStyle is what a SentencePiece-style tokenizer.json maps to in llama.cpp's
// sentencepiece vocabulary beyond its pieces.
type sentencepieceStyle struct {
	scores      []float32
	spacePrefix bool
}

// readSentencepieceStyle recognizes a SentencePiece-style BPE tokenizer.json, the one
// transformers writes for Llama 2, Mistral, TinyLlama and their fine-tunes: spaces become
// "▁" (by a Replace normalizer, after a Prepend("▁") one in the legacy form, or by a
// Metaspace pre-tokenizer in the newer one) and characters outside the vocabulary fall
// back to the <0x00>..<0xFF> byte tokens. It returns nil for a tokenizer that does not
// write spaces as "▁" (a byte-level BPE), and an error for a SentencePiece-style one that
// llama.cpp's sentencepiece tokenizer would not reproduce. It types the byte tokens in
// types.
func readSentencepieceStyle(normalizer, preTokenizer json.RawMessage, byteFallback bool, tokens []string, types []int32, merges [][2]string) (*sentencepieceStyle, error) {
	type component struct {
		Type    string `json:"type"`
		Prepend string `json:"prepend"`
		Pattern struct {
			String *string `json:"String"`
		} `json:"pattern"`
		Content        string      `json:"content"`
		Normalizers    []component `json:"normalizers"`
		PreTokenizers  []component `json:"pretokenizers"`
		Replacement    string      `json:"replacement"`
		PrependScheme  string      `json:"prepend_scheme"`
		AddPrefixSpace *bool       `json:"add_prefix_space"`
		Split          *bool       `json:"split"`
	}
	// parse reads a component, null or absent as none, a Sequence as its members.
	parse := func(what string, raw json.RawMessage) ([]component, error) {
		var c *component
		if len(raw) == 0 {
			return nil, nil
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		switch {
		case c == nil:
			return nil, nil
		case c.Type == "Sequence" && what == "normalizer":
			return c.Normalizers, nil
		case c.Type == "Sequence":
			return c.PreTokenizers, nil
		}
		return []component{*c}, nil
	}
	name := func(cs []component) string {
		var s []string
		for _, c := range cs {
			switch {
			case c.Type == "Prepend":
				s = append(s, fmt.Sprintf("Prepend(%q)", c.Prepend))
			case c.Type == "Replace" && c.Pattern.String != nil:
				s = append(s, fmt.Sprintf("Replace(%q, %q)", *c.Pattern.String, c.Content))
			default:
				s = append(s, c.Type)
			}
		}
		return strings.Join(s, ", ")
	}
	norms, err := parse("normalizer", normalizer)
	if err != nil {
		return nil, err
	}
	pres, err := parse("pre_tokenizer", preTokenizer)
	if err != nil {
		return nil, err
	}
	isSpaceReplace := func(c component) bool {
		return c.Type == "Replace" && c.Pattern.String != nil && *c.Pattern.String == " " && c.Content == spaceMark
	}
	replaces, metaspace := false, false
	for _, c := range norms {
		replaces = replaces || isSpaceReplace(c)
	}
	for _, c := range pres {
		metaspace = metaspace || c.Type == "Metaspace"
	}
	if !replaces && !metaspace {
		return nil, nil
	}

	// llama.cpp's sentencepiece tokenizer writes spaces as "▁", puts one before the text
	// (and after each special token) when add_space_prefix is set, and merges the rest:
	// the tokenizer.json must do no more than that.
	var style sentencepieceStyle
	switch {
	case replaces && len(pres) == 0:
		switch {
		case len(norms) == 2 && norms[0].Type == "Prepend" && norms[0].Prepend == spaceMark && isSpaceReplace(norms[1]):
			style.spacePrefix = true
		case len(norms) == 1:
		default:
			return nil, fmt.Errorf("normalizer %s is not one rlif maps to llama.cpp's sentencepiece vocabulary (Prepend(%q), Replace(\" \", %q) as Llama 2's)", name(norms), spaceMark, spaceMark)
		}
	case metaspace && len(norms) == 0 && len(pres) == 1:
		m := pres[0]
		if m.Replacement != spaceMark {
			return nil, fmt.Errorf("pre_tokenizer Metaspace replaces spaces with %q; llama.cpp's sentencepiece vocabulary writes them %q", m.Replacement, spaceMark)
		}
		switch m.PrependScheme {
		case "always", "first":
			// llama.cpp puts "▁" before every text and after every special token (as
			// "always" and the legacy form do), and also where the text starts with a space
			// (where Metaspace does not); "first" omits it after special tokens. No
			// llama.cpp setting says otherwise; llama.cpp's converter maps these models so.
			style.spacePrefix = true
		case "never":
		case "":
			style.spacePrefix = m.AddPrefixSpace == nil || *m.AddPrefixSpace
		default:
			return nil, fmt.Errorf("pre_tokenizer Metaspace has prepend_scheme %q (always, first, never)", m.PrependScheme)
		}
		// Splitting at each "▁" (tokenizers' default) keeps tokens from spanning it, which
		// llama.cpp's tokenizer does not: the same only if no token holds "▁" after its start.
		if m.Split == nil || *m.Split {
			for i, t := range tokens {
				if types[i] == tokNormal && strings.Contains(strings.TrimPrefix(t, spaceMark), spaceMark) {
					return nil, fmt.Errorf("pre_tokenizer Metaspace splits the text at %q, but token %d %q holds one inside, which llama.cpp's sentencepiece tokenizer would form", spaceMark, i, t)
				}
			}
		}
	default:
		return nil, fmt.Errorf("normalizer %q with pre_tokenizer %q is not a SentencePiece-style tokenizer rlif maps to llama.cpp (Prepend(%q), Replace(\" \", %q) as Llama 2's, or Metaspace alone)", name(norms), name(pres), spaceMark, spaceMark)
	}

	// llama.cpp falls back to the byte tokens for any character outside the vocabulary;
	// without byte_fallback Hugging Face gives the unknown token there instead.
	if !byteFallback {
		return nil, fmt.Errorf("model.byte_fallback is false; llama.cpp's sentencepiece vocabulary falls back to bytes where this tokenizer gives the unknown token, so rlif maps only byte-fallback tokenizers (as Llama 2's)")
	}
	ids := make(map[string]int, len(tokens))
	for i, t := range tokens {
		ids[t] = i
	}
	for b := range 256 {
		byteToken := fmt.Sprintf("<0x%02X>", b)
		id, ok := ids[byteToken]
		if !ok {
			return nil, fmt.Errorf("model.byte_fallback is true but the vocabulary lacks the byte token %s", byteToken)
		}
		types[id] = tokByte
	}

	// llama.cpp merges, among adjacent pieces whose concatenation is a token, the pair
	// whose token scores highest (leftmost on ties); Hugging Face's BPE applies the listed
	// merge of lowest rank (leftmost on ties). A token scores minus the rank of its first
	// merge, so the two agree where the merges list every split of every token into two,
	// as transformers' converter writes them from a sentencepiece model (ordered by the
	// token's score there). A token no merge makes scores below every merged one:
	// characters, bytes and special tokens are never made by merging in llama.cpp either,
	// and a longer token that Hugging Face never forms llama.cpp forms last.
	scores := make([]float32, len(tokens))
	for i := range scores {
		scores[i] = -float32(len(merges))
	}
	for rank := len(merges) - 1; rank >= 0; rank-- {
		if id, ok := ids[merges[rank][0]+merges[rank][1]]; ok {
			scores[id] = -float32(rank)
		}
	}
	style.scores = scores
	return &style, nil
}
