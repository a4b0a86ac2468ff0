package host

// Which executable a plugin is: its path and sha256 pin, and why the system cannot run it.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"

	goplugin "github.com/hashicorp/go-plugin"
)

// checkExecutable gives the clear error for a missing or non-executable file, before
// go-plugin's less specific one.
func (p *Plugin) checkExecutable() error {
	path := p.cfg.Path
	if path == "" {
		return p.errorf("start", KindNotFound, nil, "no executable given")
	}
	if !strings.ContainsRune(path, os.PathSeparator) {
		found, err := exec.LookPath(path)
		if err != nil {
			return p.errorf("start", KindNotFound, nil, "executable not found in $PATH")
		}
		path = found
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p.errorf("start", KindNotFound, nil, "executable not found")
	case err != nil:
		return p.errorf("start", KindNotFound, err, "cannot stat the executable")
	case fi.IsDir():
		return p.errorf("start", KindNotExecutable, nil, "is a directory, not an executable")
	case fi.Mode()&0o111 == 0:
		return p.errorf("start", KindNotExecutable, nil, "file is not executable (mode %v; chmod +x it)", fi.Mode().Perm())
	}
	return nil
}

// cannotExec says why the system refused to run the file at path, which exists: the
// kernel runs a binary of its own format, or a script whose first line is #! and names
// an interpreter. An exec of anything else fails with "exec format error", and a #! line
// whose interpreter is missing with "no such file or directory", of a file that is there.
// It returns "" when the refusal is neither.
func cannotExec(path string, err error) string {
	if !errors.Is(err, syscall.ENOEXEC) && !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	f, oerr := os.Open(path)
	if oerr != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	line, _, _ := bytes.Cut(head[:n], []byte("\n"))
	if interp, ok := bytes.CutPrefix(line, []byte("#!")); ok {
		fields := strings.Fields(string(interp))
		if len(fields) == 0 {
			return "its #! line names no interpreter: write one, e.g. #!/usr/bin/env python3"
		}
		if _, serr := os.Stat(fields[0]); serr != nil {
			return fmt.Sprintf("its #! line names the interpreter %s, which does not exist: install it, or correct the line (e.g. #!/usr/bin/env python3)", fields[0])
		}
		return ""
	}
	if !errors.Is(err, syscall.ENOEXEC) {
		return ""
	}
	return "is not executable as a program (exec format error): a script needs a #! line first, e.g. #!/usr/bin/env python3; or give a compiled binary"
}

func (p *Plugin) secureConfig() (*goplugin.SecureConfig, error) {
	if p.cfg.SHA256 == "" {
		return nil, nil
	}
	sum, err := ParseSHA256(p.cfg.SHA256)
	if err != nil {
		return nil, p.errorf("start", KindChecksum, nil, "%v", err)
	}
	return &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}, nil
}

// ParseSHA256 parses an executable's sha256 pin: 64 hexadecimal digits (either case),
// optionally prefixed "sha256:" as `sha256sum`-style tools and registries print it.
// It is the one parser of a pin; config validation and the host both use it.
func ParseSHA256(pin string) ([]byte, error) {
	digits := strings.TrimSpace(pin)
	if len(digits) >= len("sha256:") && strings.EqualFold(digits[:len("sha256:")], "sha256:") {
		digits = digits[len("sha256:"):]
	}
	sum, err := hex.DecodeString(digits)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("sha256 pin %q is not 64 hex digits (optionally prefixed \"sha256:\")", pin)
	}
	return sum, nil
}

// fileSHA256 returns the hex sha256 of a file, for the checksum error message.
func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "unreadable"
	}
	return hex.EncodeToString(h.Sum(nil))
}
