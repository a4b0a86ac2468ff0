package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	fsggml "github.com/ollama/ollama/fs/ggml"

	"github.com/rlif/rlif/internal/testutil"
)

func TestOpenStories(t *testing.T) {
	f, err := Open(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	if f.Arch() != "llama" || len(f.Tensors) != 48 {
		t.Fatalf("arch %q with %d tensors", f.Arch(), len(f.Tensors))
	}
	w, err := f.ReadF32("output_norm.weight")
	if err != nil || len(w) != 64 {
		t.Fatalf("output_norm: %d values, %v", len(w), err)
	}
	if _, err := f.ReadF32("no.such.tensor"); err == nil {
		t.Error("reading a missing tensor succeeded")
	}
}

// TestRoundTrip writes a tensor in each precision and reads it back: the error must be
// what the format allows, and metadata must survive.
func TestRoundTrip(t *testing.T) {
	const in, out = 256, 8
	data := make([]float32, in*out)
	for i := range data {
		data[i] = float32(math.Sin(float64(i)*0.37)) * 0.5
	}
	tol := map[string]float64{"f32": 0, "f16": 1e-3, "bf16": 4e-3, "q8_0": 6e-3, "q4_0": 0.1, "q4_1": 0.06, "q5_0": 0.05,
		"q5_1": 0.03, "q4_k": 0.06, "q5_k": 0.03, "q6_k": 0.015}
	for name, maxErr := range tol {
		t.Run(name, func(t *testing.T) {
			p, err := ParsePrecision(strings.ToUpper(name))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "m.gguf")
			kv := fsggml.KV{"general.architecture": "llama", "tokenizer.ggml.tokens": []string{"a", "b"}, "x.y": float32(2.5)}
			ts := []Tensor{
				{Name: "w.weight", Shape: []uint64{in, out}, Data: data},
				{Name: "n.weight", Shape: []uint64{in}, Data: data[:in]},
				{Name: "odd.weight", Shape: []uint64{100, 2}, Data: data[:200]}, // rows don't divide into blocks
			}
			if err := WriteModel(path, kv, ts, p); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.KV.Strings("tokenizer.ggml.tokens"); len(got) != 2 || f.KV["x.y"] != float32(2.5) {
				t.Errorf("metadata lost: %v", f.KV)
			}
			if PrecisionOf(f).Name != name {
				t.Errorf("file type reads back as %s", PrecisionOf(f).Name)
			}
			for _, want := range ts {
				got, err := f.ReadF32(want.Name)
				if err != nil {
					t.Fatal(err)
				}
				worst := 0.0
				for i := range got {
					worst = math.Max(worst, math.Abs(float64(got[i]-want.Data[i])))
				}
				lim := maxErr
				if len(want.Shape) == 1 {
					lim = 0 // vectors stay f32
				} else if want.Name == "odd.weight" && maxErr > 1e-3 {
					lim = 1e-3 // falls back to f16
				}
				if worst > lim {
					t.Errorf("%s: max error %g > %g", want.Name, worst, lim)
				}
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
				t.Errorf("temporary files left behind: %v", entries)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	p, _ := ParsePrecision("f32")
	if err := WriteModel(filepath.Join(dir, "a.gguf"), fsggml.KV{"bad": int64(3)}, nil, p); err == nil || !strings.Contains(err.Error(), "bad") {
		t.Errorf("unsupported metadata type: %v", err)
	}
	if err := WriteModel(filepath.Join(dir, "b.gguf"), fsggml.KV{}, []Tensor{{Name: "x", Shape: []uint64{3}, Data: []float32{1}}}, p); err == nil {
		t.Error("shape/data mismatch accepted")
	}
	if err := WriteLoRA(filepath.Join(dir, "c.gguf"), "llama", 1, []Tensor{{Name: "x", Shape: []uint64{1}, Data: []float32{1}}}); err == nil {
		t.Error("LoRA tensor without .lora_a/.lora_b accepted")
	}
	if _, err := ParsePrecision("q3_xs"); err == nil {
		t.Error("unknown precision accepted")
	}
	if err := WriteModel(filepath.Join(dir, "no", "such", "dir.gguf"), fsggml.KV{}, nil, p); err == nil {
		t.Error("write into a missing directory succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed writes left files: %v", entries)
	}
}

func TestWriteLoRA(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lora.gguf")
	a := Tensor{Name: "blk.0.attn_q.weight.lora_a", Shape: []uint64{64, 4}, Data: make([]float32, 256)}
	b := Tensor{Name: "blk.0.attn_q.weight.lora_b", Shape: []uint64{4, 64}, Data: make([]float32, 256)}
	if err := WriteLoRA(path, "qwen2", 8, []Tensor{a, b}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"general.type": "adapter", "adapter.type": "lora", "general.architecture": "qwen2", "adapter.lora.alpha": float32(8)} {
		if f.KV[k] != want {
			t.Errorf("%s = %v, want %v", k, f.KV[k], want)
		}
	}
}

// FuzzOpen feeds corrupt files to Open: it must return an error or a File, never panic
// or allocate what the bytes merely announce.
func FuzzOpen(f *testing.F) {
	raw, err := os.ReadFile(testutil.StoriesModel(f))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw[:4096])
	f.Add(raw[:64])
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Add([]byte("GGUF\x03\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "fuzz.gguf")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		g, err := Open(path)
		if err != nil {
			return
		}
		for _, ti := range g.Tensors {
			if _, err := g.ReadF32(ti.Name); err != nil && !strings.Contains(err.Error(), "cannot be converted") {
				t.Fatalf("tensor %s passed Open's checks but does not read: %v", ti.Name, err)
			}
		}
	})
}

// TestOpenCorrupt is a deterministic complement to FuzzOpen that runs with every `go
// test`: random byte edits to the start of a real file.
func TestOpenCorrupt(t *testing.T) {
	raw, err := os.ReadFile(testutil.StoriesModel(t))
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	path := filepath.Join(t.TempDir(), "corrupt.gguf")
	opened := 0
	for i := 0; i < 3000; i++ {
		b := append([]byte(nil), raw[:8+rng.IntN(8192)]...)
		for k := 0; k < 1+rng.IntN(4); k++ {
			b[rng.IntN(len(b))] = byte(rng.IntN(256))
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if g, err := Open(path); err == nil {
			opened++
			for _, ti := range g.Tensors {
				_, _ = g.ReadF32(ti.Name)
			}
		}
	}
	t.Logf("%d of 3000 truncated, corrupted files opened (the rest were rejected)", opened)
}

// A tensor directory whose shapes do not match the data is refused by Open, naming the
// tensor: a shape whose element count overflows (it used to wrap to a few bytes and pass),
// and a shape that claims less or more data than lies before the next tensor, as llama.cpp
// will refuse it.
func TestOpenBadShapes(t *testing.T) {
	p, _ := ParsePrecision("f32")
	good := filepath.Join(t.TempDir(), "good.gguf")
	ts := []Tensor{
		{Name: "a.weight", Shape: []uint64{64, 2}, Data: make([]float32, 128)},
		{Name: "b.weight", Shape: []uint64{64, 2}, Data: make([]float32, 128)},
		{Name: "c.weight", Shape: []uint64{64}, Data: make([]float32, 64)},
	}
	if err := WriteModel(good, fsggml.KV{"general.architecture": "llama"}, ts, p); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// setDims rewrites the dimensions of a tensor's directory entry (name, n_dims, dims).
	setDims := func(name string, dims ...uint64) []byte {
		b := append([]byte(nil), raw...)
		entry := binary.LittleEndian.AppendUint64(nil, uint64(len(name)))
		i := bytes.Index(b, append(entry, name...))
		if i < 0 {
			t.Fatalf("no directory entry for %s", name)
		}
		at := i + len(entry) + len(name)
		if n := binary.LittleEndian.Uint32(b[at:]); int(n) != len(dims) {
			t.Fatalf("%s has %d dimensions, not %d", name, n, len(dims))
		}
		for k, d := range dims {
			binary.LittleEndian.PutUint64(b[at+4+8*k:], d)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"overflowing shape", setDims("a.weight", 1<<40, 1<<40), "tensor a.weight has shape [1099511627776 1099511627776], which holds no elements or more than 2^40"},
		{"smaller shape", setDims("a.weight", 64, 1), "tensor a.weight (F32 [64 1]) ends at offset 256 of the data section, but the next tensor, b.weight, starts at 512"},
		{"larger shape", setDims("a.weight", 64, 3), "tensor a.weight (F32 [64 3]) ends at offset 768 of the data section, but the next tensor, b.weight, starts at 512"},
		{"last past the end", setDims("c.weight", 64000), "truncated: tensor c.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.gguf")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), path+": ") {
				t.Fatalf("error %v, want %s: …%s…", err, path, tc.want)
			}
		})
	}
	if _, err := Open(good); err != nil {
		t.Fatalf("the unedited file: %v", err)
	}
}

// What is not a regular file is refused at once: a named pipe nobody writes would block
// the open forever.
func TestOpenNamedPipe(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.gguf")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(fifo); err == nil || err.Error() != fifo+" is a named pipe (FIFO), not a regular file" {
		t.Fatalf("error %v", err)
	}
}
