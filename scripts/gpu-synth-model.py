#!/usr/bin/env python3
"""A Llama-architecture model of a chosen size with random weights, as a Hugging Face directory.

scripts/gpu-check.sh times rlif and TRL at sizes no model on the GPU machine has (it has no
network, and a real 1.5B checkpoint does not fit in what travels there). Speed does not depend
on the weights, so this writes the shapes of Qwen2.5-1.5B (by default) with the tokenizer of
a small real model (TOKENIZER_DIR: its tokenizer.json, tokenizer_config.json and config.json,
as `rlif export` writes them). Random weights rarely emit the end-of-sequence token, so every
completion runs to max_tokens: the timed work is the most the settings allow.

  gpu-synth-model.py TOKENIZER_DIR OUT_DIR [--hidden 1536 --layers 28 --heads 12 --kv-heads 2
                                            --intermediate 8960 --seed 0]

Needs torch alone (the GPU machine's PyTorch); writes model.safetensors itself (the
format is an 8-byte header length, a JSON header, then the raw tensors), so the safetensors
package is not needed.
"""

import argparse
import ctypes
import json
import shutil
import struct
import sys
from pathlib import Path

import torch


def tensors(cfg):
    """(name, shape) of a LlamaForCausalLM with tied embeddings, in the order written."""
    h, inter = cfg["hidden_size"], cfg["intermediate_size"]
    hd = cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    yield "model.embed_tokens.weight", (cfg["vocab_size"], h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "input_layernorm.weight", (h,)
        yield p + "self_attn.q_proj.weight", (q, h)
        yield p + "self_attn.k_proj.weight", (kv, h)
        yield p + "self_attn.v_proj.weight", (kv, h)
        yield p + "self_attn.o_proj.weight", (h, q)
        yield p + "post_attention_layernorm.weight", (h,)
        yield p + "mlp.gate_proj.weight", (inter, h)
        yield p + "mlp.up_proj.weight", (inter, h)
        yield p + "mlp.down_proj.weight", (h, inter)
    yield "model.norm.weight", (h,)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizer_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=8960)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.hidden % a.heads or a.heads % a.kv_heads:
        sys.exit(f"gpu-synth-model: --hidden {a.hidden} must divide into --heads {a.heads}, and those into --kv-heads {a.kv_heads}")
    src = a.tokenizer_dir
    if not (src / "tokenizer.json").exists() or not (src / "config.json").exists():
        sys.exit(f"gpu-synth-model: {src} has no tokenizer.json and config.json (rlif export --hf DIR MODEL.gguf writes them)")
    if a.out_dir.exists() and any(a.out_dir.iterdir()):
        sys.exit(f"gpu-synth-model: {a.out_dir} is not empty")
    a.out_dir.mkdir(parents=True, exist_ok=True)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        if (src / f).exists():
            shutil.copy(src / f, a.out_dir / f)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
               num_key_value_heads=a.kv_heads, head_dim=a.hidden // a.heads, intermediate_size=a.intermediate,
               tie_word_embeddings=True, torch_dtype="bfloat16")
    (a.out_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    header, offset = {}, 0
    for name, shape in tensors(cfg):
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    gen = torch.Generator().manual_seed(a.seed)
    std = cfg.get("initializer_range", 0.02)
    tmp = a.out_dir / "model.safetensors.tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, shape in tensors(cfg):
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, generator=gen) * std).to(torch.bfloat16)
            t = t.contiguous()
            f.write(ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()))
    tmp.rename(a.out_dir / "model.safetensors")
    params = offset // 2
    print(f"gpu-synth-model: {a.out_dir}: {params / 1e9:.2f}B parameters ({a.layers} layers, hidden {a.hidden}), random bf16 weights")


if __name__ == "__main__":
    main()
