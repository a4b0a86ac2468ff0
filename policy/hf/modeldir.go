package hf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rlif/rlif/internal/inputfile"
)

// metadataLimits bound each metadata file Convert reads, generously: the largest real
// ones are a few MB (a tokenizer.json of a 256k vocabulary about 35 MB), so a larger file
// is not one, and reading it whole could exhaust memory.
var metadataLimits = map[string]int64{
	"config.json":                  16 << 20,
	"tokenizer.json":               512 << 20,
	"tokenizer.model":              256 << 20,
	"tokenizer_config.json":        64 << 20,
	"chat_template.jinja":          16 << 20,
	"model.safetensors.index.json": 64 << 20,
}

// modelDir is a Hugging Face model directory being read. Every file is reached through
// path, which holds the rule for links: the files end up in the GGUF, which is meant to
// be shared, so a link is followed only to a file inside the directory or, in the Hub's
// cache, inside the repository's blob store.
type modelDir struct {
	dir string // as given, for messages
	// roots are the resolved directories links may lead into: the directory itself and,
	// for a snapshot of the Hub's cache (models--org--name/snapshots/REV, whose files
	// link to ../../blobs/SHA), that repository's blobs.
	roots []string
}

func openModelDir(dir string) (*modelDir, error) {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: not found; a Hugging Face model is a directory holding config.json", dir)
	} else if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory; a Hugging Face model is a directory holding config.json", dir)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	if real, err = filepath.Abs(real); err != nil {
		return nil, err
	}
	d := &modelDir{dir: dir, roots: []string{real}}
	if snapshots := filepath.Dir(real); filepath.Base(snapshots) == "snapshots" && strings.HasPrefix(filepath.Base(filepath.Dir(snapshots)), "models--") {
		d.roots = append(d.roots, filepath.Join(filepath.Dir(snapshots), "blobs"))
	}
	return d, nil
}

// path returns the path of the directory's file name, checked against the rule for
// links: an error that wraps fs.ErrNotExist when there is no such file, a broken link
// named as one, a link out of the directory refused.
func (d *modelDir) path(name string) (string, error) {
	p := filepath.Join(d.dir, name)
	st, err := os.Lstat(p)
	if err != nil {
		return p, err
	}
	if st.Mode()&fs.ModeSymlink == 0 {
		return p, nil
	}
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			link, _ := os.Readlink(p)
			if !filepath.IsAbs(link) {
				link = filepath.Join(filepath.Dir(p), link)
			}
			return p, fmt.Errorf("%s is a broken link: it points to %s, which does not exist", p, link)
		}
		return p, fmt.Errorf("%s: following the link: %w", p, err)
	}
	if target, err = filepath.Abs(target); err != nil {
		return p, err
	}
	for _, r := range d.roots {
		if rel, err := filepath.Rel(r, target); err == nil && filepath.IsLocal(rel) {
			return p, nil
		}
	}
	return p, fmt.Errorf("%s links to %s, outside the model directory: rlif follows links only within it (or into the Hugging Face cache's blob store), since its files are embedded in the GGUF; copy the file into the directory", p, target)
}

// read reads the directory's metadata file name (one of metadataLimits) whole. A missing
// file is an error wrapping fs.ErrNotExist.
func (d *modelDir) read(name string) ([]byte, error) {
	limit, ok := metadataLimits[name]
	if !ok {
		panic("hf: no size limit for metadata file " + name)
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return inputfile.ReadFile(p, limit)
}
