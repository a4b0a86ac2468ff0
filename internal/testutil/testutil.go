// Package testutil finds the real model files that tests run on, and skips with the
// reason when one is absent.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the directory holding go.mod, walking up from the working directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// StoriesModel returns the path of the tiny stories260K test model, from
// $RLIF_STORIES_MODEL or ../shared/models next to the repository.
func StoriesModel(t testing.TB) string {
	t.Helper()
	return find(t, "RLIF_STORIES_MODEL", filepath.Join("..", "shared", "models", "stories260K.gguf"))
}

// DefaultModel returns the path of the default SmolLM2-135M-Instruct Q4_1 model, from
// $RLIF_DEFAULT_MODEL or models/ in the repository (`make model` fetches it).
func DefaultModel(t testing.TB) string {
	t.Helper()
	return find(t, "RLIF_DEFAULT_MODEL", filepath.Join("models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
}

// SharedData returns the path of a file in ../shared/data next to the repository.
func SharedData(t testing.TB, name string) string {
	t.Helper()
	return find(t, "", filepath.Join("..", "shared", "data", name))
}

func find(t testing.TB, env, rel string) string {
	t.Helper()
	if env != "" {
		if p := os.Getenv(env); p != "" {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("$%s=%s: %v", env, p, err)
			}
			return p
		}
	}
	p := filepath.Join(RepoRoot(t), rel)
	if _, err := os.Stat(p); err != nil {
		SkipUnlessCI(t, "%s is not there (%v); `make test` fetches the default model, and ../shared comes with the checkout", rel, err)
	}
	return p
}

// SkipUnlessCI skips the test with the reason, except under CI=true, where a missing
// model or data file fails it: CI must never pass with the engines untested.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("under CI=true this cannot skip: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NegateTail writes a copy of the f32 GGUF at src whose last n tensor bytes have their
// float32 sign bits flipped (tensor data is 32-byte aligned, so every byte at offset 3 mod
// 4 is a sign byte of a little-endian float32): a model of the same shape whose outputs
// differ.
func NegateTail(t testing.TB, src string, n int) string {
	t.Helper()
	return changeTail(t, src, n, "changed.gguf", func(f []byte) { f[3] ^= 0x80 })
}

// NaNTail writes a copy of the f32 GGUF at src whose last n tensor bytes hold NaN
// float32s: a damaged model of the same shape, whose outputs are not finite.
func NaNTail(t testing.TB, src string, n int) string {
	t.Helper()
	return changeTail(t, src, n, "nan.gguf", func(f []byte) { copy(f, []byte{0x00, 0x00, 0xc0, 0x7f}) })
}

// changeTail writes a copy of src, named name in a temporary directory, with change
// applied to each little-endian float32 (4 bytes, 4-aligned in the file) of its last n
// bytes.
func changeTail(t testing.TB, src string, n int, name string, change func(f []byte)) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) - n; i+4 <= len(b); i++ {
		if i%4 == 0 {
			change(b[i : i+4])
		}
	}
	dst := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}
