package eval

import (
	"errors"
	"fmt"

	"github.com/rlif/rlif/core/data"
	"github.com/rlif/rlif/rewards/answer"
)

// DefaultAnswerField is the field holding a row's gold answer unless another is named.
const DefaultAnswerField = answer.GoldField

// Item is one evaluation problem: a data row's prompt and gold answer.
type Item struct {
	// Index is the row's position in the data file, 0-based, blank lines not counted.
	Index int
	// Line is the row's place in the file, 1-based, as data.Row.Line (messages name it).
	Line int
	// Prompt is the user message.
	Prompt string
	// Gold is the reference answer extracted from the answer field (answer.Gold: the
	// number after GSM8K's "####", the last \boxed{} of a MATH solution, or the field).
	Gold string
}

// DataOptions say which fields of a row to read and how many rows.
type DataOptions struct {
	// PromptField names the prompt field; "" takes the first of prompt, question, problem
	// present (data.Load's rule).
	PromptField string
	// AnswerField names the gold answer field; "" means DefaultAnswerField.
	AnswerField string
	// Limit keeps the first Limit rows; 0 keeps all.
	Limit int
	// Unlabeled reads prompts only: the items have no Gold, and no row needs an answer.
	Unlabeled bool
}

// LoadItems reads the evaluation items of a JSONL or parquet file with the loader that
// training uses (data.Load), so both read a file the same way.
func LoadItems(path string, opt DataOptions) ([]Item, error) {
	if opt.Limit < 0 {
		return nil, fmt.Errorf("limit must be >= 0, got %d", opt.Limit)
	}
	answerField := opt.AnswerField
	if answerField == "" {
		answerField = DefaultAnswerField
	}
	rows, err := data.Load(path, opt.PromptField)
	if err != nil {
		return nil, err
	}
	if opt.Limit > 0 && opt.Limit < len(rows) {
		rows = rows[:opt.Limit]
	}
	items := make([]Item, len(rows))
	if opt.Unlabeled {
		for i, r := range rows {
			items[i] = Item{Index: i, Line: r.Line, Prompt: r.Prompt}
		}
		rows = nil
	} else if err := data.CheckAnswerField(path, rows, answerField); err != nil {
		return nil, err
	}
	for i, r := range rows {
		where := func(err error) error {
			return fmt.Errorf("data %s: %s: %w", path, data.Where(path, r.Line), err)
		}
		field, ok := r.Fields[answerField]
		if !ok {
			return nil, where(fmt.Errorf("no %q field (the gold answer; name another with --answer-field, or data.answer_field in a run config; prompts without answers: rlif eval --unlabeled, or eval.unlabeled = true in a run)", answerField))
		}
		gold := answer.Gold(field)
		if gold == "" {
			return nil, where(fmt.Errorf("field %q holds no answer", answerField))
		}
		items[i] = Item{Index: i, Line: r.Line, Prompt: r.Prompt, Gold: gold}
	}
	if len(items) == 0 {
		return nil, errors.New("no items to evaluate")
	}
	return items, nil
}
