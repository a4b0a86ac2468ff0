# rlif build, set-up and test targets. Every target installs what it needs, idempotently,
# on a fresh Debian machine (run as root, or with sudo available).
SHELL := /bin/bash
GO    ?= go

MODEL        := models/SmolLM2-135M-Instruct.Q4_1.gguf
APT_PACKAGES := libtorch-dev libgloo-dev libopenblas0-pthread libtcmalloc-minimal4 protobuf-compiler chromium
BIN          := bin/rlif

# cgo needs the llama.cpp and ggml headers that ship inside the ollama module (v0.9.6)
# and, for the learner, libtorch. scripts/cgo-env.sh prints the flags; LIBTORCH=/path
# points the learner at another libtorch (a CUDA build, say) instead of Debian's.
CGO_ENV = eval "$$(scripts/cgo-env.sh)" &&

.PHONY: all deps apt gomod model build test vet demo bench env clean cuda cuda-check gpu-bundle

all: build

deps: apt gomod model
	@scripts/py-deps.sh

apt:
	@scripts/apt-deps.sh $(APT_PACKAGES)

gomod:
	@$(GO) mod download

model: $(MODEL)

$(MODEL):
	@scripts/fetch-model.sh $(MODEL)

build: apt gomod
	$(CGO_ENV) $(GO) build -o $(BIN) ./cmd/rlif

# The README's test command. Go's own test cache makes re-runs fast.
test: deps
	$(CGO_ENV) $(GO) vet ./...
	$(CGO_ENV) $(GO) test -timeout 60m ./...

# The README's main job: Intuitor on the embedded default (SmolLM2, built-in prompts).
demo: deps build
	$(BIN) train --out runs/default --overwrite

# The sampler's benchmarks (README, "Speed"): decode, group sampling and reload, then the
# per-token draw. BenchmarkWaveSize is left out (about 10 minutes); run it by name.
bench: deps
	$(CGO_ENV) $(GO) test -run '^$$' -bench 'Decode|Reload' -benchtime 2x ./policy/sampler/
	$(CGO_ENV) $(GO) test -run '^$$' -bench 'Draw' ./policy/sampler/

# Prints the environment cgo needs, for running go commands by hand: eval "$(make -s env)"
env:
	@scripts/cgo-env.sh

# Builds ggml's CUDA backend from the vendored sources (needs nvcc); see README "GPU".
cuda: gomod
	@scripts/build-cuda.sh

# The GPU paths compiled from PyPI packages alone and checked on this machine, GPU or not
# (scripts/cuda-check.sh; README, "GPU"). Not part of test: it downloads about 5 GB once.
cuda-check: apt gomod model
	@scripts/cuda-check.sh

# What scripts/gpu-check.sh needs on a GPU machine without Go or network (after cuda-check).
gpu-bundle: build
	@scripts/gpu-bundle.sh

clean:
	rm -rf bin
