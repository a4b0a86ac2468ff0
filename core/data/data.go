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
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"
)

// Row is one prompt with the dataset's other fields (gold answer and so on) as strings.
type Row struct {
	Prompt string
	Fields map[string]string
	// Kinds says what each field that was not text held: a JSON number, boolean, object,
	// array or null, or a parquet column that is not a string (KindNumber and the others).
	// Fields holds numbers and booleans as written and objects and arrays as JSON text (a
	// plugin may read them); a null field is left out of Fields. A field missing here was
	// text.
	Kinds map[string]Kind
	// Line is where the row is in its file, 1-based: the line of a JSONL file (blank lines
	// counted, so an editor finds it), the row of a parquet file, the problem's number in
	// the built-in set. Messages name it through Where.
	Line int
}

// Kind is what a field that is not text held, worded for messages ("field \"prompt\" is
// a number").
type Kind string

// The kinds of Row.Kinds.
const (
	KindNumber  Kind = "a number"
	KindBoolean Kind = "a boolean"
	KindObject  Kind = "an object"
	KindArray   Kind = "an array"
	KindNull    Kind = "null"
)

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
	kinds  map[string]Kind
	line   int
}

// has reports whether the record has field f, null included.
func (r record) has(f string) bool {
	_, text := r.fields[f]
	_, other := r.kinds[f]
	return text || other
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
	if err := CheckRegularFile(path); err != nil {
		return nil, fmt.Errorf("data %w: give a JSONL or parquet file, or a named set (%s)", err, strings.Join(SetNames(), ", "))
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
			if records[0].has(f) {
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
		// A prompt is text: a number or an object would be trained on as its JSON
		// spelling, which is never what the file meant.
		if k, ok := rec.kinds[field]; ok {
			return nil, fmt.Errorf("data %s: %s: field %q is %s, not text; a prompt must be a string", path, Where(path, rec.line), field, k)
		}
		p, ok := rec.fields[field]
		if !ok || strings.TrimSpace(p) == "" {
			return nil, fmt.Errorf("data %s: %s has no %q field (or it is empty)", path, Where(path, rec.line), field)
		}
		delete(rec.fields, field)
		rows[i] = Row{Prompt: p, Fields: rec.fields, Kinds: rec.kinds, Line: rec.line}
	}
	return rows, nil
}

// CheckAnswerField refuses a gold answer field that holds a JSON object or array in some
// row: a gold answer is text or a number (a number is read as written), and the JSON
// spelling of a structure would be compared with completions' answers as if it were one.
// path names the data in the error.
func CheckAnswerField(path string, rows []Row, field string) error {
	for _, r := range rows {
		if k := r.Kinds[field]; k == KindObject || k == KindArray {
			return fmt.Errorf("data %s: %s: field %q (the gold answer) is %s; a gold answer must be a string or a number", path, Where(path, r.Line), field, k)
		}
	}
	return nil
}

// CheckRegularFile returns an error naming path when it is a directory or not a regular
// file (a named pipe would block the reader forever). A path that cannot be read is left
// for the reader to report. Callers add what they want instead.
func CheckRegularFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil || st.Mode().IsRegular():
		return nil
	case st.IsDir():
		return fmt.Errorf("%s is a directory", path)
	}
	kind := "a special file"
	switch t := st.Mode().Type(); {
	case t&os.ModeNamedPipe != 0:
		kind = "a named pipe"
	case t&os.ModeSocket != 0:
		kind = "a socket"
	case t&os.ModeDevice != 0:
		kind = "a device"
	}
	return fmt.Errorf("%s is %s, not a regular file", path, kind)
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

// readJSONL reads one JSON object per line.
func readJSONL(path string) ([]record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []record
	err = EachJSONLine(f, func(line int, text []byte) error {
		fields, kinds, err := decodeObject(text)
		if err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		out = append(out, record{fields: fields, kinds: kinds, line: line})
		return nil
	})
	return out, err
}

// bom is the UTF-8 byte-order mark that some editors (Notepad, Excel's "CSV UTF-8") put
// at the start of a text file.
var bom = []byte{0xEF, 0xBB, 0xBF}

// EachJSONLine calls f with every non-blank line of a JSON-lines stream, trimmed, and its
// 1-based number (blank lines counted, so an editor finds it); f's error is returned as it
// is. It is the one reader of the JSONL files users write (prompt sets, evaluation sets,
// completions to score): a byte-order mark at the start is skipped, and lines may be of
// any length (a bufio.Scanner would stop at its buffer's size: a row with a long document
// is still a row).
func EachJSONLine(r io.Reader, f func(line int, text []byte) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if line == 1 {
			if bytes.HasPrefix(text, []byte{0xFF, 0xFE}) || bytes.HasPrefix(text, []byte{0xFE, 0xFF}) {
				return errors.New("line 1: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8")
			}
			text = bytes.TrimPrefix(text, bom)
		}
		if b := bytes.TrimSpace(text); len(b) > 0 {
			// JSON decoding would replace each bad byte by U+FFFD without a word, and
			// train on the replacements.
			if !utf8.Valid(b) {
				return fmt.Errorf("line %d is not valid UTF-8 (a file in another encoding, such as Latin-1?); save it as UTF-8", line)
			}
			if ferr := f(line, b); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// DecodeJSONObject decodes one line of a JSONL file, which must be a JSON object. A line
// that is JSON of another kind says which (a file holding one JSON array, written as JSON
// rather than JSON Lines, starts with one), rather than Go's "cannot unmarshal array into
// Go value of type map[string]json.RawMessage".
func DecodeJSONObject(b []byte) (map[string]json.RawMessage, error) {
	var raw map[string]json.RawMessage
	err := json.Unmarshal(b, &raw)
	if err == nil && raw != nil {
		return raw, nil
	}
	var ute *json.UnmarshalTypeError
	switch {
	case len(b) > 0 && b[0] == '[':
		return nil, errors.New("a JSON array, not an object: a JSONL file holds one JSON object per line (a file that is one JSON array is JSON, not JSON Lines)")
	case err == nil || errors.As(err, &ute): // null, or another kind of value
		return nil, fmt.Errorf("not a JSON object: %s", bytes.TrimSpace(b[:min(len(b), 40)]))
	}
	return nil, fmt.Errorf("not a JSON object: %w", err)
}

// decodeObject reads one JSON object and renders its scalar fields as strings (numbers as
// written, so a gold answer "3.50" stays "3.50"); nested values are kept as JSON text. The
// kinds say which fields were not strings.
func decodeObject(b []byte) (map[string]string, map[string]Kind, error) {
	raw, err := DecodeJSONObject(b)
	if err != nil {
		return nil, nil, err
	}
	rec := make(map[string]string, len(raw))
	var kinds map[string]Kind
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		if len(v) == 0 {
			continue
		}
		if v[0] == '"' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, nil, fmt.Errorf("field %q: %w", k, err)
			}
			rec[k] = s
			continue
		}
		if kinds == nil {
			kinds = map[string]Kind{}
		}
		switch v[0] {
		case 'n':
			kinds[k] = KindNull
			continue // a null field is an absent one
		case 't', 'f':
			kinds[k] = KindBoolean
		case '{':
			kinds[k] = KindObject
		case '[':
			kinds[k] = KindArray
		default:
			kinds[k] = KindNumber
		}
		rec[k] = string(v)
	}
	return rec, kinds, nil
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
			rec := record{fields: make(map[string]string, len(names)), line: len(out) + 1}
			for _, v := range row {
				name := names[v.Column()]
				if k := valueKind(v); k != "" {
					if rec.kinds == nil {
						rec.kinds = map[string]Kind{}
					}
					rec.kinds[name] = k
				}
				if !v.IsNull() {
					rec.fields[name] = valueString(v)
				}
			}
			out = append(out, rec)
		}
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", len(out)+1, err)
		}
	}
}

// valueKind is what a parquet value that is not a string holds ("" for a string).
func valueKind(v parquet.Value) Kind {
	switch {
	case v.IsNull():
		return KindNull
	case v.Kind() == parquet.Boolean:
		return KindBoolean
	case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray:
		return ""
	}
	return KindNumber
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

// StepsFor returns the steps that cover epochs passes over n rows, b prompts a step. An
// absurd epoch count gives as many steps as a float64 counts exactly, more than any run
// takes (n*epochs would overflow into a negative count).
func StepsFor(n, b, epochs int) int {
	return int(min(math.Ceil(float64(n)*float64(epochs)/float64(b)), 1<<53))
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
