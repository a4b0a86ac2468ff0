#!/usr/bin/env bash
# Builds ggml's CUDA backend from the sources vendored in the ollama module (v0.9.6) as
# lib/ollama/libggml-cuda.so. The rlif binary (bin/rlif) loads GPU backends at start-up
# from ../lib/ollama relative to itself, or from $OLLAMA_LIBRARY_PATH, exactly as ollama
# does; without one, it runs on the CPU backend compiled into it.
# Needs the CUDA toolkit (nvcc, 11.8 or 12.x) and cmake >= 3.21. CUDA_ARCHITECTURES=90
# (say) limits the build to one GPU generation; the default is the GPUs of this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-cuda: nvcc not found; install the CUDA toolkit first (the CPU build needs nothing of this)" >&2
  exit 1
fi
src=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
cmake -S "$src" -B build/cuda -DCMAKE_BUILD_TYPE=Release ${CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHITECTURES}
cmake --build build/cuda --target ggml-cuda -j"$(nproc)"
mkdir -p lib/ollama
cp build/cuda/lib/ollama/libggml-*.so lib/ollama/
echo "built lib/ollama/libggml-cuda.so; run with --gpu-layers -1 (sampling.gpu_layers = -1)" >&2
