package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rlif/rlif/internal/testutil"
)

// Every named set resolves to its file in the repository's data/ folder, and the file has
// the rows and sha256 that data/README.md states; every name is in the README's table.
func TestNamedSets(t *testing.T) {
	root := testutil.RepoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "data", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		file, sha string
		rows      int
	}
	table := map[string]entry{}
	for _, line := range strings.Split(string(readme), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 9 || !IsSetName(strings.TrimSpace(cells[1])) {
			continue
		}
		rows, err := strconv.Atoi(strings.TrimSpace(cells[3]))
		if err != nil {
			t.Fatalf("README row %q: rows: %v", line, err)
		}
		table[strings.TrimSpace(cells[1])] = entry{strings.TrimSpace(cells[2]), strings.TrimSpace(cells[7]), rows}
	}
	for _, name := range SetNames() {
		t.Run(name, func(t *testing.T) {
			want, ok := table[name]
			if !ok {
				t.Fatalf("data/README.md has no row for %s", name)
			}
			p, err := Resolve(name)
			if err != nil {
				t.Fatal(err)
			}
			if p != filepath.Join(root, "data", want.file) {
				t.Fatalf("Resolve(%s) = %s, want %s", name, p, filepath.Join(root, "data", want.file))
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h := sha256.New()
			lines := 0
			sc := bufio.NewScanner(io.TeeReader(f, h))
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) != "" {
					lines++
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if lines != want.rows {
				t.Errorf("%s: %d rows, README says %d", p, lines, want.rows)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want.sha {
				t.Errorf("%s: sha256 %s, README says %s", p, got, want.sha)
			}
			rows, err := Load(name, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != want.rows {
				t.Errorf("Load(%s): %d rows, want %d", name, len(rows), want.rows)
			}
		})
	}
	if len(table) != len(SetNames()) {
		t.Errorf("README lists %d sets, the code %d", len(table), len(SetNames()))
	}
}

func TestResolvePaths(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(dir, "mine.jsonl")
	for _, tc := range []struct{ in, want string }{
		{own, own}, // a path is returned as it is, existing or not
		{"relative/file.jsonl", "relative/file.jsonl"},
	} {
		got, err := Resolve(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := Resolve("gsm8k-tset"); err == nil || !strings.Contains(err.Error(), "gsm8k-test") {
		t.Errorf("a misspelt name: %v, want an error listing the names", err)
	}
	// A file of the user's spelled like a name wins over the repository's set.
	t.Chdir(dir)
	if err := os.WriteFile("math-train", []byte(`{"prompt":"x"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve("math-train"); err != nil || got != "math-train" {
		t.Errorf("Resolve(math-train) with a local file = %q, %v", got, err)
	}
}

func TestIsRepoModule(t *testing.T) {
	for _, tc := range []struct {
		gomod string
		want  bool
	}{
		{"module github.com/rlif/rlif\n\ngo 1.24\n", true},
		{"// comment\n\nmodule github.com/rlif/rlif\n", true},
		{"module github.com/rlif/rlifx\n", false},
		{"module example.com/other\n", false},
		{"", false},
	} {
		if got := isRepoModule([]byte(tc.gomod)); got != tc.want {
			t.Errorf("isRepoModule(%q) = %v, want %v", tc.gomod, got, tc.want)
		}
	}
}
