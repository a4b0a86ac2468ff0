#!/usr/bin/env bash
# Reproduces the TRL rows of issue 12's table: TRL's GRPOTrainer on the work of
# examples/intuitor.toml (SmolLM2-135M-Instruct, the first 8 MATH train problems x G = 7 x
# <= 256 tokens, T 0.9, beta 0.005, mu = 1, gradient checkpointing, 2 threads), once in f32
# and once with bf16=True, printing per-step time and completion tokens/s.
#
#   bench/trl_grpo.sh [--steps N] [--precision f32|bf16|both] [--data FILE] [--model GGUF]
#
# The first run makes a virtual environment in bench/.venv (about 4 GB with the CUDA wheels
# PyPI's torch pulls in) and a Hugging Face copy of the model in bench/.cache. Not part of
# `make test`; see bench/README.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import trl' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet torch==2.15.0 trl==1.16.0 transformers==5.23.0 gguf==0.19.0 accelerate datasets
fi
# One thread pool of 2, as rlif's sampler and learner use on this machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-2}"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
exec "$venv/bin/python" "$here/trl_grpo.py" "$@"
