package hf

import (
	"fmt"
	"strconv"

	"github.com/ollama/ollama/convert/sentencepiece"
	fsggml "github.com/ollama/ollama/fs/ggml"
	"google.golang.org/protobuf/proto"
)

// GGUF token types (llama.cpp's, the same numbers as sentencepiece's piece types).
const (
	tokNormal      = 1
	tokUnknown     = 2
	tokControl     = 3
	tokUserDefined = 4
	tokUnused      = 5
	tokByte        = 6
)

// Pre-tokenizer split patterns, as the models' own tokenizer.json files spell them
// (llama.cpp names the pre-tokenizer in tokenizer.ggml.pre; ollama's converter
// recognizes these strings by their digest).
const (
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// tokenizerFiles rebuilds the tokenizer files from the GGUF's tokenizer metadata: for a
// byte-level BPE (tokenizer.ggml.model "gpt2") tokenizer.json with vocabulary and merges,
// for a sentencepiece one ("llama") tokenizer.model; tokenizer_config.json (with the chat
// template) and special_tokens_map.json for both.
func tokenizerFiles(kv fsggml.KV) ([]File, error) {
	model := kv.String("tokenizer.ggml.model")
	tokens := kv.Strings("tokenizer.ggml.tokens")
	types := kv.Ints("tokenizer.ggml.token_type")
	if len(tokens) == 0 {
		return nil, fmt.Errorf("no tokenizer.ggml.tokens in the model")
	}
	if len(types) != 0 && len(types) != len(tokens) {
		return nil, fmt.Errorf("tokenizer.ggml.token_type has %d entries for %d tokens", len(types), len(tokens))
	}
	typeOf := func(i int) int32 {
		if len(types) == 0 {
			return tokNormal
		}
		return types[i]
	}
	tcfg := map[string]any{"clean_up_tokenization_spaces": false}
	if ctx, ok := kv[kv.String("general.architecture")+".context_length"].(uint32); ok {
		tcfg["model_max_length"] = int(ctx)
	}
	special := map[string]any{}
	for _, k := range [][2]string{{"bos", "bos"}, {"eos", "eos"}, {"unknown", "unk"}, {"padding", "pad"}} {
		if id, ok := tokenID(kv, k[0]); ok {
			if id >= len(tokens) {
				return nil, fmt.Errorf("tokenizer.ggml.%s_token_id = %d is outside the %d-token vocabulary", k[0], id, len(tokens))
			}
			tcfg[k[1]+"_token"] = tokens[id]
			special[k[1]+"_token"] = tokens[id]
		}
	}
	if t := kv.String("tokenizer.chat_template"); t != "" {
		tcfg["chat_template"] = t
	}
	addBOS := kv.Bool("tokenizer.ggml.add_bos_token", model == "llama")
	tcfg["add_bos_token"] = addBOS
	tcfg["add_eos_token"] = kv.Bool("tokenizer.ggml.add_eos_token", false)
	decoder := map[string]any{}
	for i, t := range tokens {
		if ty := typeOf(i); ty == tokControl || ty == tokUserDefined || ty == tokUnknown {
			decoder[strconv.Itoa(i)] = map[string]any{
				"content": t, "lstrip": false, "rstrip": false, "normalized": false,
				"single_word": false, "special": ty != tokUserDefined,
			}
		}
	}
	tcfg["added_tokens_decoder"] = decoder

	var files []File
	switch model {
	case "gpt2":
		tcfg["tokenizer_class"] = "PreTrainedTokenizerFast"
		tj, err := tokenizerJSON(kv, tokens, typeOf, addBOS)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: "tokenizer.json", Bytes: tj})
	case "llama":
		tcfg["tokenizer_class"] = "LlamaTokenizer"
		tcfg["legacy"] = true
		tm, err := sentencepieceModel(kv, tokens, typeOf)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Name: "tokenizer.model", Bytes: tm})
	default:
		return nil, fmt.Errorf("tokenizer.ggml.model %q has no Hugging Face form here (gpt2, llama)", model)
	}
	tc, err := jsonBytes(tcfg)
	if err != nil {
		return nil, err
	}
	sm, err := jsonBytes(special)
	if err != nil {
		return nil, err
	}
	return append(files, File{Name: "tokenizer_config.json", Bytes: tc}, File{Name: "special_tokens_map.json", Bytes: sm}), nil
}

func tokenizerJSON(kv fsggml.KV, tokens []string, typeOf func(int) int32, addBOS bool) ([]byte, error) {
	merges := kv.Strings("tokenizer.ggml.merges")
	if len(merges) == 0 {
		return nil, fmt.Errorf("a gpt2 tokenizer without tokenizer.ggml.merges")
	}
	byteLevel := func(prefix, regex bool) map[string]any {
		return map[string]any{"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": true, "use_regex": regex}
	}
	split := func(pattern string) map[string]any {
		return map[string]any{"type": "Split", "pattern": map[string]any{"Regex": pattern}, "behavior": "Isolated", "invert": false}
	}
	var pre any
	switch p := kv.String("tokenizer.ggml.pre", "default"); p {
	case "default", "gpt2", "":
		pre = byteLevel(false, true)
	case "smollm":
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Digits", "individual_digits": true}, byteLevel(false, true)}}
	case "qwen2":
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{split(qwen2Pattern), byteLevel(false, false)}}
	case "llama-bpe":
		pre = map[string]any{"type": "Sequence", "pretokenizers": []any{split(llama3Pattern), byteLevel(false, false)}}
	default:
		return nil, fmt.Errorf("tokenizer.ggml.pre %q has no Hugging Face pre-tokenizer here (default, gpt2, smollm, qwen2, llama-bpe)", p)
	}
	vocab := make(map[string]int, len(tokens))
	var added []any
	for i, t := range tokens {
		vocab[t] = i
		if ty := typeOf(i); ty == tokControl || ty == tokUserDefined {
			added = append(added, map[string]any{
				"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
				"normalized": ty == tokUserDefined, "special": ty == tokControl,
			})
		}
	}
	var post any = byteLevel(true, true)
	post.(map[string]any)["trim_offsets"] = false
	if bos, ok := tokenID(kv, "bos"); ok && addBOS {
		b := tokens[bos]
		seq := func(id string) map[string]any {
			return map[string]any{"Sequence": map[string]any{"id": id, "type_id": 0}}
		}
		sp := map[string]any{"SpecialToken": map[string]any{"id": b, "type_id": 0}}
		post = map[string]any{
			"type":           "TemplateProcessing",
			"single":         []any{sp, seq("A")},
			"pair":           []any{sp, seq("A"), sp, seq("B")},
			"special_tokens": map[string]any{b: map[string]any{"id": b, "ids": []int{bos}, "tokens": []string{b}}},
		}
	}
	tj := map[string]any{
		"version":        "1.0",
		"truncation":     nil,
		"padding":        nil,
		"added_tokens":   added,
		"normalizer":     nil,
		"pre_tokenizer":  pre,
		"post_processor": post,
		"decoder":        byteLevel(true, true),
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false,
			"ignore_merges": false, "vocab": vocab, "merges": merges,
		},
	}
	return jsonBytes(tj)
}

// sentencepieceModel writes the vocabulary with its scores and piece types as a
// sentencepiece BPE model (tokenizer.model), the file LlamaTokenizer and converters read.
func sentencepieceModel(kv fsggml.KV, tokens []string, typeOf func(int) int32) ([]byte, error) {
	scores := kv.Floats("tokenizer.ggml.scores")
	if len(scores) != len(tokens) {
		return nil, fmt.Errorf("tokenizer.ggml.scores has %d entries for %d tokens", len(scores), len(tokens))
	}
	m := &sentencepiece.ModelProto{}
	hasBytes := false
	for i, t := range tokens {
		ty := typeOf(i)
		if ty < tokNormal || ty > tokByte {
			ty = tokNormal
		}
		hasBytes = hasBytes || ty == tokByte
		m.Pieces = append(m.Pieces, &sentencepiece.ModelProto_SentencePiece{
			Piece: proto.String(t),
			Score: proto.Float32(scores[i]),
			Type:  sentencepiece.ModelProto_SentencePiece_Type(ty).Enum(),
		})
	}
	id := func(k string) *int32 {
		if v, ok := tokenID(kv, k); ok {
			return proto.Int32(int32(v))
		}
		return proto.Int32(-1)
	}
	m.TrainerSpec = &sentencepiece.TrainerSpec{
		ModelType:    sentencepiece.TrainerSpec_BPE.Enum(),
		VocabSize:    proto.Int32(int32(len(tokens))),
		ByteFallback: proto.Bool(hasBytes),
		UnkId:        id("unknown"),
		BosId:        id("bos"),
		EosId:        id("eos"),
		PadId:        id("padding"),
	}
	m.NormalizerSpec = &sentencepiece.NormalizerSpec{
		Name:                   proto.String("identity"),
		AddDummyPrefix:         proto.Bool(kv.Bool("tokenizer.ggml.add_space_prefix", true)),
		RemoveExtraWhitespaces: proto.Bool(false),
		EscapeWhitespaces:      proto.Bool(true),
	}
	return proto.Marshal(m)
}
