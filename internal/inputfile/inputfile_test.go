package inputfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// What is not a regular file is refused without waiting on it (a named pipe nobody
// writes, /dev/zero, a link to either, a directory), and a file past the limit is refused
// naming the limit. That these calls return at all is the test of the bound.
func TestOpenAndReadFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	linkToFIFO := filepath.Join(dir, "link-to-fifo")
	zeroLink := filepath.Join(dir, "zero")
	for _, l := range [][2]string{{fifo, linkToFIFO}, {"/dev/zero", zeroLink}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big") // sparse: 3 GiB of nothing
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, 3<<30); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		path       string
		limit      int64
		want       string // "" for success
		notRegular bool
	}{
		{small, 10, "", false},
		{small, 9, "small holds 10 bytes, more than the 9 bytes", false},
		{big, 16 << 20, "big holds 3 GiB, more than the 16 MiB", false},
		{fifo, 1 << 20, "fifo is a named pipe (FIFO), not a regular file", true},
		{linkToFIFO, 1 << 20, "link-to-fifo is a named pipe (FIFO), not a regular file", true},
		{zeroLink, 1 << 20, "zero is a character device, not a regular file", true},
		{dir, 1 << 20, "is a directory, not a regular file", true},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			b, err := ReadFile(tc.path, tc.limit)
			if tc.want == "" {
				if err != nil || string(b) != "0123456789" {
					t.Fatalf("read %q, %v", b, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			f, _, err := Open(tc.path)
			if err == nil {
				f.Close()
			}
			var nr *NotRegularError
			if errors.As(err, &nr) != tc.notRegular {
				t.Fatalf("Open: %v; want a NotRegularError: %v", err, tc.notRegular)
			}
		})
	}
}
