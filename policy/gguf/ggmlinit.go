package gguf

/*
#include "ggml.h"

// ggml fills its fp16 → fp32 lookup table (used by every dequantization routine) in
// the first ggml_init; before that the table is zeros and so is every dequantized weight.
static void rlif_ggml_init(void) {
	struct ggml_init_params p = {0, NULL, true};
	struct ggml_context* ctx = ggml_init(p);
	if (ctx) ggml_free(ctx);
}
*/
import "C"

import "sync"

var ggmlInit sync.Once

// initGGML makes ggml's conversion tables ready; cheap after the first call.
func initGGML() { ggmlInit.Do(func() { C.rlif_ggml_init() }) }
