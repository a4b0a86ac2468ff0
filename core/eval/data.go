package eval

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rlif/rlif/rewards/answer"
)

// PromptFields are the fields tried, in order, for a row's prompt when none is named.
var PromptFields = []string{"prompt", "question", "problem"}

// DefaultAnswerField is the field holding a row's gold answer unless another is named.
const DefaultAnswerField = answer.GoldField

// Item is one evaluation problem: a data row's prompt and gold answer.
type Item struct {
	// Index is the row's position in the data file, 0-based, blank lines not counted.
	Index int
	// Prompt is the user message.
	Prompt string
	// Gold is the reference answer extracted from the answer field (answer.Gold: the
	// number after GSM8K's "####", the last \boxed{} of a MATH solution, or the field).
	Gold string
}

// DataOptions say which fields of a JSONL row to read and how many rows.
type DataOptions struct {
	// PromptField names the prompt field; "" takes the first of PromptFields present.
	PromptField string
	// AnswerField names the gold answer field; "" means DefaultAnswerField.
	AnswerField string
	// Limit keeps the first Limit rows; 0 keeps all.
	Limit int
}

// LoadItems reads the evaluation items of a JSONL file, one JSON object per line.
func LoadItems(path string, opt DataOptions) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	items, err := ReadItems(f, opt)
	if err != nil {
		return nil, fmt.Errorf("data %s: %w", path, err)
	}
	return items, nil
}

// ReadItems reads evaluation items from JSONL text (see LoadItems).
func ReadItems(r io.Reader, opt DataOptions) ([]Item, error) {
	if opt.Limit < 0 {
		return nil, fmt.Errorf("limit must be >= 0, got %d", opt.Limit)
	}
	answerField := opt.AnswerField
	if answerField == "" {
		answerField = DefaultAnswerField
	}
	br := bufio.NewReaderSize(r, 1<<16)
	var items []Item
	for line := 1; opt.Limit == 0 || len(items) < opt.Limit; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if t := bytes.TrimSpace(text); len(t) > 0 {
			item, perr := parseRow(t, len(items), opt.PromptField, answerField)
			if perr != nil {
				return nil, fmt.Errorf("line %d: %w", line, perr)
			}
			items = append(items, item)
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(items) == 0 {
		return nil, errors.New("the file is empty: no JSON rows to evaluate")
	}
	return items, nil
}

func parseRow(text []byte, index int, promptField, answerField string) (Item, error) {
	var row map[string]json.RawMessage
	if err := json.Unmarshal(text, &row); err != nil {
		return Item{}, fmt.Errorf("not a JSON object: %w", err)
	}
	name := promptField
	if name == "" {
		found, ok := firstPresent(row, PromptFields)
		if !ok {
			return Item{}, fmt.Errorf("none of the prompt fields %s is present (name one with --prompt-field)", quoteList(PromptFields))
		}
		name = found
	}
	raw, ok := row[name]
	if !ok {
		return Item{}, fmt.Errorf("no %q field (the prompt; name another with --prompt-field)", name)
	}
	prompt, err := fieldText(name, raw)
	if err != nil {
		return Item{}, err
	}
	item := Item{Index: index, Prompt: prompt}
	if strings.TrimSpace(item.Prompt) == "" {
		return Item{}, errors.New("the prompt is empty")
	}
	raw, ok = row[answerField]
	if !ok {
		return Item{}, fmt.Errorf("no %q field (the gold answer; name another with --answer-field)", answerField)
	}
	field, err := fieldText(answerField, raw)
	if err != nil {
		return Item{}, err
	}
	if item.Gold = answer.Gold(field); item.Gold == "" {
		return Item{}, fmt.Errorf("field %q holds no answer", answerField)
	}
	return item, nil
}

// fieldText returns a string field's value, or a number's literal text.
func fieldText(name string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("field %q is neither a string nor a number", name)
}

func firstPresent(row map[string]json.RawMessage, names []string) (string, bool) {
	for _, n := range names {
		if _, ok := row[n]; ok {
			return n, true
		}
	}
	return "", false
}

func quoteList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
