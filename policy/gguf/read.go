// Package gguf reads model weights out of GGUF files as float32 and writes them back
// (whole models in a chosen precision, and llama.cpp LoRA adapters). It wraps ollama's
// fs/ggml codec and ggml's (de)quantization routines, adding the checks that make bad
// files fail with an error instead of a panic or a huge allocation.
package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	fsggml "github.com/ollama/ollama/fs/ggml"
	ggmlbackend "github.com/ollama/ollama/ml/backend/ggml"
)

// File is an opened GGUF file: its metadata, tensor directory, and where the tensor data
// starts. Tensor data is read on demand.
type File struct {
	Path    string
	KV      fsggml.KV
	Tensors []*fsggml.Tensor

	dataOffset int64
	byName     map[string]*fsggml.Tensor
}

// Open decodes the header of the GGUF file at path and checks that every tensor's data
// lies inside the file, so that a truncated download is reported here.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// ollama's decoder trusts the lengths it reads (it allocates arrays and strings of
	// the announced size); scan the header first so that a corrupt length is an error.
	if err := scanHeader(bufio.NewReaderSize(f, 1<<16), st.Size()); err != nil {
		return nil, fmt.Errorf("%s: not a valid GGUF file: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	g, err := decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid GGUF file: %w", path, err)
	}
	ts := g.Tensors()
	out := &File{
		Path:       path,
		KV:         g.KV(),
		Tensors:    ts.Items(),
		dataOffset: int64(ts.Offset),
		byName:     make(map[string]*fsggml.Tensor, len(ts.Items())),
	}
	for _, t := range out.Tensors {
		if TensorType(t.Kind).TypeSize() == 0 {
			return nil, fmt.Errorf("%s: tensor %s has unknown type %d", path, t.Name, t.Kind)
		}
		if len(t.Shape) == 0 || len(t.Shape) > 4 {
			return nil, fmt.Errorf("%s: tensor %s has %d dimensions", path, t.Name, len(t.Shape))
		}
		for _, d := range t.Shape {
			if d == 0 || d > 1<<40 {
				return nil, fmt.Errorf("%s: tensor %s has shape %v", path, t.Name, t.Shape)
			}
		}
		if t.Elements() > 1<<40 || t.Shape[0]%TensorType(t.Kind).BlockSize() != 0 {
			return nil, fmt.Errorf("%s: tensor %s: shape %v does not fit type %s", path, t.Name, t.Shape, t.Type())
		}
		end := out.dataOffset + int64(t.Offset) + int64(t.Size())
		if int64(t.Offset) < 0 || end > st.Size() {
			return nil, fmt.Errorf("%s: truncated: tensor %s needs bytes up to %d, file has %d", path, t.Name, end, st.Size())
		}
		if _, dup := out.byName[t.Name]; dup {
			return nil, fmt.Errorf("%s: tensor %s appears twice", path, t.Name)
		}
		out.byName[t.Name] = t
	}
	return out, nil
}

// decode calls ollama's decoder, turning a panic on malformed input into an error.
func decode(r io.ReadSeeker) (g *fsggml.GGML, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decoder: %v", p)
		}
	}()
	// -1: keep every array (tokenizer vocabularies are large and must survive a re-export).
	return fsggml.Decode(r, -1)
}

// Arch is general.architecture.
func (f *File) Arch() string { return f.KV.String("general.architecture", "") }

// Tensor returns the named tensor's directory entry.
func (f *File) Tensor(name string) (*fsggml.Tensor, bool) {
	t, ok := f.byName[name]
	return t, ok
}

// ReadAllF32 reads every tensor, in file order, converted to float32: the whole model in
// the form WriteModel and the Hugging Face export take.
func (f *File) ReadAllF32() ([]Tensor, error) {
	ts := make([]Tensor, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		data, err := f.ReadF32(t.Name)
		if err != nil {
			return nil, err
		}
		ts = append(ts, Tensor{Name: t.Name, Shape: append([]uint64(nil), t.Shape...), Data: data})
	}
	return ts, nil
}

// ReadF32 reads the named tensor and converts it to float32, whatever its stored type.
func (f *File) ReadF32(name string) ([]float32, error) {
	t, ok := f.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor %s", f.Path, name)
	}
	fh, err := os.Open(f.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	raw := make([]byte, t.Size())
	if _, err := fh.ReadAt(raw, f.dataOffset+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("%s: reading tensor %s: %w", f.Path, name, err)
	}
	return ToF32(raw, TensorType(t.Kind), t.Elements())
}

// TensorType is a ggml tensor type.
type TensorType = fsggml.TensorType

// dequantizable lists the types ggml's ConvertToF32 handles (it panics on others).
var dequantizable = map[TensorType]bool{
	fsggml.TensorTypeF16: true, fsggml.TensorTypeBF16: true,
	fsggml.TensorTypeQ4_0: true, fsggml.TensorTypeQ4_1: true,
	fsggml.TensorTypeQ5_0: true, fsggml.TensorTypeQ5_1: true, fsggml.TensorTypeQ8_0: true,
	fsggml.TensorTypeQ2_K: true, fsggml.TensorTypeQ3_K: true, fsggml.TensorTypeQ4_K: true,
	fsggml.TensorTypeQ5_K: true, fsggml.TensorTypeQ6_K: true,
}

// ToF32 converts raw tensor bytes of type typ holding n elements to float32.
func ToF32(raw []byte, typ TensorType, n uint64) ([]float32, error) {
	if n == 0 {
		return nil, nil
	}
	want := n * typ.TypeSize() / typ.BlockSize()
	if typ.TypeSize() == 0 || n%typ.BlockSize() != 0 || uint64(len(raw)) != want {
		return nil, fmt.Errorf("tensor of type %s: %d bytes for %d elements", typ, len(raw), n)
	}
	switch {
	case typ == fsggml.TensorTypeF32:
		out := make([]float32, n)
		if _, err := binary.Decode(raw, binary.LittleEndian, out); err != nil {
			return nil, err
		}
		return out, nil
	case dequantizable[typ]:
		initGGML()
		return ggmlbackend.ConvertToF32(raw, uint32(typ), n), nil
	default:
		return nil, fmt.Errorf("tensor type %s cannot be converted to float32 (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K)", typ)
	}
}

// GGUF value type codes (gguf.h).
const (
	tUint8 = iota
	tInt8
	tUint16
	tInt16
	tUint32
	tInt32
	tFloat32
	tBool
	tString
	tArray
	tUint64
	tInt64
	tFloat64
)

var scalarSize = map[uint32]int64{
	tUint8: 1, tInt8: 1, tUint16: 2, tInt16: 2, tUint32: 4, tInt32: 4, tFloat32: 4,
	tBool: 1, tUint64: 8, tInt64: 8, tFloat64: 8,
}

var errHeader = errors.New("corrupt header")

// scanHeader walks the GGUF header (magic, version, key-values, tensor infos) checking
// every announced length against the bytes that remain, without allocating for them.
func scanHeader(r io.Reader, size int64) error {
	s := &scanner{r: r, left: size}
	magic := s.u32()
	if s.err == nil && magic != fsggml.FILE_MAGIC_GGUF_LE {
		return fmt.Errorf("bad magic %#x", magic)
	}
	version := s.u32()
	if s.err == nil && (version < 2 || version > 3) {
		return fmt.Errorf("unsupported GGUF version %d", version)
	}
	nt, nkv := s.u64(), s.u64()
	if s.err != nil {
		return s.err
	}
	// Every tensor info and key-value takes at least 8 bytes.
	if nt > uint64(size)/8 || nkv > uint64(size)/8 {
		return fmt.Errorf("%w: %d tensors, %d keys in a %d-byte file", errHeader, nt, nkv, size)
	}
	for i := uint64(0); i < nkv && s.err == nil; i++ {
		s.str()
		typ := s.u32()
		if typ == tArray {
			et, n := s.u32(), s.u64()
			switch {
			case et == tString:
				for j := uint64(0); j < n && s.err == nil; j++ {
					s.str()
				}
			case scalarSize[et] > 0:
				if n > uint64(s.left)/uint64(scalarSize[et]) {
					return fmt.Errorf("%w: array of %d elements", errHeader, n)
				}
				s.skip(int64(n) * scalarSize[et])
			default:
				if s.err == nil {
					return fmt.Errorf("%w: array element type %d", errHeader, et)
				}
			}
			continue
		}
		switch {
		case typ == tString:
			s.str()
		case scalarSize[typ] > 0:
			s.skip(scalarSize[typ])
		default:
			if s.err == nil {
				return fmt.Errorf("%w: value type %d", errHeader, typ)
			}
		}
	}
	for i := uint64(0); i < nt && s.err == nil; i++ {
		s.str()
		dims := s.u32()
		if s.err == nil && (dims == 0 || dims > 4) {
			return fmt.Errorf("%w: tensor with %d dimensions", errHeader, dims)
		}
		s.skip(int64(dims)*8 + 4 + 8)
	}
	return s.err
}

type scanner struct {
	r    io.Reader
	left int64
	buf  [8]byte
	err  error
}

func (s *scanner) read(n int) []byte {
	if s.err != nil {
		return s.buf[:n]
	}
	if int64(n) > s.left {
		s.err = io.ErrUnexpectedEOF
		return s.buf[:n]
	}
	if _, err := io.ReadFull(s.r, s.buf[:n]); err != nil {
		s.err = err
	}
	s.left -= int64(n)
	return s.buf[:n]
}

func (s *scanner) u32() uint32 { return binary.LittleEndian.Uint32(s.read(4)) }
func (s *scanner) u64() uint64 { return binary.LittleEndian.Uint64(s.read(8)) }

func (s *scanner) skip(n int64) {
	if s.err != nil {
		return
	}
	if n < 0 || n > s.left {
		s.err = io.ErrUnexpectedEOF
		return
	}
	if _, err := io.CopyN(io.Discard, s.r, n); err != nil {
		s.err = err
	}
	s.left -= n
}

func (s *scanner) str() {
	n := s.u64()
	if s.err == nil && n > uint64(s.left) {
		s.err = fmt.Errorf("%w: string of %d bytes", errHeader, n)
		return
	}
	s.skip(int64(n))
}

// IntValue returns a GGUF metadata value stored as any integer type as an int; ok is false
// for anything else (an array of per-layer values, say).
func IntValue(v any) (n int, ok bool) {
	switch x := v.(type) {
	case uint32:
		return int(x), true
	case uint64:
		return int(x), true
	case int32:
		return int(x), true
	case int64:
		return int(x), true
	}
	return 0, false
}
