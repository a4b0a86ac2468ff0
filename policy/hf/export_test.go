package hf

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// readOnlyEmptyDir returns an empty directory rlif cannot write into: a read-only tmpfs
// mounted on it where the test may mount (as root), else a directory without write
// permission (which does not stop root, so root without mounts skips).
func readOnlyEmptyDir(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=1m"); err == nil {
		t.Cleanup(func() {
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		})
		return dir
	}
	if os.Geteuid() == 0 {
		t.Skip("running as root without permission to mount: no directory is read-only to root")
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	return dir
}

// Export writes into an existing empty directory without removing or replacing it (it
// may be a mount point, or carry the user's permissions), refuses one it cannot write
// into saying so and leaving it as it was, and refuses a file in the place of the
// directory.
func TestExportOntoExistingPath(t *testing.T) {
	src := testutil.StoriesModel(t)

	t.Run("empty directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Stat(dir)
		if err := ExportFile(src, dir, Options{}); err != nil {
			t.Fatal(err)
		}
		after, err := os.Stat(dir)
		if err != nil || !os.SameFile(before, after) || after.Mode().Perm() != 0o700 {
			t.Fatalf("the directory was replaced (%v, mode %v)", err, after.Mode())
		}
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "config.json generation_config.json model.safetensors special_tokens_map.json tokenizer.model tokenizer_config.json" {
			t.Errorf("the directory holds %s", got)
		}
	})

	t.Run("read-only empty mount point", func(t *testing.T) {
		dir := readOnlyEmptyDir(t)
		before, _ := os.Stat(dir)
		err := ExportFile(src, dir, Options{})
		if err == nil || !strings.Contains(err.Error(), dir+" is not writable") {
			t.Fatalf("error %v, want one saying %s is not writable", err, dir)
		}
		t.Log(err)
		after, serr := os.Stat(dir)
		if serr != nil || !os.SameFile(before, after) {
			t.Fatalf("the directory is gone or replaced: %v", serr)
		}
		if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
			t.Errorf("the parent directory holds %d entries, want only the mount point", len(ents))
		}
	})

	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "model.bin")
		if err := os.WriteFile(p, []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := ExportFile(src, p, Options{})
		if err == nil || !strings.Contains(err.Error(), p+" is a file; name a directory") {
			t.Fatalf("error %v, want one saying %s is a file", err, p)
		}
		if b, _ := os.ReadFile(p); string(b) != "mine" {
			t.Error("the file was changed")
		}
	})
}

// Convert to a path that is a directory is refused before the model is read, naming the
// directory and a file path to give instead.
func TestConvertOntoDirectory(t *testing.T) {
	out := t.TempDir()
	err := Convert(exportStories(t, ""), out, ConvertOptions{AllowNoTemplate: true})
	want := out + " is a directory; name the file to write (such as " + filepath.Join(out, "stories.gguf") + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("the directory holds %v", ents)
	}
}
