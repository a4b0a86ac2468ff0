#!/usr/bin/env bash
# Runs the arms of docs/experiments/table1-cpu.md and evaluates them side by side.
# Resumable: an arm with a final model is skipped, an arm with checkpoints is resumed from
# its newest one, and the evaluation is redone only when its summary is missing.
#   scripts/table1.sh            # all arms, then the table
#   ARMS="intuitor" scripts/table1.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rlif=bin/rlif
[ -x "$rlif" ] || make build
runs=runs/table1
arms=${ARMS:-grpo_gold intuitor intuitor_offline grpo_pv}
mkdir -p "$runs"
for arm in $arms; do
	cfg=examples/experiments/table1/$arm.toml
	dir=$runs/$arm
	if [ -f "$dir/final/model.gguf" ]; then
		echo "table1: $arm done ($dir/final/model.gguf)"
		continue
	fi
	start=$(date +%s)
	if compgen -G "$dir/checkpoints/step-*" >/dev/null; then
		echo "table1: $arm: resuming $dir"
		"$rlif" train --resume "$dir"
	else
		"$rlif" train --config "$cfg" --out "$dir" --overwrite
	fi
	echo "$arm $(( $(date +%s) - start ))" >>"$runs/wall_seconds.txt"
done
# The table is each run's own evaluation (metrics.jsonl, eval/step-N/): all of arith-test,
# greedy, through the sampler with the run's weights, at step 0 (the base model, the same
# in every arm) and every 8 steps. TABLE_EVAL=1 also evaluates the final exported models
# with rlif eval, side by side.
if [ "${TABLE_EVAL:-0}" = 1 ] && [ ! -f "$runs/eval/done" ]; then
	models=()
	for arm in $arms; do models+=(--model "$runs/$arm/final/model.gguf"); done
	mkdir -p "$runs/eval"
	"$rlif" eval "${models[@]}" --data arith-test --max-tokens 128 --out "$runs/eval" >"$runs/eval/report.txt"
	touch "$runs/eval/done"
fi
echo "table1: results in $runs/*/metrics.jsonl"
