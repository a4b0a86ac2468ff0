package gguf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"
	"sort"
	"strings"

	fsggml "github.com/ollama/ollama/fs/ggml"
	ggmlbackend "github.com/ollama/ollama/ml/backend/ggml"

	"github.com/rlif/rlif/internal/atomicfile"
)

// Tensor is a named float32 tensor. Shape is in ggml order: Shape[0] varies fastest,
// so a PyTorch tensor of shape [out, in] has Shape {in, out}.
type Tensor struct {
	Name  string
	Shape []uint64
	Data  []float32
}

// Elements is the product of Shape.
func (t Tensor) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Precision is a storage type for exported weights.
type Precision struct {
	Name     string
	fileType uint32            // general.file_type
	typ      fsggml.TensorType // type of the 2-D weight tensors
}

// precisions are the export types: those ggml quantizes without an importance matrix.
var precisions = []Precision{
	{"f32", 0, fsggml.TensorTypeF32},
	{"f16", 1, fsggml.TensorTypeF16},
	{"bf16", 32, fsggml.TensorTypeBF16},
	{"q8_0", 7, fsggml.TensorTypeQ8_0},
	{"q4_0", 2, fsggml.TensorTypeQ4_0},
	{"q4_1", 3, fsggml.TensorTypeQ4_1},
	{"q5_0", 8, fsggml.TensorTypeQ5_0},
	{"q5_1", 9, fsggml.TensorTypeQ5_1},
	{"q4_k", 15, fsggml.TensorTypeQ4_K},
	{"q5_k", 17, fsggml.TensorTypeQ5_K},
	{"q6_k", 18, fsggml.TensorTypeQ6_K},
}

// ParsePrecision returns the named precision (case-insensitive: f32, f16, bf16, q8_0,
// q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k).
func ParsePrecision(name string) (Precision, error) {
	for _, p := range precisions {
		if strings.EqualFold(p.Name, name) {
			return p, nil
		}
	}
	names := make([]string, len(precisions))
	for i, p := range precisions {
		names[i] = p.Name
	}
	return Precision{}, fmt.Errorf("unknown precision %q (one of %s)", name, strings.Join(names, ", "))
}

// PrecisionOf returns the precision that best matches a file: its general.file_type, or
// when that is absent the type of its first matrix; f16 when it is not a type we write.
func PrecisionOf(f *File) Precision {
	ft, ok := f.KV["general.file_type"].(uint32)
	if !ok {
		for _, t := range f.Tensors {
			if len(t.Shape) >= 2 {
				for _, p := range precisions {
					if uint32(p.typ) == t.Kind {
						return p
					}
				}
				break
			}
		}
		return precisions[1]
	}
	for _, p := range precisions {
		if p.fileType == ft {
			return p
		}
	}
	switch ft {
	case 14: // Q4_K_S
		return precisions[8]
	case 16: // Q5_K_S
		return precisions[9]
	}
	return precisions[1]
}

// tensorType picks the stored type of one tensor: vectors (norms, biases) stay F32 as
// llama.cpp's quantizer keeps them, and rows that don't divide into blocks fall back to F16.
func (p Precision) tensorType(t Tensor) fsggml.TensorType {
	if len(t.Shape) < 2 || p.typ == fsggml.TensorTypeF32 {
		return fsggml.TensorTypeF32
	}
	if t.Shape[0]%p.typ.BlockSize() != 0 {
		return fsggml.TensorTypeF16
	}
	return p.typ
}

// encode stores t in type typ.
func encode(t Tensor, typ fsggml.TensorType) []byte {
	if typ == fsggml.TensorTypeF32 {
		b := make([]byte, 4*len(t.Data))
		_, _ = binary.Encode(b, binary.LittleEndian, t.Data)
		return b
	}
	initGGML()
	shape := t.Shape
	if len(shape) > 2 {
		// Quantize handles up to 3 dimensions; fold the rest into rows, which is the
		// same memory layout.
		shape = []uint64{shape[0], t.Elements() / shape[0]}
	}
	return ggmlbackend.Quantize(typ, t.Data, shape)
}

// WriteModel writes a model GGUF at path with metadata kv (copied, with general.file_type
// set to match p) and tensors in precision p. It writes a temporary file in the same
// directory and renames it into place, so a reader never sees half a file.
func WriteModel(path string, kv fsggml.KV, tensors []Tensor, p Precision) error {
	out := maps.Clone(kv)
	out["general.file_type"] = p.fileType
	if p.typ != fsggml.TensorTypeF32 && p.typ != fsggml.TensorTypeF16 && p.typ != fsggml.TensorTypeBF16 {
		out["general.quantization_version"] = ggmlbackend.QuantizationVersion()
	} else {
		delete(out, "general.quantization_version")
	}
	return writeAtomic(path, out, tensors, p.tensorType)
}

// WriteLoRA writes a llama.cpp LoRA adapter GGUF: general.type "adapter", adapter.type
// "lora", adapter.lora.alpha, and F32 tensors named "<base tensor>.lora_a" (ggml shape
// {in, rank}) and "<base tensor>.lora_b" ({rank, out}), as llama-adapter.cpp expects.
func WriteLoRA(path, arch string, alpha float32, tensors []Tensor) error {
	kv := fsggml.KV{
		"general.architecture": arch,
		"general.type":         "adapter",
		"general.name":         "rlif LoRA",
		"adapter.type":         "lora",
		"adapter.lora.alpha":   alpha,
	}
	for _, t := range tensors {
		if !strings.HasSuffix(t.Name, ".lora_a") && !strings.HasSuffix(t.Name, ".lora_b") {
			return fmt.Errorf("LoRA tensor %s: name must end in .lora_a or .lora_b", t.Name)
		}
	}
	return writeAtomic(path, kv, tensors, func(Tensor) fsggml.TensorType { return fsggml.TensorTypeF32 })
}

func writeAtomic(path string, kv fsggml.KV, tensors []Tensor, typeOf func(Tensor) fsggml.TensorType) error {
	if err := checkKV(kv); err != nil {
		return err
	}
	ts := make([]*fsggml.Tensor, len(tensors))
	for i, t := range tensors {
		if t.Elements() != uint64(len(t.Data)) || len(t.Shape) == 0 {
			return fmt.Errorf("tensor %s: shape %v holds %d elements, data has %d", t.Name, t.Shape, t.Elements(), len(t.Data))
		}
		typ := typeOf(t)
		ts[i] = &fsggml.Tensor{Name: t.Name, Kind: uint32(typ), Shape: t.Shape, WriterTo: &lazyTensor{t: t, typ: typ}}
	}
	// WriteGGUF orders blk.N tensors by N, then by name; the order llama.cpp needs is none.
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })

	if err := atomicfile.Write(path, func(f *os.File) error { return fsggml.WriteGGUF(f, kv, ts) }); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// checkKV rejects values that WriteGGUF cannot encode, naming the key (it would
// otherwise fail with a bare "improper type").
func checkKV(kv fsggml.KV) error {
	for k, v := range kv {
		switch v.(type) {
		case uint32, fsggml.FileType, uint64, float32, bool, string, []int32, []uint32, []float32, []string, []bool:
		default:
			// Arrays decoded by ollama are of its private array type: it writes those
			// of int32, uint32, float32, string and bool.
			if strings.HasPrefix(fmt.Sprintf("%T", v), "*ggml.array[") {
				name := fmt.Sprintf("%T", v)
				if strings.Contains(name, "[int32]") || strings.Contains(name, "[uint32]") || strings.Contains(name, "[float32]") ||
					strings.Contains(name, "[string]") || strings.Contains(name, "[bool]") {
					continue
				}
			}
			return fmt.Errorf("metadata key %s has type %T, which GGUF export does not support", k, v)
		}
	}
	return nil
}

// lazyTensor encodes its tensor when written, so that only a few encoded copies exist
// at a time (WriteGGUF writes tensors in parallel, GOMAXPROCS at a time).
type lazyTensor struct {
	t   Tensor
	typ fsggml.TensorType
}

func (l *lazyTensor) WriteTo(w io.Writer) (int64, error) {
	return bytes.NewReader(encode(l.t, l.typ)).WriteTo(w)
}
