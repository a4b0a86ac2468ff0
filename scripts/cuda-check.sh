#!/usr/bin/env bash
# make cuda-check: rlif's GPU paths compiled from registry packages alone, on any x86-64
# Debian machine (no GPU needed), and checked there:
#  1. nvcc, CUDA 13.0 and a CUDA libtorch with NCCL from PyPI (scripts/cuda-wheels.sh);
#  2. ggml's CUDA backend, lib/ollama/libggml-cuda.so (scripts/build-cuda.sh);
#  3. bin/rlif-cuda: rlif against the CUDA libtorch, with ProcessGroupNCCL compiled in;
#  4. that binary run here: it links the CUDA libraries, and without a GPU it learns and
#     samples on the CPU with a one-line notice each (rlif check --device cuda --gpu-layers -1);
#  5. the CPU test suite compiled against the CUDA libtorch.
# Not part of `make test`: it downloads about 5 GB once and compiles ggml's CUDA kernels.
# Each step's time goes to build/cuda-check.times.
set -euo pipefail
cd "$(dirname "$0")/.."
times=build/cuda-check.times
mkdir -p build
: >"$times"
step() { # name command...
	local name=$1 t0
	shift
	t0=$(date +%s)
	echo "cuda-check: $name" >&2
	"$@"
	echo "$name $(($(date +%s) - t0)) s" >>"$times"
}
env=$(scripts/cuda-wheels.sh)
step "pip wheels" true
CUDA_ROOT=$(sed -n 's/^CUDA_ROOT=//p' <<<"$env")
LIBTORCH=$(sed -n 's/^LIBTORCH=//p' <<<"$env")
export LIBTORCH
scripts/apt-deps.sh cmake
step "libggml-cuda.so (CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-80;90})" env CUDACXX="$CUDA_ROOT/bin/nvcc" scripts/build-cuda.sh
build() { eval "$(scripts/cgo-env.sh)" && go build -o bin/rlif-cuda ./cmd/rlif; }
step "bin/rlif-cuda" build
# (ldd's output read whole: grep -q in a pipe under pipefail fails with ldd's SIGPIPE)
linked=$(ldd bin/rlif-cuda)
for lib in libtorch_cuda libc10_cuda libnccl libcudart; do
	grep -q "$lib" <<<"$linked" || { echo "cuda-check: bin/rlif-cuda does not link $lib" >&2; exit 1; }
done
model=${CHECK_MODEL:-../shared/models/stories260K.gguf}
out=$(bin/rlif-cuda check --model "$model" --device cuda --gpu-layers -1 --threads 1 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" >&2
if [ "$(nvidia-smi -L 2>/dev/null | wc -l)" = 0 ]; then
	grep -q "learning on the CPU" <<<"$out" && grep -q "sampling on the CPU" <<<"$out" ||
		{ echo "cuda-check: no GPU here, and rlif-cuda did not say it fell back to the CPU" >&2; exit 1; }
fi
suite() { eval "$(scripts/cgo-env.sh)" && go vet ./... && go test -timeout 60m ./...; }
step "test suite against the CUDA libtorch" suite
echo "cuda-check: passed" >&2
cat "$times" >&2
