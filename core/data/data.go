// Package data loads prompt sets (JSONL, parquet, or the built-in arithmetic problems)
// and hands them out in a seeded, resumable order.
package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Row is one prompt with the dataset's other fields (gold answer and so on) as strings.
type Row struct {
	Prompt string
	Fields map[string]string
	// Line is where the row is in its file, 1-based: the line of a JSONL file (blank lines
	// counted, so an editor finds it), the row of a parquet file, the problem's number in
	// the built-in set. Messages name it through Where.
	Line int
}

// Where names row line of the file at path for messages: "line N" of a JSONL file, "row
// N" of a parquet file (which has no lines), "problem N" of the built-in set (path "").
func Where(path string, line int) string {
	switch {
	case path == "":
		return fmt.Sprintf("problem %d", line)
	case strings.EqualFold(filepath.Ext(path), ".parquet"):
		return fmt.Sprintf("row %d", line)
	}
	return fmt.Sprintf("line %d", line)
}

// record is one row as read from a file, before the prompt is picked out.
type record struct {
	fields map[string]string
	line   int
}

// DefaultPromptFields are tried in order when no prompt field is configured.
var defaultPromptFields = []string{"prompt", "question", "problem"}

// Load reads the rows of a .jsonl/.json(l) or .parquet file, or of a named set (Resolve).
// promptField names the prompt's
// field ("" picks the first of prompt, question, problem that the first row has). A row
// without the prompt field is an error naming the row.
func Load(path, promptField string) ([]Row, error) {
	var (
		records []record
		err     error
	)
	if path, err = Resolve(path); err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		records, err = readParquet(path)
	case ".jsonl", ".json", ".ndjson":
		records, err = readJSONL(path)
	default:
		return nil, fmt.Errorf("data %s: unknown format %q; want .jsonl or .parquet", path, filepath.Ext(path))
	}
	if err != nil {
		return nil, fmt.Errorf("data %s: %w", path, err)
	}
	if len(records) == 0 {
		return nil, fmt.Errorf("data %s: the file has no rows", path)
	}
	field := promptField
	if field == "" {
		for _, f := range defaultPromptFields {
			if _, ok := records[0].fields[f]; ok {
				field = f
				break
			}
		}
		if field == "" {
			return nil, fmt.Errorf("data %s: %s has none of the fields %s; name the prompt's field (data.prompt_field; --prompt-field for rlif eval)", path, Where(path, records[0].line), strings.Join(defaultPromptFields, ", "))
		}
	}
	rows := make([]Row, len(records))
	for i, rec := range records {
		p, ok := rec.fields[field]
		if !ok || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("data %s: %s has no %q field (or it is empty)", path, Where(path, rec.line), field)
		}
		delete(rec.fields, field)
		rows[i] = Row{Prompt: p, Fields: rec.fields, Line: rec.line}
	}
	return rows, nil
}

// HasField reports whether any row has a non-empty value of field.
func HasField(rows []Row, field string) bool {
	for _, r := range rows {
		if r.Fields[field] != "" {
			return true
		}
	}
	return false
}

// readJSONL reads one JSON object per line. Lines may be of any length (a bufio.Scanner
// would stop at its buffer's size): a row with a long document is still a row.
func readJSONL(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	br := bufio.NewReaderSize(f, 1<<16)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if b := bytes.TrimSpace(text); len(b) > 0 {
			rec, perr := decodeObject(b)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w", line, perr)
			}
			out = append(out, record{fields: rec, line: line})
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
	}
}

// decodeObject reads one JSON object and renders its scalar fields as strings (numbers as
// written, so a gold answer "3.50" stays "3.50"); nested values are kept as JSON text.
func decodeObject(b []byte) (map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	rec := make(map[string]string, len(raw))
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		switch {
		case len(v) == 0 || bytes.Equal(v, []byte("null")):
			continue
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("field %q: %w", k, err)
			}
			rec[k] = s
		default:
			rec[k] = string(v)
		}
	}
	return rec, nil
}

func readParquet(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("not a readable parquet file: %w", err)
	}
	cols := pf.Schema().Columns()
	names := make([]string, len(cols))
	for i, c := range cols {
		if len(c) != 1 {
			return nil, fmt.Errorf("column %s is nested; rlif reads flat tables", strings.Join(c, "."))
		}
		names[i] = c[0]
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	var out []record
	buf := make([]parquet.Row, 64)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			rec := make(map[string]string, len(names))
			for _, v := range row {
				if v.IsNull() {
					continue
				}
				rec[names[v.Column()]] = valueString(v)
			}
			out = append(out, record{fields: rec, line: len(out) + 1})
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", len(out)+1, err)
		}
	}
}

func valueString(v parquet.Value) string {
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean())
	case parquet.Int32:
		return strconv.FormatInt(int64(v.Int32()), 10)
	case parquet.Int64:
		return strconv.FormatInt(v.Int64(), 10)
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32)
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64)
	default:
		return string(v.ByteArray())
	}
}

// Order hands out rows in a seeded order, epoch after epoch (reshuffled every epoch when
// shuffling), from a position that a checkpoint can store and restore.
type Order struct {
	n       int
	seed    uint64
	shuffle bool
	perm    []int
	Pos     Position
}

// Position is where an Order stands: the epoch and the index within it.
type Position struct {
	Epoch int `json:"epoch"`
	Index int `json:"index"`
}

// NewOrder returns the order over n rows.
func NewOrder(n int, seed uint64, shuffle bool) *Order {
	o := &Order{n: n, seed: seed, shuffle: shuffle}
	o.setEpoch(0)
	return o
}

// Seek moves to a stored position.
func (o *Order) Seek(p Position) {
	o.setEpoch(p.Epoch)
	o.Pos = p
}

func (o *Order) setEpoch(e int) {
	o.Pos = Position{Epoch: e}
	o.perm = make([]int, o.n)
	for i := range o.perm {
		o.perm[i] = i
	}
	if o.shuffle {
		rng := newSplitMix(o.seed ^ uint64(e+1)*0x9e3779b97f4a7c15)
		for i := o.n - 1; i > 0; i-- {
			j := int(rng.next() % uint64(i+1))
			o.perm[i], o.perm[j] = o.perm[j], o.perm[i]
		}
	}
}

// Next returns the indices of the next k rows, moving into the next epoch when needed.
func (o *Order) Next(k int) []int {
	out := make([]int, 0, k)
	for len(out) < k {
		if o.Pos.Index >= o.n {
			o.setEpoch(o.Pos.Epoch + 1)
		}
		out = append(out, o.perm[o.Pos.Index])
		o.Pos.Index++
	}
	return out
}

// StepsFor returns the steps that cover epochs passes over n rows, b prompts a step.
func StepsFor(n, b, epochs int) int {
	return int(math.Ceil(float64(n*epochs) / float64(b)))
}

// splitMix is a small, stable PRNG: the order must not change with Go's math/rand.
type splitMix struct{ s uint64 }

func newSplitMix(seed uint64) *splitMix { return &splitMix{s: seed} }

func (r *splitMix) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// FieldNames returns the sorted field names of a row, for messages.
func FieldNames(r Row) []string {
	names := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
