#!/usr/bin/env bash
# Runs the label-free experiments of docs/experiments/label-free.md (issue 24), one core
# each (taskset -c ${CORE:-1}), resumable: a run with a final model is skipped, one with
# checkpoints is resumed. Configs are made from the committed ones in runs/label-free/cfg
# (seed and, for §1, evaluation at steps 0 and 24 only), with absolute paths.
#   scripts/label_free.sh                       # the default queue below
#   QUEUE="seeds:intuitor:6 long:grpo_pv:2" scripts/label_free.sh
#   scripts/label_free.sh collect               # copy each run's metrics and evaluations
#                                               # into docs/experiments/label-free/runs
#   scripts/label_free.sh transfer              # evaluate the base model and each finished
#                                               # §1 run's final model on arith-words-test
set -uo pipefail
cd "$(dirname "$0")/.."
rlif=${RLIF:-bin/rlif}
[ -x "$rlif" ] || make build
root=runs/label-free
queue=${QUEUE:-"seeds:intuitor:3 seeds:grpo_gold:3 long:intuitor:1 long:grpo_gold:1 seeds:intuitor:4 seeds:grpo_gold:4 seeds:intuitor:5 seeds:grpo_gold:5 long:trajectory_entropy:1 long:ttrl:1 long:intuitor:2 long:grpo_gold:2 long:trajectory_entropy:2 long:ttrl:2 seeds:intuitor_f32:1 seeds:grpo_gold_f32:1 seeds:intuitor_f32:2 seeds:grpo_gold_f32:2 seeds:intuitor_f32:3 seeds:grpo_gold_f32:3 long:grpo_pv:1"}
if [ "${1:-}" = collect ]; then
	for dir in "$root"/seeds/* "$root"/long/*; do
		[ -f "$dir/metrics.jsonl" ] || continue
		# a run still training (its lock held) is collected once it ends
		if [ -f "$dir/rlif.lock" ] && ! flock -n "$dir/rlif.lock" true; then
			echo "label_free: $dir is running; not collected" >&2
			continue
		fi
		to=docs/experiments/label-free/runs/$(basename "$(dirname "$dir")")_$(basename "$dir")
		mkdir -p "$to"
		cp "$dir/metrics.jsonl" "$dir/config.toml" "$to/"
		for ev in "$dir"/eval/step-* "$dir"/transfer/final; do
			[ -f "$ev/summary.json" ] && mkdir -p "$to/${ev#"$dir"/}" && cp "$ev/summary.json" "$ev/items.jsonl" "$to/${ev#"$dir"/}/"
		done
	done
	if [ -f "$root/transfer/base/summary.json" ]; then
		mkdir -p docs/experiments/label-free/runs/transfer_base
		cp "$root/transfer/base/summary.json" "$root/transfer/base/items.jsonl" docs/experiments/label-free/runs/transfer_base/
	fi
	exit 0
fi
if [ "${1:-}" = transfer ]; then
	# The transfer set (arith-words-test): word problems, a form the drills never show;
	# greedy, the runs' system prompt, 256 tokens (the stories take more steps than a drill).
	evalw() { # model out
		[ -f "$2/summary.json" ] && return 0
		taskset -c "${CORE:-1}" "$rlif" eval --model "$1" --data arith-words-test --max-tokens 256 --quiet --out "$2" >/dev/null || exit 1
	}
	evalw models/SmolLM2-135M-Instruct.Q4_1.gguf "$root/transfer/base"
	for dir in "$root"/seeds/*; do
		[ -f "$dir/final/model.gguf" ] && evalw "$dir/final/model.gguf" "$dir/transfer/final"
	done
	exit 0
fi
mkdir -p "$root/cfg"
for item in $queue; do
	IFS=: read -r kind arm seed <<<"$item"
	case $kind in
	seeds) src=examples/experiments/table1/$arm.toml; every='s/^every = 8/every = 24/' ;;
	long) src=examples/experiments/long/$arm.toml; every='' ;;
	*) echo "label_free: unknown kind $kind in $item" >&2; exit 2 ;;
	esac
	dir=$root/$kind/${arm}_s$seed
	cfg=$root/cfg/${kind}_${arm}_s$seed.toml
	sed -e "s|^model = .*|model = \"$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf\"|" -e "/^out = /d" \
		-e "s/^seed = .*/seed = $seed/" ${every:+-e "$every"} "$src" >"$cfg"
	if [ -f "$dir/final/model.gguf" ]; then
		echo "label_free: $kind $arm seed $seed done"
		continue
	fi
	start=$(date +%s)
	if compgen -G "$dir/checkpoints/step-*" >/dev/null; then
		taskset -c "${CORE:-1}" "$rlif" train --resume "$dir" || exit 1
	else
		mkdir -p "$(dirname "$dir")"
		taskset -c "${CORE:-1}" "$rlif" train --config "$cfg" --out "$dir" || exit 1
	fi
	echo "$kind $arm $seed $(($(date +%s) - start)) $(lscpu | sed -n 's/^Model name: *//p')" >>"$root/wall_seconds.txt"
	# A finished run's step checkpoints (1.5 GB each) are done with: its final model and
	# evaluations stay. Two lanes of runs filled the disk once without this.
	[ -f "$dir/final/model.gguf" ] && rm -rf "$dir"/checkpoints/step-*
done
