// Package sampler is rlif's binding to llama.cpp: it loads a GGUF model, samples groups of
// completions, and streams for every generated token the sufficient statistics of the
// logits (log-probs, entropy, self-certainty term). All llama.cpp calls live here.
//
// A Model is not safe for concurrent use, and two Models of one process must not decode at
// the same time either: ggml's tinyBLAS matmul (llamafile/sgemm.cpp, which multiplies the
// bf16 and f16 weights here) hands out its tiles through one process-wide chunk counter,
// so concurrent decodes skip each other's tiles. Two contexts decoding in parallel
// goroutines produced garbage completions where each alone was right; the trainer and
// rlif eval decode one model at a time, and data-parallel ranks are processes.
package sampler

/*
#include <stdlib.h>
#include "ggml-backend.h"
#include "llama.h"
#include "stats.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/rlif/rlif/internal/inputfile"
	"github.com/rlif/rlif/internal/meminfo"
	"github.com/rlif/rlif/policy/rollout"
)

// Options configure how a model is loaded.
type Options struct {
	// Threads for decoding; 0 means all cores.
	Threads int
	// GPULayers is the number of layers offloaded to a GPU backend when one is loaded
	// (see README, "GPU"); -1 offloads all. Ignored on a CPU-only build.
	GPULayers int
	// ContextSize is the number of KV cache cells, shared by all sequences decoded
	// together; 0 means 8192.
	ContextSize int
	// MaxSequences is the number of sequences that can be decoded together; 0 means 64.
	MaxSequences int
	// BatchSize is the most tokens one llama_decode call takes; 0 means 512.
	BatchSize int
	// KVCacheF32 keeps the KV cache in f32 instead of f16, and attention in f32 (flash
	// attention off). Parity checks need it: f16 attention moves log-probs by ~1e-3 on f32
	// weights, more on quantized ones.
	KVCacheF32 bool
	// NoFlashAttention turns off llama.cpp's flash attention, which is otherwise on: with
	// many sequences decoded together it is what keeps attention from scanning every other
	// sequence's KV cells (see README, "Speed").
	NoFlashAttention bool
}

func (o Options) withDefaults() Options {
	if o.Threads <= 0 {
		o.Threads = runtime.NumCPU()
	}
	if o.ContextSize <= 0 {
		o.ContextSize = 8192
	}
	if o.MaxSequences <= 0 {
		o.MaxSequences = 64
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 512
	}
	if o.GPULayers < 0 {
		o.GPULayers = 999
	}
	return o
}

// Info describes a loaded model.
type Info struct {
	Path          string `json:"path"`
	Arch          string `json:"arch"`
	Name          string `json:"name,omitempty"`
	Description   string `json:"description"`
	Params        int64  `json:"params"`
	VocabSize     int    `json:"vocab_size"`
	ContextLength int    `json:"context_length"` // the model's training context
	ChatTemplate  string `json:"chat_template,omitempty"`
	BOS           int32  `json:"bos"`
	EOS           int32  `json:"eos"`
	AddBOS        bool   `json:"add_bos"`
	// GPU is the GPU device the layers went to (ggml's description of it), "" on the CPU.
	GPU string `json:"gpu,omitempty"`
	// DeviceNote says, on one line, that GPU layers were asked for and none could be had.
	DeviceNote string `json:"-"`
}

// Model is a GGUF model loaded in llama.cpp with a context for decoding.
type Model struct {
	opt     Options
	info    Info
	model   *C.struct_llama_model
	ctx     *C.struct_llama_context
	vocab   *C.struct_llama_vocab
	adapter *C.struct_llama_adapter_lora
	batch   C.struct_llama_batch
	piece   []byte               // scratch for token_to_piece
	cands   []C.llama_token_data // scratch for the sampler chain's candidates (rlif_chain_sample)
	// weights is the draw's scratch: rlif_sample_token stores each token's weight there
	// in its statistics pass and walks them to draw, instead of computing them twice.
	weights []float32
	// vocabOnly marks a model from LoadVocab: no weights, no context.
	vocabOnly bool
	// noStats skips the per-token statistics: only the benchmark sets it, to measure
	// what they cost against the same loop without them.
	noStats bool
}

var backendOnce sync.Once

// loadMu serializes loads: llama.cpp reports load errors through its process-wide logger.
var loadMu sync.Mutex

// Load loads the GGUF model at path.
func Load(path string, opt Options) (*Model, error) {
	backendOnce.Do(initBackend)
	m := &Model{opt: opt.withDefaults(), piece: make([]byte, 256)}
	if err := m.load(path); err != nil {
		return nil, err
	}
	m.batch = C.llama_batch_init(C.int32_t(max(m.opt.BatchSize, m.opt.MaxSequences)), 0, 1)
	return m, nil
}

// LoadVocab loads only the vocabulary and metadata of the GGUF model at path: no weights
// and no decoding context, so it is cheap. It serves the checks that must come before the
// heavy loads (a chat template to apply, every prompt tokenized and measured); Sample and
// Score need a model from Load.
func LoadVocab(path string) (*Model, error) {
	backendOnce.Do(initBackend)
	m := &Model{opt: Options{}.withDefaults(), piece: make([]byte, 256), vocabOnly: true}
	if err := m.load(path); err != nil {
		return nil, err
	}
	return m, nil
}

// CheckGGUF returns an error when path is missing or is not a GGUF file.
func CheckGGUF(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		msg := fmt.Sprintf("model %s is a directory; rlif takes a GGUF model file", path)
		if _, err := os.Stat(filepath.Join(path, "config.json")); err == nil {
			msg += " (this looks like a Hugging Face model directory: `rlif convert DIR OUT.gguf` converts it, and `rlif train --model DIR` converts it itself)"
		}
		return errors.New(msg)
	}
	// llama.cpp opens the file itself and would wait forever on a named pipe.
	f, _, err := inputfile.Open(path)
	if err != nil {
		if os.IsNotExist(err) && strings.HasSuffix(path, "SmolLM2-135M-Instruct.Q4_1.gguf") {
			return fmt.Errorf("model %s: not there; `make model` fetches the default model", path)
		}
		var nr *inputfile.NotRegularError
		if errors.As(err, &nr) {
			return fmt.Errorf("model %w; rlif takes a GGUF model file", err)
		}
		return fmt.Errorf("model %s: %w", path, err)
	}
	defer f.Close()
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("GGUF")) {
		return fmt.Errorf("model %s: not a GGUF file (convert it with llama.cpp's convert_hf_to_gguf.py)", path)
	}
	return nil
}

func (m *Model) load(path string) error {
	if err := CheckGGUF(path); err != nil {
		return err
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))

	mp := C.llama_model_default_params()
	mp.n_gpu_layers = C.int32_t(m.opt.GPULayers)
	mp.vocab_only = C.bool(m.vocabOnly)
	C.rlif_clear_error()
	model := C.llama_model_load_from_file(cpath, mp)
	if model == nil {
		return fmt.Errorf("load %s: %s", path, lastError("llama.cpp could not load the model"))
	}
	if m.vocabOnly {
		m.model, m.vocab = model, C.llama_model_get_vocab(model)
		m.info = m.readInfo(path)
		return nil
	}
	// llama.cpp reports a failed KV cache allocation as an error, but an allocation the
	// system grants and cannot back ends the process later; refuse it here, in words.
	m.model = model
	if err := m.checkMemory(); err != nil {
		m.model = nil
		C.llama_model_free(model)
		return fmt.Errorf("load %s: %w", path, err)
	}
	m.model = nil
	gpu, note := "", ""
	if m.opt.GPULayers != 0 {
		switch gpus, backends := gpuDevices(), gpuBackends(); {
		case len(gpus) > 0:
			gpu = gpus[0]
		case len(backends) > 0:
			note = fmt.Sprintf("sampler: GPU layers asked for (sampling.gpu_layers), but ggml's %s backend found no GPU (its own message says why, above): sampling on the CPU", strings.Join(backends, ", "))
		default:
			note = "sampler: GPU layers asked for (sampling.gpu_layers), but no GPU backend was loaded (no lib/ollama/libggml-cuda.so beside bin/, see `make cuda`): sampling on the CPU"
		}
	}

	cp := C.llama_context_default_params()
	cp.n_ctx = C.uint32_t(m.opt.ContextSize)
	cp.n_batch = C.uint32_t(max(m.opt.BatchSize, m.opt.MaxSequences))
	cp.n_ubatch = cp.n_batch
	cp.n_seq_max = C.uint32_t(m.opt.MaxSequences)
	cp.n_threads = C.int32_t(m.opt.Threads)
	cp.n_threads_batch = C.int32_t(m.opt.Threads)
	cp.no_perf = true
	// Flash attention: llama.cpp keeps the KV cells of all sequences in one cache and masks
	// out the others', so without it every token attends over all cells of a wave (8k
	// cells for 8 groups x G=8); the flash-attention kernel skips masked cells. It computes
	// in f16, so the f32 cache of parity checks turns it off.
	cp.flash_attn = C.bool(!m.opt.KVCacheF32 && !m.opt.NoFlashAttention)
	if m.opt.KVCacheF32 {
		cp.type_k = C.GGML_TYPE_F32
		cp.type_v = C.GGML_TYPE_F32
	}
	ctx := C.llama_init_from_model(model, cp)
	if ctx == nil {
		C.llama_model_free(model)
		return fmt.Errorf("load %s: %s", path, lastError("llama.cpp could not create a context"))
	}
	m.model, m.ctx, m.vocab = model, ctx, C.llama_model_get_vocab(model)
	m.info = m.readInfo(path)
	m.info.GPU, m.info.DeviceNote = gpu, note
	return nil
}

// gpuDevices lists the GPU devices of ggml's loaded backends (a CUDA backend that found
// no GPU registers none).
func gpuDevices() []string {
	var out []string
	for i := C.size_t(0); i < C.ggml_backend_dev_count(); i++ {
		d := C.ggml_backend_dev_get(i)
		if C.ggml_backend_dev_type(d) == C.GGML_BACKEND_DEVICE_TYPE_GPU {
			out = append(out, C.GoString(C.ggml_backend_dev_description(d)))
		}
	}
	return out
}

// gpuBackends are the names of the backends loaded besides the CPU's (CUDA where
// libggml-cuda.so loaded), whether or not they found a device.
func gpuBackends() []string {
	var out []string
	for i := C.size_t(0); i < C.ggml_backend_reg_count(); i++ {
		if name := C.GoString(C.ggml_backend_reg_name(C.ggml_backend_reg_get(i))); name != "CPU" {
			out = append(out, name)
		}
	}
	return out
}

// lastError returns the first error llama.cpp logged since rlif_clear_error, or fallback.
func lastError(fallback string) string {
	s := strings.TrimSpace(C.GoString(C.rlif_last_error()))
	if s == "" {
		return fallback
	}
	// llama.cpp prefixes messages with the C function name; keep the message.
	if i := strings.Index(s, ": "); i > 0 && !strings.Contains(s[:i], " ") {
		s = s[i+2:]
	}
	return s
}

func (m *Model) readInfo(path string) Info {
	info := Info{
		Path:          path,
		Arch:          m.meta("general.architecture"),
		Name:          m.meta("general.name"),
		Params:        int64(C.llama_model_n_params(m.model)),
		VocabSize:     int(C.llama_vocab_n_tokens(m.vocab)),
		ContextLength: int(C.llama_model_n_ctx_train(m.model)),
		BOS:           int32(C.llama_vocab_bos(m.vocab)),
		EOS:           int32(C.llama_vocab_eos(m.vocab)),
		AddBOS:        bool(C.llama_vocab_get_add_bos(m.vocab)),
	}
	buf := make([]byte, 256)
	C.llama_model_desc(m.model, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	info.Description = C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
	if t := C.llama_model_chat_template(m.model, nil); t != nil {
		info.ChatTemplate = C.GoString(t)
	}
	if info.ContextLength == 0 {
		// A vocabulary-only load skips the hyperparameters; the metadata has them.
		info.ContextLength = m.metaInt("context_length")
	}
	return info
}

// metaInt returns the architecture's integer metadata key ("<arch>.key"), 0 when absent.
func (m *Model) metaInt(key string) int {
	n, err := strconv.Atoi(m.meta(m.meta("general.architecture") + "." + key))
	if err != nil {
		return 0
	}
	return n
}

// KVCacheBytes estimates the memory of a KV cache of cells cells for this model: per
// layer, a key and a value vector per KV head, in f16 (f32 with Options.KVCacheF32).
func (m *Model) KVCacheBytes(cells int) int64 {
	layers, embd := m.metaInt("block_count"), m.metaInt("embedding_length")
	heads, kvHeads := m.metaInt("attention.head_count"), m.metaInt("attention.head_count_kv")
	if kvHeads == 0 {
		kvHeads = heads
	}
	if heads == 0 {
		return 0
	}
	kDim, vDim := m.metaInt("attention.key_length"), m.metaInt("attention.value_length")
	if kDim == 0 {
		kDim = embd / heads
	}
	if vDim == 0 {
		vDim = embd / heads
	}
	elem := int64(2)
	if m.opt.KVCacheF32 {
		elem = 4
	}
	return int64(cells) * int64(layers) * int64(kvHeads) * int64(kDim+vDim) * elem
}

// maxContextCells is the most KV cells rlif asks llama.cpp for: its sizes are 32-bit.
const maxContextCells = math.MaxInt32

// checkMemory refuses a context llama.cpp cannot represent or the machine cannot hold: a
// CPU KV cache and logit rows larger than the memory available (with GPU layers the cache
// lives on the device, which llama.cpp checks itself). A request the system grants but
// cannot back would end the process later instead of returning an error.
func (m *Model) checkMemory() error {
	o := m.opt
	if o.ContextSize > maxContextCells {
		return fmt.Errorf("a context of %d KV cells (%d sequences) is more than llama.cpp takes (%d); lower the completions decoded together or the max tokens", o.ContextSize, o.MaxSequences, maxContextCells)
	}
	if o.MaxSequences > o.ContextSize {
		return fmt.Errorf("%d sequences decoded together need at least as many KV cells, the context has %d", o.MaxSequences, o.ContextSize)
	}
	if o.GPULayers != 0 {
		return nil
	}
	// One row of logits per sequence decoded together (llama.cpp's output buffer).
	vocab := int64(C.llama_vocab_n_tokens(C.llama_model_get_vocab(m.model)))
	need := m.KVCacheBytes(o.ContextSize) + int64(max(o.MaxSequences, o.BatchSize))*vocab*4
	avail, _ := meminfo.Available() // 0 where unknown
	if avail > 0 && need > avail {
		return fmt.Errorf("a KV cache of %d cells and logits for %d sequences need about %.1f GiB but %.1f GiB of memory is available; lower the completions decoded together or the max tokens",
			o.ContextSize, o.MaxSequences, float64(need)/(1<<30), float64(avail)/(1<<30))
	}
	return nil
}

func (m *Model) meta(key string) string {
	ckey := C.CString(key)
	defer C.free(unsafe.Pointer(ckey))
	buf := make([]byte, 512)
	n := C.llama_model_meta_val_str(m.model, ckey, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if n < 0 {
		return ""
	}
	return C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
}

// Info returns what the loaded model is.
func (m *Model) Info() Info { return m.info }

// Options returns the options the model was loaded with, defaults filled in.
func (m *Model) Options() Options { return m.opt }

// Close frees the model. The Model must not be used afterwards.
func (m *Model) Close() {
	if m == nil {
		return
	}
	m.free()
	if m.batch.token != nil {
		C.llama_batch_free(m.batch)
		m.batch = C.struct_llama_batch{}
	}
}

func (m *Model) free() {
	if m.adapter != nil {
		if m.ctx != nil {
			C.llama_clear_adapter_lora(m.ctx)
		}
		C.llama_adapter_lora_free(m.adapter)
		m.adapter = nil
	}
	if m.ctx != nil {
		C.llama_free(m.ctx)
		m.ctx = nil
	}
	if m.model != nil {
		C.llama_model_free(m.model)
		m.model = nil
	}
}

// Reload replaces the weights with those of the GGUF file at path, keeping the options.
// On error the Model keeps its previous weights. A loaded LoRA adapter is dropped.
func (m *Model) Reload(path string) error {
	next := &Model{opt: m.opt, piece: m.piece}
	if err := next.load(path); err != nil {
		return err
	}
	m.free()
	m.model, m.ctx, m.vocab, m.info = next.model, next.ctx, next.vocab, next.info
	return nil
}

// LoadAdapter loads a llama.cpp LoRA adapter GGUF and applies it with the given scale,
// replacing any adapter already applied.
func (m *Model) LoadAdapter(path string, scale float32) error {
	if err := CheckGGUF(path); err != nil {
		return err
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	C.rlif_clear_error()
	a := C.llama_adapter_lora_init(m.model, cpath)
	if a == nil {
		return fmt.Errorf("load adapter %s: %s", path, lastError("llama.cpp could not load the adapter"))
	}
	if err := m.UnloadAdapter(); err != nil {
		C.llama_adapter_lora_free(a)
		return err
	}
	if rc := C.llama_set_adapter_lora(m.ctx, a, C.float(scale)); rc != 0 {
		C.llama_adapter_lora_free(a)
		return fmt.Errorf("apply adapter %s: llama_set_adapter_lora returned %d", path, int(rc))
	}
	m.adapter = a
	return nil
}

// UnloadAdapter removes the applied LoRA adapter, if any.
func (m *Model) UnloadAdapter() error {
	if m.adapter == nil {
		return nil
	}
	C.llama_clear_adapter_lora(m.ctx)
	C.llama_adapter_lora_free(m.adapter)
	m.adapter = nil
	return nil
}

// Tokenize returns the token ids of text. With addBOS the model's BOS token is put first
// (when it has one); special tokens written in the text (e.g. <|im_start|>) are parsed.
func (m *Model) Tokenize(text string, addBOS bool) ([]int32, error) {
	if len(text) == 0 {
		if addBOS && m.info.BOS >= 0 {
			return []int32{m.info.BOS}, nil
		}
		return nil, nil
	}
	ctext := C.CString(text)
	defer C.free(unsafe.Pointer(ctext))
	toks := make([]int32, len(text)+2)
	n := C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(len(toks)), false, true)
	if n < 0 {
		toks = make([]int32, -n)
		n = C.llama_tokenize(m.vocab, ctext, C.int32_t(len(text)), (*C.llama_token)(unsafe.Pointer(&toks[0])), C.int32_t(len(toks)), false, true)
	}
	if n < 0 {
		return nil, errors.New("tokenize: llama_tokenize failed")
	}
	toks = toks[:n]
	if addBOS && m.info.BOS >= 0 && (len(toks) == 0 || toks[0] != m.info.BOS) {
		toks = append([]int32{m.info.BOS}, toks...)
	}
	return toks, nil
}

// Piece returns the bytes of one token as a string (special tokens render as empty). They
// need not be valid UTF-8: a byte-fallback token is one byte of a character.
func (m *Model) Piece(tok int32) string {
	return string(m.appendPiece(nil, tok))
}

func (m *Model) appendPiece(dst []byte, tok int32) []byte {
	n := C.llama_token_to_piece(m.vocab, C.llama_token(tok), (*C.char)(unsafe.Pointer(&m.piece[0])), C.int32_t(len(m.piece)), 0, false)
	if n < 0 {
		m.piece = make([]byte, -n)
		n = C.llama_token_to_piece(m.vocab, C.llama_token(tok), (*C.char)(unsafe.Pointer(&m.piece[0])), C.int32_t(len(m.piece)), 0, false)
	}
	if n <= 0 {
		return dst
	}
	return append(dst, m.piece[:n]...)
}

// Detokenize returns the text of tokens, special tokens left out, as valid UTF-8
// (rollout.ValidText), as a sampled completion's Text is.
func (m *Model) Detokenize(toks []int32) string {
	var b []byte
	for _, t := range toks {
		b = m.appendPiece(b, t)
	}
	return rollout.ValidText(string(b))
}

// IsEOG reports whether tok ends generation (EOS, EOT, <|im_end|>, ...).
func (m *Model) IsEOG(tok int32) bool { return bool(C.llama_vocab_is_eog(m.vocab, C.llama_token(tok))) }

// FormatChat applies the model's chat template to a system message (optional) and one
// user message, ending with the assistant turn's opening, through llama.cpp's template
// engine.
func (m *Model) FormatChat(system, user string) (string, error) {
	if m.info.ChatTemplate == "" {
		return "", fmt.Errorf("model %s has no chat template; use raw prompts (--raw)", m.info.Path)
	}
	var roles, contents []*C.char
	add := func(role, content string) {
		roles = append(roles, C.CString(role))
		contents = append(contents, C.CString(content))
	}
	if system != "" {
		add("system", system)
	}
	add("user", user)
	defer func() {
		for i := range roles {
			C.free(unsafe.Pointer(roles[i]))
			C.free(unsafe.Pointer(contents[i]))
		}
	}()
	msgs := (*C.struct_llama_chat_message)(C.malloc(C.size_t(len(roles)) * C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{}))))
	defer C.free(unsafe.Pointer(msgs))
	ms := unsafe.Slice(msgs, len(roles))
	for i := range roles {
		ms[i].role, ms[i].content = roles[i], contents[i]
	}
	tmpl := C.CString(m.info.ChatTemplate)
	defer C.free(unsafe.Pointer(tmpl))
	size := 2*len(system) + 2*len(user) + 1024
	for {
		buf := (*C.char)(C.malloc(C.size_t(size)))
		n := C.llama_chat_apply_template(tmpl, msgs, C.size_t(len(roles)), true, buf, C.int32_t(size))
		out := C.GoStringN(buf, C.int(max(0, min(int(n), size))))
		C.free(unsafe.Pointer(buf))
		if n < 0 {
			return "", fmt.Errorf("model %s: llama.cpp does not support its chat template; use raw prompts (--raw)", m.info.Path)
		}
		if int(n) <= size {
			return out, nil
		}
		size = int(n) + 1
	}
}
