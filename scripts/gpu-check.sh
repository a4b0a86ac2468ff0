#!/usr/bin/env bash
# scripts/gpu-check.sh: rlif's GPU paths checked where they run, in one call of at most
# 10 minutes on a GPU machine (one H100 or H200, 16 cores, PyTorch 2.11 with CUDA 13, no
# network, no Go toolchain). Results go to one JSON file, $OUT/gpu-check.json (OUT defaults
# to build/gpu-check).
#
# What travels there is the working tree and build/gpu-bundle.tar.xz, which
# `make gpu-bundle` makes here after `make cuda-check` (scripts/gpu-bundle.sh): the CUDA
# build of rlif, ggml's CUDA backend, the libraries rlif links that the machine may lack,
# the stories test model and SmolLM2's tokenizer. The device call is:
#
#   run(command="scripts/gpu-check.sh", carry=["build/gpu-bundle.tar.xz"], timeout_s=600)
#
# Stages (each timed, its exit status and output tail recorded; a stage that fails does
# not stop the others, and stages are skipped once GPU_CHECK_SECONDS, default 540, run out):
#   info            GPU, driver, PyTorch;
#   check_*         `rlif check` of the learner against the sampler: the CPU learner, then
#                   the CUDA learner with every layer of the sampler on the GPU, on the
#                   stories model and on models of SmolLM2-135M's and Qwen2.5-1.5B's shapes
#                   (random weights, scripts/gpu-synth-model.py: no real checkpoint of that
#                   size travels here; parity does not depend on the weights' values);
#   sample_*        group sampling (G = 7, temperature 0.9) on the SmolLM2-shaped model,
#                   all layers on the GPU against 16 CPU threads: completion tokens/s;
#   bench_rlif      one `rlif bench` step of the Intuitor settings (examples/intuitor.toml's
#                   method) with learner.device = "cuda" and sampling.gpu_layers = -1 on the
#                   1.5B-shaped model, GPU_CHECK_PROMPTS x 7 x GPU_CHECK_TOKENS (default
#                   32 x 7 x 512: the paper's 128 x 7 x 3,072 does not fit in one call);
#   bench_trl       the same step with TRL's GRPOTrainer (bench/trl_grpo.py, bf16, on the
#                   GPU) where the machine's Python has trl, for the ratio.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/build/gpu-check}
mkdir -p "$out/stages"
work=$root/build/gpu
budget=${GPU_CHECK_SECONDS:-540}
prompts=${GPU_CHECK_PROMPTS:-32}
sample_prompts=${GPU_CHECK_SAMPLE_PROMPTS:-16}
sample_tokens=${GPU_CHECK_SAMPLE_TOKENS:-256}
tokens=${GPU_CHECK_TOKENS:-512}
# The large model's shape: hidden, layers, heads, KV heads, MLP width (Qwen2.5-1.5B's).
read -r big_hidden big_layers big_heads big_kv big_inter <<<"${GPU_CHECK_SHAPE:-1536 28 12 2 8960}"
big_shape=(--hidden "$big_hidden" --layers "$big_layers" --heads "$big_heads" --kv-heads "$big_kv" --intermediate "$big_inter")
t_start=$(date +%s)

left() { echo $((budget - ($(date +%s) - t_start))); }

# stage NAME SECONDS COMMAND...: runs COMMAND with at most SECONDS (less when the budget
# is short), recording its status, time and output in $out/stages/NAME.{json,log}.
stage() {
	local name=$1 limit=$2 rc t0 t1
	shift 2
	local remaining
	remaining=$(left)
	if [ "$remaining" -lt 20 ]; then
		printf '{"stage":"%s","skipped":"the call'"'"'s time ran out"}\n' "$name" >"$out/stages/$name.json"
		echo "gpu-check: $name skipped (time)" >&2
		return 1
	fi
	[ "$limit" -gt $((remaining - 10)) ] && limit=$((remaining - 10))
	echo "gpu-check: $name (at most ${limit}s)" >&2
	t0=$(date +%s.%N)
	timeout --kill-after=5 "$limit" "$@" >"$out/stages/$name.log" 2>&1
	rc=$?
	t1=$(date +%s.%N)
	python3 - "$name" "$rc" "$t0" "$t1" "$out/stages/$name.log" >"$out/stages/$name.json" <<'EOF'
import json, sys
name, rc, t0, t1, log = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
text = open(log, errors="replace").read()
print(json.dumps({"stage": name, "rc": rc, "timed_out": rc in (124, 137), "seconds": round(t1 - t0, 1), "tail": text[-3000:]}))
EOF
	tail -n 3 "$out/stages/$name.log" >&2
	return $rc
}

# The bundle: bin/rlif-cuda, lib/ollama/libggml-cuda.so, lib/ (libraries the machine may
# lack), models/stories260K.gguf, tokenizer/ (SmolLM2's).
if [ -f build/gpu-bundle.tar.xz ]; then
	# Python's tarfile, not tar: the machine may lack the xz program.
	rm -rf "$work" && mkdir -p "$work" &&
		python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' build/gpu-bundle.tar.xz "$work"
fi
if [ ! -x "$work/bin/rlif-cuda" ]; then
	echo "gpu-check: no $work/bin/rlif-cuda: make the bundle here with 'make cuda-check gpu-bundle' and carry build/gpu-bundle.tar.xz" >&2
	exit 2
fi
rlif=$work/bin/rlif-cuda
# libtorch, NCCL and the CUDA runtime from the machine's PyTorch (the same 2.11 / CUDA 13
# the binary was built against), ggml's CUDA backend from the bundle.
pylibs=$(python3 - <<'EOF'
import glob, os
import torch
dirs = [os.path.join(os.path.dirname(torch.__file__), "lib")]
for site in {os.path.dirname(os.path.dirname(torch.__file__))}:
    dirs += sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib"))) + sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "lib*")))
print(":".join(d for d in dirs if os.path.isdir(d)))
EOF
)
export LD_LIBRARY_PATH="$pylibs:$work/lib:${LD_LIBRARY_PATH:-}"
export OLLAMA_LIBRARY_PATH=$work/lib/ollama
stories=$work/models/stories260K.gguf

stage info 30 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())"; ldd '"$rlif"' | grep -E "torch|nccl|cudart|not found"'

stage check_stories_cpu 90 "$rlif" check --model "$stories" --device cpu --json
stage check_stories_cuda 90 "$rlif" check --model "$stories" --device cuda --gpu-layers -1 --json

# Models of the real shapes with random weights: SmolLM2-135M's (30 layers, hidden 576)
# and Qwen2.5-1.5B's (28 layers, hidden 1536, 12 / 2 heads).
synth() { # name args...
	local name=$1
	shift
	[ -f "$work/$name.gguf" ] && return 0
	rm -rf "$work/$name" &&
		python3 scripts/gpu-synth-model.py "$work/tokenizer" "$work/$name" "$@" &&
		"$rlif" convert "$work/$name" "$work/$name.gguf" && rm -rf "$work/$name/model.safetensors"
}
export -f synth
export work rlif
stage synth_smollm2_shape 120 bash -c 'synth "$@"' synth smollm2-shape --hidden 576 --layers 30 --heads 9 --kv-heads 3 --intermediate 1536
stage check_smollm2_shape_cpu 120 "$rlif" check --model "$work/smollm2-shape.gguf" --device cpu --json --threads 16
stage check_smollm2_shape_cuda 90 "$rlif" check --model "$work/smollm2-shape.gguf" --device cuda --gpu-layers -1 --json

# Group sampling: GPU_CHECK_SAMPLE_PROMPTS (16) prompts x G 7 x GPU_CHECK_SAMPLE_TOKENS (256)
# tokens at temperature 0.9.
prompts_file=$work/prompts.jsonl
python3 - "$prompts_file" <<'EOF'
import json, random, sys
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for i in range(256):
        a, b = r.randint(10, 99), r.randint(10, 99)
        q = f"What is {a} + {b}? Explain each step."
        f.write(json.dumps({"prompt": q, "problem": q, "answer": str(a + b)}) + "\n")
EOF
stage sample_gpu 90 "$rlif" eval --model "$work/smollm2-shape.gguf" --data "$prompts_file" --limit "$sample_prompts" --n 7 --temperature 0.9 --max-tokens "$sample_tokens" --gpu-layers -1 --json --out "$work/sample-gpu"
stage sample_cpu 120 "$rlif" eval --model "$work/smollm2-shape.gguf" --data "$prompts_file" --limit "$sample_prompts" --n 7 --temperature 0.9 --max-tokens "$sample_tokens" --gpu-layers 0 --threads 16 --json --out "$work/sample-cpu"

stage synth_1p5b_shape 150 bash -c 'synth "$@"' synth qwen1p5b-shape "${big_shape[@]}"
stage check_1p5b_shape_cuda 120 "$rlif" check --model "$work/qwen1p5b-shape.gguf" --device cuda --gpu-layers -1 --json --tokens 128

# One training step of the Intuitor settings at the largest size the call allows.
cat >"$work/bench.toml" <<EOF
model = "$work/qwen1p5b-shape.gguf"
out = "$work/bench-run"
steps = 1
seed = 1
[data]
path = "$prompts_file"
[sampling]
prompts_per_step = $prompts
group_size = 7
max_tokens = $tokens
temperature = 0.9
gpu_layers = -1
[learner]
device = "cuda"
lr = 3e-6
beta = 0.005
loss = "bnpo"
[self_certainty]
source = "sampler"
[[rewards]]
name = "self_certainty"
EOF
stage bench_rlif 240 "$rlif" bench --config "$work/bench.toml" --json

if python3 -c 'import trl' 2>/dev/null; then
	# The HF directory of the 1.5B-shaped model was removed after conversion: write it again.
	rm -rf "$work/qwen1p5b-shape-hf"
	stage bench_trl 240 bash -c "python3 scripts/gpu-synth-model.py '$work/tokenizer' '$work/qwen1p5b-shape-hf' ${big_shape[*]} && HF_HUB_OFFLINE=1 python3 bench/trl_grpo.py --model '$work/qwen1p5b-shape-hf' --data '$prompts_file' --prompts $prompts --group-size 7 --max-tokens $tokens --steps 1 --precision bf16 --device cuda --gradient-checkpointing off --threads 16 --out '$work/trl-runs'"
else
	printf '{"stage":"bench_trl","skipped":"this machine'"'"'s Python has no trl (no network to install it)"}\n' >"$out/stages/bench_trl.json"
fi

python3 - "$out" "$prompts" "$tokens" "$(($(date +%s) - t_start))" <<'EOF'
import glob, json, os, sys
out, prompts, tokens, wall = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
stages = {}
for p in sorted(glob.glob(os.path.join(out, "stages", "*.json"))):
    s = json.load(open(p))
    stages[s["stage"]] = s

def last_json(name):
    """The last JSON object of a stage's output: from the last line that starts one (a
    one-line object, or an indented one to the end of the output)."""
    lines = stages.get(name, {}).get("tail", "").splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].lstrip().startswith("{"):
            for text in (lines[i], "\n".join(lines[i:])):
                try:
                    return json.loads(text)
                except ValueError:
                    pass
    return None

result = {"settings": {"bench_prompts": prompts, "group_size": 7, "bench_max_tokens": tokens, "shape": os.environ.get("GPU_CHECK_SHAPE", "1536 28 12 2 8960")}, "wall_seconds": wall, "stages": stages}
for name in list(stages):
    parsed = last_json(name)
    if parsed is not None:
        result.setdefault("parsed", {})[name] = parsed
json.dump(result, open(os.path.join(out, "gpu-check.json"), "w"), indent=1)
print(f"gpu-check: {os.path.join(out, 'gpu-check.json')} ({len(stages)} stages, {wall} s)")
EOF
