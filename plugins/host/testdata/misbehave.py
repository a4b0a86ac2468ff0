#!/usr/bin/env python3
"""Python test plugin: scores len(text), or misbehaves as the `mode` arg says."""
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from rlif_plugin import Arg, serve  # noqa: E402

MODE = os.environ.get("MISBEHAVE_START", "")


def score(group, args):
    mode = args["mode"]
    if mode == "crash":
        sys.stderr.write("misbehave: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)
    if mode == "hang":
        time.sleep(3600)
    if mode == "error":
        raise RuntimeError("the python reward refuses this batch")
    out = [float(len(c.text)) for c in group.completions]
    if mode == "short":
        out = out[:-1]
    if mode == "nan":
        out[0] = math.nan
    if mode == "sc":
        out = [c.self_certainty_mean for c in group.completions]
    if mode == "print":
        print("a stray print after the handshake")
    return out


def score_batch(groups, args):
    # One score per completion: its group's index in the batch, plus its own index / 10.
    return [[gi + j / 10 for j, _ in enumerate(g.completions)] for gi, g in enumerate(groups)]


if __name__ == "__main__":
    if MODE == "print-first":
        print("debug output before serve")
    if MODE == "batch":
        serve(score_batch, name="misbehave", batch=True)
    serve(score, name="misbehave", args=[Arg("mode", default="ok")], mtls=MODE != "no-mtls")
