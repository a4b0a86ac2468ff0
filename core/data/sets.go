package data

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// repoModule is the first line of the repository's go.mod: it marks the directory whose
// data/ folder holds the named sets, so a data/ folder elsewhere is never taken for it.
const repoModule = "module github.com/rlif/rlif"

// SetFile returns the file, inside the repository's data/ folder, of the named set that
// comes with the repository (data/README.md lists them with source, license and rows).
func SetFile(name string) (string, bool) {
	switch name {
	case "gsm8k-train":
		return "gsm8k_train.jsonl", true
	case "gsm8k-test":
		return "gsm8k_test.jsonl", true
	case "math-train":
		return "math_train.jsonl", true
	case "math-test":
		return "math_test.jsonl", true
	case "math500-test":
		return "math500_test.jsonl", true
	case "arith-train":
		return "arith_train.jsonl", true
	case "arith-test":
		return "arith_test.jsonl", true
	case "arith-words-test":
		return "arith_words_test.jsonl", true
	}
	return "", false
}

// SetNames returns the names of the sets that come with the repository, sorted.
func SetNames() []string {
	names := []string{"arith-train", "arith-test", "arith-words-test", "gsm8k-train", "gsm8k-test", "math-train", "math-test", "math500-test"}
	sort.Strings(names)
	return names
}

// IsSetName reports whether s is one of the named sets rather than a path.
func IsSetName(s string) bool {
	_, ok := SetFile(s)
	return ok
}

// Resolve turns a data argument into a file path: a name of a set that comes with the
// repository (gsm8k-test, math-train, ...) becomes its file in the repository's data/
// folder, found from the working directory or the running binary upwards; anything else is
// a path and is returned as it is. A file that exists under the name's own spelling wins,
// so a user's file called "math-train" is still read.
func Resolve(s string) (string, error) {
	file, ok := SetFile(s)
	if !ok {
		// A bare word that is no file was most likely meant as a set's name.
		if _, err := os.Stat(s); err != nil && filepath.Ext(s) == "" && !strings.ContainsRune(s, os.PathSeparator) {
			return "", fmt.Errorf("data %s: no such file, nor a named set (%s)", s, strings.Join(SetNames(), ", "))
		}
		return s, nil
	}
	if _, err := os.Stat(s); err == nil {
		return s, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		if root, ok := findRepo(dir); ok {
			p := filepath.Join(root, "data", file)
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("data %s: %w (the repository at %s lacks its data/ file)", s, err, root)
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("data %s: the named sets live in the rlif repository's data/ folder, which is not above the working directory or the binary; run inside the clone or pass the file's path", s)
}

// findRepo walks up from dir to the directory holding rlif's go.mod.
func findRepo(dir string) (string, bool) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isRepoModule(b) {
			return dir, true
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isRepoModule(gomod []byte) bool {
	for _, line := range bytes.Split(gomod, []byte("\n")) {
		if t := strings.TrimSpace(string(line)); t != "" && !strings.HasPrefix(t, "//") {
			return t == repoModule
		}
	}
	return false
}
