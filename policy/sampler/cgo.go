package sampler

/*
#cgo CXXFLAGS: -std=c++17
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	// Linking: ollama's llama package compiles llama.cpp and ggml (CPU backend) through
	// cgo; importing it brings those objects into the binary. rlif's own calls go through
	// the llama.h binding in this package.
	_ "github.com/ollama/ollama/llama"
)
