package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func umask() fs.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return fs.FileMode(m)
}

// Files and directories get 0644 and 0755 less the umask (not os.CreateTemp's 0600 or
// os.MkdirTemp's 0700); a failed write leaves neither the file nor a temporary one.
func TestWriteAndCommitDir(t *testing.T) {
	dir := t.TempDir()
	mask := umask()
	p := filepath.Join(dir, "model.gguf")
	if err := WriteFile(p, []byte("weights")); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644&^mask {
		t.Fatalf("file mode %v (%v), want %v", st.Mode().Perm(), err, 0o644&^mask)
	}

	boom := errors.New("boom")
	if err := Write(filepath.Join(dir, "half.bin"), func(f *os.File) error { f.Write([]byte("half")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("failed write: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("after a failed write the directory holds %v", entries)
	}

	tmp, err := MkdirTemp(dir, "step-1")
	if err != nil {
		t.Fatal(err)
	}
	if !IsTemp(filepath.Base(tmp)) {
		t.Fatalf("%s is not recognized as temporary", tmp)
	}
	if err := WriteFile(filepath.Join(tmp, "state.json"), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	final := filepath.Join(dir, "step-1")
	if err := CommitDir(tmp, final); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(final); err != nil || st.Mode().Perm() != 0o755&^mask {
		t.Fatalf("directory mode %v (%v), want %v", st.Mode().Perm(), err, 0o755&^mask)
	}
	for _, name := range []string{"step-1", "model.gguf", "config.toml"} {
		if IsTemp(name) {
			t.Errorf("%s taken for a temporary name", name)
		}
	}
}
