package hf

// The conversion cache: one GGUF per set of a Hugging Face directory's files.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rlif/rlif/internal/atomicfile"
	"github.com/rlif/rlif/internal/inputfile"
)

// Cached returns a GGUF conversion of the Hugging Face directory dir inside cacheDir,
// converting only when no conversion of the same files exists: the file name carries a
// sha256 of every file in dir (names and contents) and of the options, so a changed
// checkpoint is converted again.
func Cached(dir, cacheDir string, opt ConvertOptions) (string, error) {
	sum, err := dirHash(dir, opt)
	if err != nil {
		return "", err
	}
	name := filepath.Base(filepath.Clean(dir))
	out := filepath.Join(cacheDir, fmt.Sprintf("%s-%s.gguf", name, sum[:16]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	// A failed conversion leaves no directory behind that it created (the cache dir sits
	// in the run directory, which a refused run must not leave behind).
	created := atomicfile.FirstMissing(cacheDir)
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	if err := Convert(dir, out, opt); err != nil {
		if created != "" {
			os.RemoveAll(created)
		}
		return "", err
	}
	return out, nil
}

func dirHash(dir string, opt ConvertOptions) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "rlif hf convert v1\x00%s\x00%v\x00", opt.Precision, opt.AllowNoTemplate)
	for _, e := range ents { // ReadDir sorts by name
		// Open follows links (the Hub's cache links a snapshot's files to their blobs);
		// what is not a regular file is no part of the checkpoint.
		f, _, err := inputfile.Open(filepath.Join(dir, e.Name()))
		var notRegular *inputfile.NotRegularError
		if errors.As(err, &notRegular) || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00", e.Name())
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
