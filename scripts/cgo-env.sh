#!/usr/bin/env bash
# Prints export lines for the cgo flags rlif needs:
#  - llama.cpp and ggml headers, from the ollama module (pinned at v0.9.6 in go.mod);
#  - libtorch: Debian's by default (headers in /usr/include), or LIBTORCH=/path/to/libtorch
#    (an unpacked libtorch distribution, e.g. a CUDA build) for another one.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(go list -m -f '{{.Dir}}' github.com/ollama/ollama)
if [ -z "$dir" ] || [ ! -f "$dir/llama/llama.cpp/include/llama.h" ]; then
  echo "cgo-env: llama.h not found in the ollama module; run 'go mod download' first" >&2
  exit 1
fi
cpp="-I$dir/llama/llama.cpp/include -I$dir/ml/backend/ggml/ggml/include"
ld=""
if [ -n "${LIBTORCH:-}" ]; then
  cpp="$cpp -I$LIBTORCH/include -I$LIBTORCH/include/torch/csrc/api/include"
  ld="-L$LIBTORCH/lib -Wl,-rpath,$LIBTORCH/lib"
  # A CUDA libtorch registers its kernels from libtorch_cuda; rlif never names a symbol of
  # it, so the linker would drop it without --no-as-needed.
  if [ -f "$LIBTORCH/lib/libtorch_cuda.so" ]; then
    ld="$ld -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed"
    # The learner's process group gets its NCCL backend (ProcessGroupNCCL) only here.
    cpp="$cpp -DUSE_C10D_NCCL -DRLIF_NCCL"
    # The PyPI torch wheel (LIBTORCH=.../site-packages/torch) carries no CUDA or NCCL of
    # its own: they are the nvidia-* wheels beside it (nvidia/cu13, nvidia/nccl, ...), which
    # `import torch` preloads and a C++ program must name. Their headers (ProcessGroupNCCL
    # includes nccl.h and the CUDA runtime's) and their libraries, as run paths.
    for d in "$LIBTORCH"/../nvidia/*/; do
      case $d in */cu[0-9]*/ | */nccl/) [ -d "$d/include" ] && cpp="$cpp -I$(cd "$d/include" && pwd)" ;; esac
      [ -d "$d/lib" ] && ld="$ld -Wl,-rpath,$(cd "$d/lib" && pwd)"
    done
  fi
else
  cpp="$cpp -I/usr/include/torch/csrc/api/include"
fi
# tcmalloc (gperftools' libtcmalloc_minimal) replaces glibc's malloc in the whole binary.
# libtorch allocates and frees every activation tensor of every step; glibc returns those
# large blocks to the kernel and takes them back, so about a quarter of a bf16 learn phase
# went to page faults, and tcmalloc keeps them for reuse (README, "Speed"). rlif names no
# symbol of it, hence --no-as-needed. RLIF_MALLOC=system keeps glibc's malloc.
if [ "${RLIF_MALLOC:-tcmalloc}" != system ]; then
  ld="$ld -Wl,--no-as-needed -l:libtcmalloc_minimal.so.4 -Wl,--as-needed"
fi
# llama.cpp's kernels are compiled by cgo; without -march=native ggml cannot use the CPU's
# vector units (AVX2/AVX-512) and decodes ~11x slower here. RLIF_PORTABLE=1 builds a
# binary that runs on any x86-64 instead.
arch="-march=native"
[ -n "${RLIF_PORTABLE:-}" ] && arch=""
# On a CPU with AMX (Intel Sapphire Rapids and later), -march=native defines __AMX_INT8__,
# and ggml-cpu.cpp then registers ggml's AMX buffer type, whose sources (ggml-cpu/amx/) the
# ollama module's cgo package does not compile: the link fails on an undefined
# ggml_backend_amx_buffer_type(). So it stays off: compiled from the module in an experiment,
# those kernels (quantized and f16 weights) computed wrong log-probs on the stories test
# model (README, "Speed"). libtorch's oneDNN still finds AMX at run time on its own.
if [ -n "$arch" ] && [ "$(uname -m)" = x86_64 ]; then
  arch="$arch -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
echo "export CGO_CFLAGS='-O3 $arch'"
echo "export CGO_CXXFLAGS='-O3 $arch'"
echo "export CGO_CPPFLAGS='$cpp ${CGO_CPPFLAGS_EXTRA:-}'"
echo "export CGO_LDFLAGS='$ld ${CGO_LDFLAGS_EXTRA:-}'"
