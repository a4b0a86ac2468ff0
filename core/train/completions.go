package train

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/rlif/rlif/core/report"
	"github.com/rlif/rlif/rewards"
)

// completionRecord is one line of completions.jsonl: the report's reader has the type.
type completionRecord = report.Completion

// writeCompletions writes a line of completions.jsonl for each training completion of
// the batch, with its scores and advantage.
func (b *scoredBatch) writeCompletions(w io.Writer, step int, specs []rewards.Spec) error {
	enc := json.NewEncoder(w)
	scores, adv := b.Scores, b.Advantages
	for i, g := range b.training() {
		for j, c := range g.Completions {
			rec := completionRecord{Step: step, Group: i, Prompt: g.Prompt, Fields: g.Fields, Completion: c.Text, Tokens: len(c.Tokens),
				FinishReason: c.FinishReason, Scores: map[string]*float64{}, Advantage: adv[i][j], SelfCert: c.SelfCertaintyMean}
			for k, s := range specs {
				if v := scores[k][i][j]; v.Applicable {
					x := v.Value
					rec.Scores[s.Name] = &x
				} else {
					rec.Scores[s.Name] = nil
				}
			}
			if err := enc.Encode(rec); err != nil {
				return fmt.Errorf("completions: %w", err)
			}
		}
	}
	return nil
}
