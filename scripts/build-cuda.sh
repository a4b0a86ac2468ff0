#!/usr/bin/env bash
# Builds ggml's CUDA backend from the sources vendored in the ollama module (v0.9.6) as
# lib/ollama/libggml-cuda.so. The rlif binary (bin/rlif) loads GPU backends at start-up
# from ../lib/ollama relative to itself, or from $OLLAMA_LIBRARY_PATH, exactly as ollama
# does; without one, it runs on the CPU backend compiled into it.
# Needs nvcc (CUDA 12.x or 13.x) and cmake >= 3.21: the nvcc on $PATH, or $CUDACXX, or the
# one `make cuda-check` installs from PyPI (.cuda/py, scripts/cuda-wheels.sh).
# CUDA_ARCHITECTURES picks the GPU generations (default: Ampere and Hopper, "80;90", whose
# PTX newer GPUs compile at load); the build takes about 25 minutes per generation on one
# core.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${CUDACXX:-$(command -v nvcc || true)}
if [ -z "$nvcc" ] && [ -x .cuda/py/nvidia/cu13/bin/nvcc ]; then
	nvcc=$PWD/.cuda/py/nvidia/cu13/bin/nvcc
fi
if [ -z "$nvcc" ]; then
	echo "build-cuda: nvcc not found; install the CUDA toolkit, or run 'make cuda-check', which installs one from PyPI (the CPU build needs nothing of this)" >&2
	exit 1
fi
root=$(cd "$(dirname "$nvcc")/.." && pwd)
src=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
flags=()
# ggml's VMM memory pool calls the driver API, linked through the toolkit's libcuda stub;
# the PyPI toolchain has none (the driver comes with the GPU machine), so the pool falls
# back to cudaMalloc there.
if ! compgen -G "$root/lib*/stubs/libcuda.so" >/dev/null && ! compgen -G "$root/targets/*/lib/stubs/libcuda.so" >/dev/null; then
	flags+=(-DGGML_CUDA_NO_VMM=ON)
fi
cmake -S "$src" -B build/cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$root" \
	-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-80;90}" -DGGML_CCACHE=OFF "${flags[@]}" >/dev/null
cmake --build build/cuda --target ggml-cuda -j"$(nproc)"
mkdir -p lib/ollama
cp build/cuda/lib/ollama/libggml-cuda.so lib/ollama/
echo "built lib/ollama/libggml-cuda.so with $nvcc; run with --gpu-layers -1 (sampling.gpu_layers = -1)" >&2
