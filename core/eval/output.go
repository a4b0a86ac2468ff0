package eval

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rlif/rlif/internal/atomicfile"
)

// Files written to an evaluation's output directory.
const (
	RecordsFile   = "items.jsonl"
	SummaryFile   = "summary.json"
	HistogramFile = "calibration.png"
)

// WriteDir writes an evaluation to dir (created if needed): items.jsonl (one record per
// completion), summary.json and calibration.png (not for unlabeled prompts: it compares
// correct and incorrect completions). Each file is written to a temporary
// file and renamed into place, so a reader never sees half a file.
func WriteDir(dir string, res *Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, RecordsFile), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for i := range res.Records {
			if err := enc.Encode(&res.Records[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(dir, SummaryFile), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(&res.Summary)
	}); err != nil {
		return err
	}
	if res.Summary.Unlabeled {
		return nil
	}
	return writeAtomic(filepath.Join(dir, HistogramFile), func(w io.Writer) error {
		return Histogram(w, res)
	})
}

// writeAtomic writes path through a temporary file in the same directory.
func writeAtomic(path string, write func(io.Writer) error) error {
	err := atomicfile.Write(path, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<16)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// IsResultDir reports whether dir holds an evaluation written by WriteDir.
func IsResultDir(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, SummaryFile))
	return err == nil && st.Mode().IsRegular()
}

// ReadSummary reads the summary.json of an evaluation directory.
func ReadSummary(dir string) (Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Summary{}, fmt.Errorf("%s holds no %s: not an evaluation output directory", dir, SummaryFile)
		}
		return Summary{}, err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return Summary{}, fmt.Errorf("%s: %w", filepath.Join(dir, SummaryFile), err)
	}
	return s, nil
}

// ReadRecords reads the items.jsonl of an evaluation directory.
func ReadRecords(dir string) ([]Record, error) {
	path := filepath.Join(dir, RecordsFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var r Record
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			return recs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s record %d: %w", path, len(recs)+1, err)
		}
		recs = append(recs, r)
	}
}
