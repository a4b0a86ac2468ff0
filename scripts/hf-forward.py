#!/usr/bin/env python3
"""An independent check of `rlif export --hf`: a llama forward pass written from the
transformers conventions (rotate_half RoPE, repeat_kv GQA, [out, in] weights) in numpy,
over an exported directory. Prints log p(token_i | tokens_<i) for i >= 1, to compare with
the sampler's Score on the source GGUF (f32 weights, f32 KV cache).

  pip install numpy safetensors
  scripts/hf-forward.py HF_DIR '[1, 403, 261, 300]'
"""
import json, sys
import numpy as np
from safetensors.numpy import load_file
d = sys.argv[1]; toks = json.loads(sys.argv[2])
c = json.load(open(d + "/config.json")); W = load_file(d + "/model.safetensors")
H, KV, L = c["num_attention_heads"], c["num_key_value_heads"], c["num_hidden_layers"]
hd = c.get("head_dim") or c["hidden_size"] // H; eps = c["rms_norm_eps"]; theta = c["rope_theta"]
def rms(x, w): return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w
T = len(toks); x = W["model.embed_tokens.weight"][toks].astype(np.float64)
inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd); ang = np.arange(T)[:, None] * inv[None]
cos = np.cos(np.concatenate([ang, ang], -1)); sin = np.sin(np.concatenate([ang, ang], -1))
def rope(q):  # q: (T, n, hd)
    h = hd // 2; rot = np.concatenate([-q[..., h:], q[..., :h]], -1)
    return q * cos[:, None] + rot * sin[:, None]
mask = np.triu(np.full((T, T), -np.inf), 1)
for l in range(L):
    p = f"model.layers.{l}."
    h = rms(x, W[p + "input_layernorm.weight"])
    q = rope((h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, H, hd))
    k = rope((h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, KV, hd))
    v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, KV, hd)
    k = np.repeat(k, H // KV, axis=1); v = np.repeat(v, H // KV, axis=1)
    s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
    a = np.exp(s - s.max(-1, keepdims=True)); a /= a.sum(-1, keepdims=True)
    o = np.einsum("hts,shd->thd", a, v).reshape(T, H * hd)
    x = x + o @ W[p + "self_attn.o_proj.weight"].T
    h = rms(x, W[p + "post_attention_layernorm.weight"])
    g = h @ W[p + "mlp.gate_proj.weight"].T
    x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
x = rms(x, W["model.norm.weight"])
head = W["lm_head.weight"] if "lm_head.weight" in W else W["model.embed_tokens.weight"]
z = x @ head.T; lp = z - z.max(-1, keepdims=True); lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
print(json.dumps([float(lp[i - 1, toks[i]]) for i in range(1, T)]))
