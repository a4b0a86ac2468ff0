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
	"math/bits"

	fsggml "github.com/ollama/ollama/fs/ggml"
	ggmlbackend "github.com/ollama/ollama/ml/backend/ggml"

	"github.com/rlif/rlif/internal/inputfile"
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

// Open decodes the header of the GGUF file at path (a regular file: see inputfile.Open)
// and checks every tensor's shape and place as llama.cpp will: a shape whose size
// overflows, data that does not lie where the tensor directory says, or that runs past
// the end of the file (a truncated download) is reported here.
func Open(path string) (*File, error) {
	f, st, err := inputfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
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
	if err := out.checkTensors(st.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// checkTensors checks the tensor directory against a file of size bytes as llama.cpp's
// loader does: every shape's element and byte counts computed without overflow (ollama's
// Tensor.Size wraps around, so an absurd shape can claim a few bytes), and the tensors
// laid out in file order, each starting where the one before ends (padded to
// general.alignment), the last one ending inside the file. It fills byName.
func (f *File) checkTensors(size int64) error {
	align := uint64(f.KV.Uint("general.alignment", 32))
	if align == 0 || align&(align-1) != 0 {
		return fmt.Errorf("general.alignment = %d: want a power of two", align)
	}
	if f.dataOffset < 0 || f.dataOffset > size {
		return fmt.Errorf("truncated: the tensor data would start at byte %d of %d", f.dataOffset, size)
	}
	dataLen := uint64(size - f.dataOffset)
	next := uint64(0) // where the next tensor's data must start
	var prev *fsggml.Tensor
	for _, t := range f.Tensors {
		typ := TensorType(t.Kind)
		if typ.TypeSize() == 0 {
			return fmt.Errorf("tensor %s has unknown type %d", t.Name, t.Kind)
		}
		if len(t.Shape) == 0 || len(t.Shape) > 4 {
			return fmt.Errorf("tensor %s has %d dimensions", t.Name, len(t.Shape))
		}
		elems := uint64(1)
		for _, d := range t.Shape {
			hi, lo := bits.Mul64(elems, d)
			if d == 0 || hi != 0 || lo > 1<<40 {
				return fmt.Errorf("tensor %s has shape %v, which holds no elements or more than 2^40", t.Name, t.Shape)
			}
			elems = lo
		}
		if t.Shape[0]%typ.BlockSize() != 0 {
			return fmt.Errorf("tensor %s: shape %v does not fit type %s (rows of %d-element blocks)", t.Name, t.Shape, t.Type(), typ.BlockSize())
		}
		nbytes := elems / typ.BlockSize() * typ.TypeSize() // elems ≤ 2^40, no overflow
		switch {
		case t.Offset != next && prev == nil:
			return fmt.Errorf("tensor %s: its data starts at offset %d of the data section, not at 0 (the tensor directory is corrupt)", t.Name, t.Offset)
		case t.Offset != next:
			return fmt.Errorf("tensor %s (%s %v) ends at offset %d of the data section, but the next tensor, %s, starts at %d: a shape or offset in the tensor directory is wrong", prev.Name, prev.Type(), prev.Shape, next, t.Name, t.Offset)
		}
		if nbytes > dataLen || t.Offset > dataLen-nbytes {
			return fmt.Errorf("truncated: tensor %s (%s %v) needs bytes up to %d, the file has %d", t.Name, t.Type(), t.Shape, uint64(f.dataOffset)+t.Offset+nbytes, size)
		}
		next = t.Offset + (nbytes+align-1)/align*align
		if _, dup := f.byName[t.Name]; dup {
			return fmt.Errorf("tensor %s appears twice", t.Name)
		}
		f.byName[t.Name] = t
		prev = t
	}
	return nil
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
	fh, _, err := inputfile.Open(f.Path)
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
