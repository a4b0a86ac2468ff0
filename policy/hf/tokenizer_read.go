package hf

// Reading a Hugging Face tokenizer (tokenizer.model, tokenizer.json, tokenizer_config.json,
// chat_template.jinja) into GGUF tokenizer keys.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ollama/ollama/convert/sentencepiece"
	fsggml "github.com/ollama/ollama/fs/ggml"
	"google.golang.org/protobuf/proto"
)

// readTokenizer fills kv's tokenizer keys from tokenizer.model (sentencepiece) or
// tokenizer.json (BPE, see readTokenizerJSON), tokenizer_config.json and
// chat_template.jinja.
func readTokenizer(d *modelDir, kv fsggml.KV, c hfConfig, opt ConvertOptions) error {
	dir := d.dir
	var tokens []string
	if b, err := d.read("tokenizer.model"); err == nil {
		var m sentencepiece.ModelProto
		if err := proto.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s: not a sentencepiece model: %w", filepath.Join(dir, "tokenizer.model"), err)
		}
		if len(m.GetPieces()) == 0 {
			return fmt.Errorf("%s: the sentencepiece model has no pieces", filepath.Join(dir, "tokenizer.model"))
		}
		types := make([]int32, len(m.GetPieces()))
		scores := make([]float32, len(m.GetPieces()))
		for i, p := range m.GetPieces() {
			tokens = append(tokens, p.GetPiece())
			scores[i] = p.GetScore()
			types[i] = int32(p.GetType())
		}
		setSentencepieceVocab(kv, tokens, scores, types, m.GetNormalizerSpec().GetAddDummyPrefix())
		for _, k := range []struct {
			key string
			id  int32
		}{{"bos", m.GetTrainerSpec().GetBosId()}, {"eos", m.GetTrainerSpec().GetEosId()}, {"unknown", m.GetTrainerSpec().GetUnkId()}, {"padding", m.GetTrainerSpec().GetPadId()}} {
			if k.id >= 0 && int(k.id) < len(tokens) {
				kv["tokenizer.ggml."+k.key+"_token_id"] = uint32(k.id)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if tokens, err = readTokenizerJSON(d, kv); err != nil {
		return err
	}
	// tokenizer_config.json: special tokens, BOS policy and the chat template.
	tcPath := filepath.Join(dir, "tokenizer_config.json")
	var tc map[string]json.RawMessage
	if b, err := d.read("tokenizer_config.json"); err == nil {
		if err := json.Unmarshal(b, &tc); err != nil {
			return fmt.Errorf("%s: %w", tcPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	ids := map[string]int{}
	for i, t := range tokens {
		if _, dup := ids[t]; !dup {
			ids[t] = i
		}
	}
	for _, k := range []struct{ hf, gguf string }{{"bos_token", "bos"}, {"eos_token", "eos"}, {"unk_token", "unknown"}, {"pad_token", "padding"}} {
		s, err := tokenString(tc[k.hf])
		if err != nil {
			return fmt.Errorf("%s: %s: %w", tcPath, k.hf, err)
		}
		if s == "" {
			continue
		}
		id, ok := ids[s]
		if !ok {
			return fmt.Errorf("%s: %s %q is not in the vocabulary", tcPath, k.hf, s)
		}
		kv["tokenizer.ggml."+k.gguf+"_token_id"] = uint32(id)
	}
	// sentencepiece types its unknown piece UNKNOWN, where tokenizer.json lists it among
	// the special tokens: llama.cpp renders it by that type, and sentencepiece, reading the
	// tokenizer.model an export writes, requires one.
	if types, ok := kv["tokenizer.ggml.token_type"].([]int32); ok && kv["tokenizer.ggml.model"] == "llama" {
		if id, ok := kv["tokenizer.ggml.unknown_token_id"].(uint32); ok {
			types[id] = tokUnknown
		}
	}
	for k, key := range map[string]any{"bos": c.BOS, "eos": c.EOS} {
		if _, ok := kv["tokenizer.ggml."+k+"_token_id"]; ok {
			continue
		}
		if id, ok := firstID(key); ok && id < len(tokens) {
			kv["tokenizer.ggml."+k+"_token_id"] = uint32(id)
		}
	}
	// BOS first: as tokenizer_config.json's add_bos_token says, else as tokenizer.json's
	// post-processor does (readTokenizerJSON read it), else sentencepiece's default (yes).
	addBOS, ok := kv["tokenizer.ggml.add_bos_token"].(bool)
	if !ok {
		addBOS = kv["tokenizer.ggml.model"] == "llama"
	}
	if v, ok := tc["add_bos_token"]; ok {
		if err := json.Unmarshal(v, &addBOS); err != nil {
			return fmt.Errorf("%s: add_bos_token: %w", tcPath, err)
		}
	}
	kv["tokenizer.ggml.add_bos_token"] = addBOS
	if v, ok := tc["add_eos_token"]; ok {
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("%s: add_eos_token: %w", tcPath, err)
		}
		kv["tokenizer.ggml.add_eos_token"] = b
	}
	tmpl, err := chatTemplate(d, tc["chat_template"])
	if err != nil {
		return err
	}
	if tmpl == "" && !opt.AllowNoTemplate {
		return fmt.Errorf("%s: no chat_template (nor chat_template.jinja); rlif's chat prompts need one (a base model fed raw prompts: convert with --raw)", tcPath)
	}
	if tmpl != "" {
		kv["tokenizer.chat_template"] = tmpl
	}
	return nil
}

// tokenString reads a special token as tokenizer_config.json writes it: a string, or an
// AddedToken object with its content.
func tokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var o struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		return "", fmt.Errorf("want a string or an object with content")
	}
	return o.Content, nil
}

// firstID reads a config.json token id: a number or a list of numbers (the first).
func firstID(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		return int(x), x >= 0
	case []any:
		if len(x) > 0 {
			return firstID(x[0])
		}
	}
	return 0, false
}

// chatTemplate reads the template from tokenizer_config.json (a string, or a list of
// named templates whose "default" is taken) or, as newer transformers save it, from
// chat_template.jinja.
func chatTemplate(d *modelDir, raw json.RawMessage) (string, error) {
	if len(raw) > 0 && string(raw) != "null" {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			return s, nil
		}
		var named []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &named); err != nil {
			return "", fmt.Errorf("%s: chat_template is neither a string nor a list of named templates", filepath.Join(d.dir, "tokenizer_config.json"))
		}
		for _, n := range named {
			if n.Name == "default" {
				return n.Template, nil
			}
		}
	}
	b, err := d.read("chat_template.jinja")
	if err == nil {
		return string(b), nil
	}
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return "", err
}

// readTokenizerJSON reads a BPE tokenizer.json into kv and returns the tokens: a
// byte-level one as llama.cpp's "gpt2" vocabulary (merges and a pre-tokenizer), a
// SentencePiece-style one (spaces written "▁", byte fallback) as its "llama" vocabulary.
func readTokenizerJSON(d *modelDir, kv fsggml.KV) ([]string, error) {
	p := filepath.Join(d.dir, "tokenizer.json")
	b, err := d.read("tokenizer.json")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: not found (nor tokenizer.model); the tokenizer is required", p)
		}
		return nil, err
	}
	var tj struct {
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Model         struct {
			Type         string          `json:"type"`
			Vocab        map[string]int  `json:"vocab"`
			Merges       json.RawMessage `json:"merges"`
			ByteFallback bool            `json:"byte_fallback"`
			UnkToken     string          `json:"unk_token"`
		} `json:"model"`
	}
	if err := json.Unmarshal(b, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: model type %q is not supported (BPE; a Unigram sentencepiece model needs its tokenizer.model)", p, tj.Model.Type)
	}
	n := 0
	for _, id := range tj.Model.Vocab {
		n = max(n, id+1)
	}
	for _, a := range tj.AddedTokens {
		n = max(n, a.ID+1)
	}
	if n > 1<<24 {
		return nil, fmt.Errorf("%s: token id %d is implausibly large", p, n-1)
	}
	tokens := make([]string, n)
	types := make([]int32, n)
	set := make([]bool, n)
	for t, id := range tj.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("%s: token %q has id %d", p, t, id)
		}
		tokens[id], types[id], set[id] = t, tokNormal, true
	}
	for _, a := range tj.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("%s: added token %q has id %d", p, a.Content, a.ID)
		}
		tokens[a.ID], set[a.ID] = a.Content, true
		types[a.ID] = tokUserDefined
		if a.Special {
			types[a.ID] = tokControl
		}
	}
	for i, ok := range set {
		if !ok {
			tokens[i], types[i] = fmt.Sprintf("[PAD%d]", i), tokUnused
		}
	}
	merges, err := bpeMerges(tj.Model.Merges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if bos, ok := bosFirst(tj.PostProcessor); ok {
		kv["tokenizer.ggml.add_bos_token"] = bos
	}
	spm, err := readSentencepieceStyle(tj.Normalizer, tj.PreTokenizer, tj.Model.ByteFallback, tokens, types, merges)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; the model's sentencepiece tokenizer.model, put beside it, is read instead", p, err)
	}
	if spm != nil {
		setSentencepieceVocab(kv, tokens, spm.scores, types, spm.spacePrefix)
		// tokenizer_config.json's unk_token, read after, overrides it.
		if id, ok := tj.Model.Vocab[tj.Model.UnkToken]; ok {
			kv["tokenizer.ggml.unknown_token_id"] = uint32(id)
		}
		return tokens, nil
	}
	pre, err := preName(tj.PreTokenizer)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	kv["tokenizer.ggml.model"] = "gpt2"
	kv["tokenizer.ggml.pre"] = pre
	kv["tokenizer.ggml.tokens"] = tokens
	kv["tokenizer.ggml.token_type"] = types
	joined := make([]string, len(merges))
	for i, m := range merges {
		joined[i] = m[0] + " " + m[1]
	}
	kv["tokenizer.ggml.merges"] = joined
	return tokens, nil
}

// bpeMerges reads tokenizer.json's merges in either form tokenizers has written: "a b"
// strings (older) or [a, b] pairs (newer, which allows a space inside a token).
func bpeMerges(raw json.RawMessage) ([][2]string, error) {
	var joined []string
	if err := json.Unmarshal(raw, &joined); err != nil {
		var lists [][]string
		if err := json.Unmarshal(raw, &lists); err != nil {
			return nil, fmt.Errorf("merges are neither strings nor pairs")
		}
		pairs := make([][2]string, len(lists))
		for i, l := range lists {
			if len(l) != 2 {
				return nil, fmt.Errorf("merge %d %q is not a pair", i, l)
			}
			pairs[i] = [2]string{l[0], l[1]}
		}
		return pairs, nil
	}
	pairs := make([][2]string, len(joined))
	for i, m := range joined {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return nil, fmt.Errorf("merge %d %q is not two tokens", i, m)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

// bosFirst reads whether tokenizer.json's post-processor puts a special token (BOS)
// before the text: a TemplateProcessing, alone or in a Sequence, whose single template
// begins with a SpecialToken. ok is false when it has no template.
func bosFirst(raw json.RawMessage) (bos, ok bool) {
	type processor struct {
		Type   string `json:"type"`
		Single []struct {
			SpecialToken json.RawMessage `json:"SpecialToken"`
		} `json:"single"`
		Processors []processor `json:"processors"`
	}
	var p processor
	if json.Unmarshal(raw, &p) != nil {
		return false, false
	}
	for _, q := range append([]processor{p}, p.Processors...) {
		if q.Type == "TemplateProcessing" {
			return len(q.Single) > 0 && q.Single[0].SpecialToken != nil, true
		}
	}
	return false, false
}

// preName names llama.cpp's pre-tokenizer for a tokenizer.json pre_tokenizer.
func preName(raw json.RawMessage) (string, error) {
	type pt struct {
		Type    string `json:"type"`
		Pattern struct {
			Regex string `json:"Regex"`
		} `json:"pattern"`
		UseRegex         bool `json:"use_regex"`
		IndividualDigits bool `json:"individual_digits"`
		PreTokenizers    []pt `json:"pretokenizers"`
	}
	var p pt
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("pre_tokenizer: %w", err)
	}
	seq := p.PreTokenizers
	if p.Type != "Sequence" {
		seq = []pt{p}
	}
	var kinds []string
	for _, s := range seq {
		k := s.Type
		switch {
		case s.Type == "Split" && s.Pattern.Regex == qwen2Pattern:
			k = "Split(qwen2)"
		case s.Type == "Split" && s.Pattern.Regex == llama3Pattern:
			k = "Split(llama3)"
		case s.Type == "ByteLevel" && s.UseRegex:
			k = "ByteLevel(regex)"
		case s.Type == "Digits" && s.IndividualDigits:
			k = "Digits(individual)"
		}
		kinds = append(kinds, k)
	}
	switch strings.Join(kinds, ",") {
	case "ByteLevel(regex)":
		return "gpt2", nil
	case "Digits(individual),ByteLevel(regex)":
		return "smollm", nil
	case "Split(qwen2),ByteLevel":
		return "qwen2", nil
	case "Split(llama3),ByteLevel":
		return "llama-bpe", nil
	}
	return "", fmt.Errorf("pre_tokenizer %s is not one rlif maps to llama.cpp (GPT-2, SmolLM, Qwen2, Llama 3)", strings.Join(kinds, ", "))
}
