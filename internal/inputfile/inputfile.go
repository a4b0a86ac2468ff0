// Package inputfile opens the files rlif reads its models from (GGUF files, and the
// config, tokenizer and weight files of a Hugging Face directory) so that every read
// ends: only regular files are opened, since opening a named pipe blocks until a writer
// comes and a device such as /dev/zero never ends, and ReadFile stops at a size limit.
package inputfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// NotRegularError reports a path that names something other than a regular file (after
// links are followed): a directory, a named pipe, a device or a socket.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file", e.Path, describe(e.Mode))
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return fmt.Sprintf("a special file (%v)", m.Type())
}

// Open opens the regular file at path for reading and returns it with its information.
// Anything else is a *NotRegularError, found without opening it where it can be (opening
// a device can act on it); the file is opened non-blocking and checked again, so that a
// named pipe put in its place meanwhile is refused rather than waited on.
func Open(path string) (*os.File, fs.FileInfo, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, nil, &NotRegularError{path, st.Mode()}
	}
	// O_NONBLOCK only changes how a named pipe opens; reads of a regular file block as
	// usual.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if st, err = f.Stat(); err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, &NotRegularError{path, st.Mode()}
	}
	return f, st, nil
}

// TooLargeError reports a file larger than the limit its reader set.
type TooLargeError struct {
	Path  string
	Size  int64 // at least this many bytes (a file that grows while read is not read to its end)
	Limit int64
}

func (e *TooLargeError) Error() string {
	size := Bytes(e.Size)
	if size == Bytes(e.Limit) { // just past the limit: rounded, they would read the same
		size = fmt.Sprintf("%d bytes", e.Size)
	}
	return fmt.Sprintf("%s holds %s, more than the %s rlif reads from such a file", e.Path, size, Bytes(e.Limit))
}

// ReadFile reads the regular file at path (see Open), refusing it with a *TooLargeError
// when it holds more than limit bytes, also when it grows past limit while being read.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, st, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > limit {
		return nil, &TooLargeError{path, st.Size(), limit}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{path, int64(len(b)), limit}
	}
	return b, nil
}

// Bytes formats a byte count for a message: 512 bytes, 16 MiB, 3.2 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}[i]
}
