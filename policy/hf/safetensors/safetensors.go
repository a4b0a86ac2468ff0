// Package safetensors reads and writes the safetensors format (an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and data offsets, then
// the data), checking every header so a corrupt file is an error, never a panic or a
// huge allocation.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/rlif/rlif/internal/inputfile"
)

// maxHeader bounds the JSON header a reader accepts (the format's own limit is 100 MB).
const maxHeader = 100 << 20

// Tensor is one tensor of a safetensors file: PyTorch shape (slowest dimension first)
// and little-endian data of DType (F32, BF16, F16).
type Tensor struct {
	Name  string
	DType string
	Shape []uint64
	Data  []byte

	offset uint64 // where the data starts after the header, as ParseHeader read it
}

type headerEntry struct {
	DType   string    `json:"dtype"`
	Shape   []uint64  `json:"shape"`
	Offsets [2]uint64 `json:"data_offsets"`
}

// dtypeSize is the byte size of the element types rlif reads and writes.
func dtypeSize(dt string) int {
	switch dt {
	case "F32":
		return 4
	case "F16", "BF16":
		return 2
	}
	return 0
}

// Write writes tensors (sorted by name, as the reference writer does) and
// string metadata to path; the file appears whole or not at all.
func Write(path string, ts []Tensor, meta map[string]string) error {
	sorted := append([]Tensor(nil), ts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off uint64
	for _, t := range sorted {
		n := uint64(dtypeSize(t.DType))
		for _, d := range t.Shape {
			n *= d
		}
		if n != uint64(len(t.Data)) || dtypeSize(t.DType) == 0 {
			return fmt.Errorf("safetensors %s: tensor %s: %d bytes for %s %v", path, t.Name, len(t.Data), t.DType, t.Shape)
		}
		header[t.Name] = headerEntry{t.DType, t.Shape, [2]uint64{off, off + n}}
		off += n
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return err
	}
	// Pad the header with spaces so the data starts 8-byte aligned.
	for (8+len(hb))%8 != 0 {
		hb = append(hb, ' ')
	}
	return writeAtomic(path, func(w io.Writer) error {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(hb)))
		if _, err := w.Write(n[:]); err != nil {
			return err
		}
		if _, err := w.Write(hb); err != nil {
			return err
		}
		for _, t := range sorted {
			if _, err := w.Write(t.Data); err != nil {
				return err
			}
		}
		return nil
	})
}

// ParseHeader reads a safetensors header from the start of a file of size bytes and
// checks it: known dtypes, offsets that match each shape, tile the data without overlap
// and stay inside the file. It returns the tensors (without data) and where data starts.
func ParseHeader(r io.Reader, size int64) ([]Tensor, map[string]string, int64, error) {
	var nb [8]byte
	if _, err := io.ReadFull(r, nb[:]); err != nil {
		return nil, nil, 0, fmt.Errorf("reading the header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > maxHeader || int64(n) > size-8 {
		return nil, nil, 0, fmt.Errorf("header length %d does not fit a %d-byte file", n, size)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, 0, fmt.Errorf("reading the header: %w", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, nil, 0, fmt.Errorf("header is not a JSON object: %w", err)
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, nil, 0, fmt.Errorf("__metadata__ is not an object of strings: %w", err)
		}
		delete(raw, "__metadata__")
	}
	start := int64(8 + n)
	dataLen := uint64(size - start)
	ts := make([]Tensor, 0, len(raw))
	type span struct{ lo, hi uint64 }
	spans := make([]span, 0, len(raw))
	for name, v := range raw {
		var e headerEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, nil, 0, fmt.Errorf("tensor %s: %w", name, err)
		}
		es := dtypeSize(e.DType)
		if es == 0 {
			return nil, nil, 0, fmt.Errorf("tensor %s: dtype %q is not supported (F32, F16, BF16)", name, e.DType)
		}
		want := uint64(es)
		for _, d := range e.Shape {
			if d != 0 && want > math.MaxUint64/d {
				return nil, nil, 0, fmt.Errorf("tensor %s: shape %v overflows", name, e.Shape)
			}
			want *= d
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if hi < lo || hi-lo != want || hi > dataLen {
			return nil, nil, 0, fmt.Errorf("tensor %s: data_offsets %v do not hold %s %v inside %d data bytes", name, e.Offsets, e.DType, e.Shape, dataLen)
		}
		spans = append(spans, span{lo, hi})
		ts = append(ts, Tensor{Name: name, DType: e.DType, Shape: e.Shape, offset: lo})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			return nil, nil, 0, fmt.Errorf("tensors overlap at data offset %d", spans[i].lo)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts, meta, start, nil
}

// Read reads a whole safetensors file (a regular file: see inputfile.Open).
func Read(path string) ([]Tensor, map[string]string, error) {
	f, st, err := inputfile.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	ts, meta, start, err := ParseHeader(f, st.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: not a valid safetensors file: %w", path, err)
	}
	for i := range ts {
		n := uint64(dtypeSize(ts[i].DType))
		for _, d := range ts[i].Shape {
			n *= d
		}
		ts[i].Data = make([]byte, n)
		if _, err := f.ReadAt(ts[i].Data, start+int64(ts[i].offset)); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %s: %w", path, ts[i].Name, err)
		}
	}
	return ts, meta, nil
}

// writeAtomic writes path through a temporary file in the same directory, renamed into
// place only when every byte is written, so a failure leaves no half-written file.
func writeAtomic(path string, write func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// CreateTemp makes the file private; a model is meant to be read by others.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// EncodeF32 encodes float32 values little-endian.
func EncodeF32(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// EncodeBF16 rounds float32 values to bfloat16 (round to nearest even, NaN kept NaN).
func EncodeBF16(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		u := math.Float32bits(x)
		var h uint16
		if u&0x7fffffff > 0x7f800000 {
			h = uint16(u>>16) | 0x40
		} else {
			h = uint16((u + 0x7fff + (u>>16)&1) >> 16)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// Decode returns a tensor's values as float32 (F32, BF16 or F16 data).
func Decode(t Tensor) ([]float32, error) {
	b := t.Data
	switch t.DType {
	case "F32":
		out := make([]float32, len(b)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return out, nil
	case "BF16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
		return out, nil
	case "F16":
		out := make([]float32, len(b)/2)
		for i := range out {
			out[i] = f16ToF32(binary.LittleEndian.Uint16(b[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("dtype %s is not supported", t.DType)
}

func f16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(mant) / 1024 / 16384
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
}
