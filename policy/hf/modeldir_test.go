package hf

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/rlif/rlif/internal/inputfile"
)

// Every metadata file Convert reads is read with a bound: a named pipe in its place, or a
// link to /dev/zero, is refused at once instead of waited on or read without end, and a
// file larger than its kind's limit is refused naming the limit. That Convert returns at
// all is the test of the bound (on a named pipe it used to block forever).
func TestConvertBoundsMetadataFiles(t *testing.T) {
	good := exportStories(t, "")
	for name, limit := range metadataLimits {
		for _, tc := range []struct {
			kind   string
			change func(p string) error
			want   []string
		}{
			{"named pipe", func(p string) error { return syscall.Mkfifo(p, 0o644) },
				[]string{name, "is a named pipe (FIFO), not a regular file"}},
			{"link to /dev/zero", func(p string) error { return os.Symlink("/dev/zero", p) },
				[]string{name, "links to /dev/zero, outside the model directory"}},
			{"too large", func(p string) error { // sparse: no disk space taken
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					return err
				}
				return os.Truncate(p, limit+1)
			}, []string{name, "more than the " + inputfile.Bytes(limit)}},
		} {
			t.Run(name+"/"+tc.kind, func(t *testing.T) {
				dir := copyModel(t, good, func(d string) {
					if name == "tokenizer.json" { // read only without tokenizer.model
						os.Remove(filepath.Join(d, "tokenizer.model"))
					}
					os.Remove(filepath.Join(d, name))
					if err := tc.change(filepath.Join(d, name)); err != nil {
						t.Fatal(err)
					}
				})
				convertFails(t, dir, ConvertOptions{AllowNoTemplate: true}, tc.want...)
			})
		}
	}
	t.Run("model.safetensors/named pipe", func(t *testing.T) {
		dir := copyModel(t, good, func(d string) {
			p := filepath.Join(d, "model.safetensors")
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		})
		convertFails(t, dir, ConvertOptions{AllowNoTemplate: true}, "model.safetensors is a named pipe (FIFO)")
	})
	t.Run("directory is a named pipe", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "pipe")
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
		convertFails(t, p, ConvertOptions{AllowNoTemplate: true}, p, "is not a directory")
	})
}

// The files of a model directory end up in the GGUF, which is meant to be shared, so a
// link is followed only within the directory, or from a snapshot of the Hugging Face
// cache into its repository's blob store; anything else is refused, saying so. A broken
// link is named as one, with where it points.
func TestConvertFollowsLinksOnlyWithin(t *testing.T) {
	good := exportStories(t, "")
	const tmpl = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("a private key"), 0o600); err != nil {
		t.Fatal(err)
	}
	relink := func(d, name, target string) {
		t.Helper()
		os.Remove(filepath.Join(d, name))
		if err := os.Symlink(target, filepath.Join(d, name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(d string)
		want   []string
	}{
		{"template outside", func(d string) { relink(d, "chat_template.jinja", outside) },
			[]string{"chat_template.jinja links to " + outside, "outside the model directory", "copy the file into the directory"}},
		{"tokenizer outside by a relative link", func(d string) {
			other := filepath.Join(filepath.Dir(d), "other")
			os.Mkdir(other, 0o755)
			os.Rename(filepath.Join(d, "tokenizer.model"), filepath.Join(other, "tokenizer.model"))
			relink(d, "tokenizer.model", "../other/tokenizer.model")
		}, []string{"tokenizer.model links to", "outside the model directory"}},
		{"weights outside", func(d string) {
			moved := filepath.Join(filepath.Dir(d), "weights.safetensors")
			os.Rename(filepath.Join(d, "model.safetensors"), moved)
			relink(d, "model.safetensors", moved)
		}, []string{"model.safetensors links to", "outside the model directory"}},
		{"broken weights link", func(d string) { relink(d, "model.safetensors", "gone.safetensors") },
			[]string{"model.safetensors is a broken link", "points to /", "/m/gone.safetensors", "does not exist"}},
		{"broken template link", func(d string) { relink(d, "chat_template.jinja", "/no/such/template.jinja") },
			[]string{"chat_template.jinja is a broken link", "/no/such/template.jinja"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			convertFails(t, copyModel(t, good, tc.change), ConvertOptions{AllowNoTemplate: true}, tc.want...)
		})
	}

	// Links that stay inside are followed: to a file in a subdirectory, and the directory
	// itself given by a link.
	t.Run("inside", func(t *testing.T) {
		dir := copyModel(t, good, func(d string) {
			os.Mkdir(filepath.Join(d, "templates"), 0o755)
			os.WriteFile(filepath.Join(d, "templates", "chat.jinja"), []byte(tmpl), 0o644)
			relink(d, "chat_template.jinja", "templates/chat.jinja")
		})
		viaLink := filepath.Join(t.TempDir(), "model-link")
		if err := os.Symlink(dir, viaLink); err != nil {
			t.Fatal(err)
		}
		kv, _, _, err := Read(viaLink, ConvertOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if kv["tokenizer.chat_template"] != tmpl {
			t.Errorf("chat template %q", kv["tokenizer.chat_template"])
		}
	})

	// The Hub's cache: models--org--name/snapshots/REV/FILE -> ../../blobs/SHA.
	hubCache := func(t *testing.T) (snapshot, repo string) {
		repo = filepath.Join(t.TempDir(), "hub", "models--org--tiny")
		snapshot = filepath.Join(repo, "snapshots", "0123abcd")
		for _, d := range []string{filepath.Join(repo, "blobs"), snapshot} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ents, _ := os.ReadDir(good)
		for i, e := range ents {
			blob := filepath.Join(repo, "blobs", "sha"+string(rune('a'+i)))
			b, _ := os.ReadFile(filepath.Join(good, e.Name()))
			os.WriteFile(blob, b, 0o644)
			os.Symlink(filepath.Join("..", "..", "blobs", filepath.Base(blob)), filepath.Join(snapshot, e.Name()))
		}
		return snapshot, repo
	}
	t.Run("hub cache", func(t *testing.T) {
		snapshot, _ := hubCache(t)
		if err := Convert(snapshot, filepath.Join(t.TempDir(), "out.gguf"), ConvertOptions{AllowNoTemplate: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("hub cache, link to another repository", func(t *testing.T) {
		snapshot, repo := hubCache(t)
		other := filepath.Join(filepath.Dir(repo), "models--org--other", "blobs")
		os.MkdirAll(other, 0o755)
		os.WriteFile(filepath.Join(other, "shaz"), []byte(tmpl), 0o644)
		relink(snapshot, "chat_template.jinja", "../../../models--org--other/blobs/shaz")
		convertFails(t, snapshot, ConvertOptions{AllowNoTemplate: true}, "chat_template.jinja links to "+filepath.Join(other, "shaz"), "outside the model directory")
	})
}
