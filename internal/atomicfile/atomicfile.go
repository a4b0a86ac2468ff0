// Package atomicfile writes files and directories that a reader never sees half-written:
// each is written under a temporary name in its destination directory, synced, renamed
// into place, and the directory is synced so that the rename survives a crash.
//
// Temporary files and directories are created with the permissions of the finished
// ones, 0644 and 0755 less the umask (os.CreateTemp and os.MkdirTemp use 0600 and 0700,
// which would leave an exported model unreadable to anyone else).
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Permissions of the files and directories this package writes, before the umask.
const (
	FileMode fs.FileMode = 0o644
	DirMode  fs.FileMode = 0o755
)

// TempMarker is in the name of every temporary file and directory this package makes:
// whatever holds it in a directory is left over from an interrupted write.
const TempMarker = ".tmp-"

// IsTemp reports whether name (a base name) is one of this package's temporary names.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, TempMarker)
}

// tempName is a new temporary name for base in dir.
func tempName(dir, base string) string {
	return filepath.Join(dir, "."+base+TempMarker+strconv.FormatUint(rand.Uint64(), 36))
}

// CheckTarget returns an error when path is an existing directory: a file cannot be
// renamed onto it, and the rename would fail only after the whole file is written, with
// a bare "file exists".
func CheckTarget(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("%s is a directory; name the file to write", path)
	}
	return nil
}

// Write writes path through write, which gets the temporary file (write may seek or
// write at offsets). On any error the temporary file is removed and path is untouched.
func Write(path string, write func(f *os.File) error) (err error) {
	if err := CheckTarget(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	var f *os.File
	for range 100 {
		f, err = os.OpenFile(tempName(dir, filepath.Base(path)), os.O_RDWR|os.O_CREATE|os.O_EXCL, FileMode)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(dir)
}

// WriteFile writes b to path atomically.
func WriteFile(path string, b []byte) error {
	return Write(path, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

// MkdirTemp creates a new temporary directory in dir for a directory that will be
// named base once complete (see CommitDir).
func MkdirTemp(dir, base string) (string, error) {
	var err error
	for range 100 {
		p := tempName(dir, base)
		if err = os.Mkdir(p, DirMode); err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	return "", fmt.Errorf("create a temporary directory in %s: %w", dir, err)
}

// CommitDir syncs everything under tmp, renames tmp to path (which must not exist or be
// an empty directory), and syncs the parent directory.
func CommitDir(tmp, path string) error {
	err := filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() || d.IsDir() {
			return syncPath(p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes the entries of dir (a rename into it, a removal) durable.
func SyncDir(dir string) error {
	if err := syncPath(dir); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// FirstMissing returns the outermost directory of path that does not exist yet ("" when
// path exists): what MkdirAll(path) would create, for a caller that must remove it again
// when what it writes there fails.
func FirstMissing(path string) string {
	missing := ""
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			return missing
		}
		missing = p
		if filepath.Dir(p) == p {
			return missing
		}
	}
}
