package sampler

/*
#cgo CFLAGS: -O3 -std=c11 -fopenmp-simd
#cgo linux,amd64 LDFLAGS: -lmvec
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include "llama.h"
#include "stats.h"
*/
import "C"

import (
	"os"

	// Linking: ollama's llama package compiles llama.cpp and ggml (CPU backend) through
	// cgo; importing it brings those objects into the binary. rlif's own calls go through
	// the llama.h binding in this package, and only here.
	ollamallama "github.com/ollama/ollama/llama"
)

// initBackend initializes ggml's backends once per process: the CPU backend is compiled
// in; GPU backends (libggml-cuda.so built by `make cuda`) are loaded from
// $OLLAMA_LIBRARY_PATH. llama.cpp's logging goes to stderr only with RLIF_LLAMA_LOG=1.
func initBackend() {
	ollamallama.BackendInit()
	verbose := 0
	if os.Getenv("RLIF_LLAMA_LOG") != "" {
		verbose = 1
	}
	C.rlif_log_install(C.int(verbose))
}
