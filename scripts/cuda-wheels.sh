#!/usr/bin/env bash
# Installs the CUDA toolchain rlif's GPU paths build with, from PyPI alone, into .cuda/py
# (git ignores it; about 5 GB): nvcc, the CUDA headers and libraries of CUDA 13.0, and the
# PyPI torch wheel, a CUDA 13.0 libtorch with NCCL. Idempotent: nothing is downloaded when
# the pinned versions are there. Prints the two paths the builds need:
#   CUDA_ROOT=.../.cuda/py/nvidia/cu13   (bin/nvcc, include, lib)
#   LIBTORCH=.../.cuda/py/torch          (include, lib: scripts/cgo-env.sh reads it)
# The pins match the GPU machines this was checked for (PyTorch 2.11 with CUDA 13): a
# libggml-cuda.so and a bin/rlif built here load there against that machine's own CUDA and
# torch libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${TORCH_VERSION:-2.11.0}
CUDA_TOOLKIT_VERSION=${CUDA_TOOLKIT_VERSION:-13.0.2} # torch 2.11.0's own requirement
py=$PWD/.cuda/py
want="torch==$TORCH_VERSION cuda-toolkit[nvcc,cccl,crt,cudart,cublas,nvvm]==$CUDA_TOOLKIT_VERSION"
if [ "$(cat "$py/.rlif-pins" 2>/dev/null)" != "$want" ]; then
	echo "cuda-wheels: installing $want into $py (about 5 GB, once)" >&2
	rm -rf "$py"
	# shellcheck disable=SC2086
	python3 -m pip install --quiet --disable-pip-version-check --no-input --target "$py" $want >&2
	echo "$want" >"$py/.rlif-pins"
fi
cu=$py/nvidia/cu13
# The wheels ship each library under its soname only (libcudart.so.13); linkers and
# CMake's FindCUDAToolkit look for the unversioned name, as a toolkit install has it.
for so in "$cu"/lib/lib*.so.[0-9]*; do
	base=${so##*/}
	link=$cu/lib/${base%%.so.*}.so
	[ -e "$link" ] || ln -s "$base" "$link"
done
# nvcc's own profile (bin/nvcc.profile) links from lib64, a toolkit's name for lib.
[ -e "$cu/lib64" ] || ln -s lib "$cu/lib64"
echo "CUDA_ROOT=$cu"
echo "LIBTORCH=$py/torch"
