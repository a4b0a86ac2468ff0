"""TRL GRPOTrainer on the work of examples/intuitor.toml; see trl_grpo.sh and README.md.

Prints one line per optimizer step (wall time and completion tokens/s over that time) and a
summary per precision. Every step samples the same 8 problems x G completions.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

REPO = Path(__file__).resolve().parent.parent
# The system prompt of examples/intuitor.toml (config.DefaultSystemPrompt, the paper's).
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def default_data():
    """The MATH train set: in the repository when it has moved there, else the shared copy."""
    for p in (REPO / "data" / "math_train.jsonl", REPO.parent / "shared" / "data" / "math_train.jsonl",
              Path("/work/shared/data/math_train.jsonl")):
        if p.exists():
            return p
    return REPO / "data" / "math_train.jsonl"


def hf_copy(gguf: Path, cache: Path) -> Path:
    """transformers loads SmolLM2 from the GGUF, but Trainer refuses a model loaded that way
    as "quantized": dequantize it once into a plain Hugging Face checkpoint and train that."""
    out = cache / (gguf.stem + "-hf")
    if (out / "config.json").exists():
        return out
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # save_pretrained refuses a model loaded from GGUF ("quantized with gguf"): copy its
    # dequantized weights into a plain model built from the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def boxed_reward(completions, **_):
    """A reward that costs nothing next to generation and training: 1 when the completion
    gives a \\boxed{} answer. The table times the trainer, not the reward."""
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(1.0 if "\\boxed{" in text else 0.0)
    return out


class StepTimer(TrainerCallback):
    """Times each optimizer step (generation, reference and policy passes, backward, update)
    and reads its completion length from the step's logged metrics."""

    def __init__(self, completions_per_step, label):
        self.n = completions_per_step
        self.label = label
        self.t0 = None
        self.rows = []

    def on_step_begin(self, args, state, control, **kw):
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "completions/mean_length" not in logs or self.t0 is None:
            return
        dt = time.perf_counter() - self.t0
        tokens = logs["completions/mean_length"] * self.n
        row = {"precision": self.label, "step": state.global_step, "seconds": dt,
               "completion_tokens": tokens, "completion_tokens_per_second": tokens / dt}
        self.rows.append(row)
        print(f"[{self.label}] step {state.global_step}: {dt:.1f} s, {tokens:.0f} completion tokens, "
              f"{tokens / dt:.1f} tok/s", flush=True)
        self.t0 = time.perf_counter()


def run(precision, model_dir, data, args):
    rows = [json.loads(line) for line in data.open() if line.strip()][: args.prompts]
    ds = Dataset.from_list([{"prompt": [{"role": "system", "content": SYSTEM},
                                        {"role": "user", "content": r["problem"]}]} for r in rows])
    g = args.group_size
    cfg = GRPOConfig(
        output_dir=str(args.out / precision),
        use_cpu=(args.device == "cpu"),
        bf16=(precision == "bf16"),  # GRPOConfig's default is True: f32 must say so
        seed=1,
        max_steps=args.steps,
        # One optimizer step per 8 prompts x G completions, in micro-batches of one group.
        per_device_train_batch_size=g,
        gradient_accumulation_steps=args.prompts,
        steps_per_generation=args.prompts,
        num_generations=g,
        max_completion_length=args.max_tokens,
        temperature=0.9,
        top_p=1.0,
        beta=0.005,
        num_iterations=1,
        epsilon=0.2,
        loss_type="grpo",
        learning_rate=3e-6,
        lr_scheduler_type="cosine",
        gradient_checkpointing=args.gradient_checkpointing == "on",
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    timer = StepTimer(args.prompts * g, precision)
    trainer = GRPOTrainer(model=model, reward_funcs=boxed_reward, args=cfg, train_dataset=ds,
                          processing_class=tok, callbacks=[timer])
    trainer.train()
    return timer.rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
                    help="a GGUF, or a Hugging Face model directory")
    ap.add_argument("--data", type=Path, default=None, help="MATH train JSONL (field: problem)")
    ap.add_argument("--precision", choices=["f32", "bf16", "both"], default="both")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=7)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".runs")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cuda: train and generate on the GPU (scripts/gpu-check.sh)")
    ap.add_argument("--gradient-checkpointing", choices=["on", "off"], default="on",
                    help="off is faster where memory allows (a GPU)")
    args = ap.parse_args()
    data = args.data or default_data()
    for p, what in ((args.model, "model"), (data, "data")):
        if not p.exists():
            sys.exit(f"trl_grpo: {what} {p} not found (make model fetches the default model; --data names the MATH JSONL)")
    torch.set_num_threads(args.threads)
    # A Hugging Face directory is trained as it is; a GGUF is dequantized into one first.
    model_dir = args.model if args.model.is_dir() else hf_copy(args.model.resolve(), Path(__file__).resolve().parent / ".cache")
    results = []
    for precision in (["f32", "bf16"] if args.precision == "both" else [args.precision]):
        results += run(precision, model_dir, data, args)
    print("\nprecision  step  seconds  completion tok/s")
    for r in results:
        print(f"{r['precision']:<9}  {r['step']:>4}  {r['seconds']:>7.1f}  {r['completion_tokens_per_second']:>16.1f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
