package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	in := []Tensor{
		{Name: "b", DType: "F32", Shape: []uint64{2}, Data: EncodeF32([]float32{1, -2})},
		{Name: "a", DType: "BF16", Shape: []uint64{1, 3}, Data: EncodeBF16([]float32{1, 0.5, -3})},
	}
	if err := Write(p, in, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(raw); (8+n)%8 != 0 {
		t.Errorf("data starts at %d, not 8-byte aligned", 8+n)
	}
	out, meta, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || len(out) != 2 || out[0].Name != "a" || out[1].Name != "b" {
		t.Fatalf("read %v %v", out, meta)
	}
	for _, o := range out {
		i := slices.IndexFunc(in, func(s Tensor) bool { return s.Name == o.Name })
		if !bytes.Equal(o.Data, in[i].Data) || !slices.Equal(o.Shape, in[i].Shape) || o.DType != in[i].DType {
			t.Errorf("%s differs", o.Name)
		}
	}
	got, _ := Decode(out[0])
	if !slices.Equal(got, []float32{1, 0.5, -3}) {
		t.Errorf("bf16 decode %v", got)
	}
}

// Malformed headers are errors that say what is wrong, never panics.
func TestParseHeaderErrors(t *testing.T) {
	file := func(header string, data int) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), make([]byte, data)...)
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", []byte{1, 2}, "header length"},
		{"length past the end", binary.LittleEndian.AppendUint64(nil, 1<<40), "does not fit"},
		{"not JSON", file("{x", 0), "not a JSON object"},
		{"bad dtype", file(`{"t":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}}`, 1), "dtype"},
		{"offsets past the data", file(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), "data_offsets"},
		{"size mismatch", file(`{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 8), "data_offsets"},
		{"overlap", file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "overlap"},
		{"overflowing shape", file(`{"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, 4), "overflows"},
		{"metadata not strings", file(`{"__metadata__":{"a":1}}`, 0), "__metadata__"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := ParseHeader(bytes.NewReader(tc.in), int64(len(tc.in)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func FuzzParseHeader(f *testing.F) {
	var buf bytes.Buffer
	p := filepath.Join(f.TempDir(), "seed.safetensors")
	if err := Write(p, []Tensor{{Name: "w", DType: "F16", Shape: []uint64{2, 2}, Data: make([]byte, 8)}}, map[string]string{"format": "pt"}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(p)
	f.Add(seed)
	buf.Write(binary.LittleEndian.AppendUint64(nil, 2))
	buf.WriteString("{}")
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, _, start, err := ParseHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		// Whatever is accepted lies inside the file.
		for _, s := range ts {
			n := uint64(dtypeSize(s.DType))
			for _, d := range s.Shape {
				n *= d
			}
			if start+int64(s.offset)+int64(n) > int64(len(b)) {
				t.Fatalf("tensor %s extends past the file", s.Name)
			}
		}
	})
}

// The file is readable by others, as a model is meant to be (CreateTemp makes it 0600).
func TestWriteMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := Write(p, []Tensor{{Name: "a", DType: "F32", Shape: []uint64{1}, Data: EncodeF32([]float32{1})}}, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm()&0o044 != 0o044 {
		t.Fatalf("mode %v (%v)", st.Mode(), err)
	}
}
