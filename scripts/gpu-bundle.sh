#!/usr/bin/env bash
# make gpu-bundle: build/gpu-bundle.tar.xz, what scripts/gpu-check.sh needs on a GPU machine
# that has PyTorch but no Go toolchain and no network, within the 64 MiB that may travel
# there beside the working tree:
#   bin/rlif-cuda             rlif against the CUDA libtorch (make cuda-check), stripped;
#   lib/ollama/libggml-cuda.so ggml's CUDA backend (make cuda);
#   lib/                      the libraries rlif-cuda links from this machine's system that
#                             a PyTorch image may lack (tcmalloc and the like); libtorch,
#                             NCCL and the CUDA runtime come from the GPU machine's PyTorch;
#   models/stories260K.gguf   the test model;
#   tokenizer/                SmolLM2-135M's tokenizer and config (rlif export, weights left
#                             out), for the models of real shapes gpu-check.sh writes there.
set -euo pipefail
cd "$(dirname "$0")/.."
for f in bin/rlif-cuda lib/ollama/libggml-cuda.so; do
	[ -f "$f" ] || { echo "gpu-bundle: no $f: run 'make cuda-check' first" >&2; exit 1; }
done
stories=${STORIES_MODEL:-../shared/models/stories260K.gguf}
smol=${SMOL_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/ollama" "$stage/models"
strip -o "$stage/bin/rlif-cuda" bin/rlif-cuda
strip -o "$stage/lib/ollama/libggml-cuda.so" lib/ollama/libggml-cuda.so
# System libraries outside glibc, the compiler runtime and what PyTorch ships.
ldd bin/rlif-cuda | awk '$3 ~ /^\/(usr\/)?lib/ {print $3}' | while read -r lib; do
	case "$(basename "$lib")" in
	# glibc's own libraries must match the machine's loader; the C++ runtime is in any
	# image that runs PyTorch.
	libc.so* | libm.so* | libmvec.so* | libdl.so* | librt.so* | libpthread.so* | libutil.so* | libresolv.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
	*) cp -L "$lib" "$stage/lib/" ;;
	esac
done
cp "$stories" "$stage/models/stories260K.gguf"
bin/rlif export --hf "$stage/tokenizer" "$smol" >/dev/null
rm "$stage/tokenizer/model.safetensors"
# xz: ggml's CUDA kernels for two GPU generations are about 210 MB, 47 MB compressed.
XZ_OPT=-6 tar -cJf build/gpu-bundle.tar.xz -C "$stage" .
size=$(stat -c %s build/gpu-bundle.tar.xz)
echo "gpu-bundle: build/gpu-bundle.tar.xz, $((size / 1048576)) MiB: $(cd "$stage" && ls bin lib lib/ollama models | tr '\n' ' ')" >&2
if [ "$size" -gt $((64 * 1048576)) ]; then
	echo "gpu-bundle: over the 64 MiB a device call carries; build fewer CUDA architectures (CUDA_ARCHITECTURES=90 make cuda: H100 and H200 need only 90)" >&2
	exit 1
fi
