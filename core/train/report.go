package train

import (
	"context"
	"fmt"
)

// The step's report: its metrics, diagnostics and completions are of the whole step's
// batch, every rank's, gathered on rank 0 (job.gather; a rank alone has it already).

// report gathers the step's batch and computes the step's metrics and diagnostics from
// it into m; it returns the gathered batch, which record writes out after the step.
// The groups keep all their votes (the answer diagnostics are over them); the scores and
// advantages are of the training groups.
func (r *run) report(step int, m *Metrics, b *scoredBatch) (*scoredBatch, error) {
	all, bytes, err := r.job.gather(step, b)
	if err != nil {
		return nil, err
	}
	m.ReportBytes += bytes
	specs := r.cfg.RewardSpecs()
	m.observe(specs, all)
	if m.Diag, err = diagnose(specs, all, r.cfg.Data.AnswerField, r.cfg.Advantage); err != nil {
		return nil, fmt.Errorf("diagnostics: %w", err)
	}
	for _, name := range m.inapplicable() {
		if r.lead() {
			fmt.Fprintf(r.progress, "warning: step %d: reward %s scored every completion \"not applicable\"; it adds nothing to this step's advantages\n", step, name)
		}
	}
	return all, nil
}

// record writes what rank 0 keeps of a complete step besides its metrics line: the
// held-out evaluation when one is due, and the completions of the whole step's batch.
func (r *run) record(ctx context.Context, step int, m *Metrics, all *scoredBatch) error {
	if !r.lead() {
		return nil
	}
	if err := r.evalStep(ctx, step, m); err != nil {
		return err
	}
	if every := r.cfg.Output.CompletionsEvery; every > 0 && step%every == 0 {
		return all.writeCompletions(r.complets, step, r.cfg.RewardSpecs())
	}
	return nil
}
