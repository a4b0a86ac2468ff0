#!/usr/bin/env python3
"""Draws delta.svg, the §1 distribution of held-out changes (step 24 − step 0, points),
one row per arm, one dot per run (filled: p < 0.05), from runs.tsv beside it. Standard
library only: python3 docs/experiments/label-free/s1/plot.py"""
import csv
import os

here = os.path.dirname(os.path.abspath(__file__))
rows = list(csv.DictReader(open(os.path.join(here, "runs.tsv")), delimiter="\t"))
arms = list(dict.fromkeys(r["arm"] for r in rows))
deltas = [100 * (float(r["step24"]) - float(r["base"])) for r in rows]
lo, hi = min(-6, min(deltas) - 1), max(12, max(deltas) + 1)
W, left, right, top, rowh = 640, 170, 20, 30, 60
H = top + rowh * len(arms) + 40
x = lambda d: left + (d - lo) / (hi - lo) * (W - left - right)
colors = {"bf16": "#1f77b4", "f32": "#d62728"}
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<text x="{left}" y="16">held-out change after 24 steps, points (arith-test, 300 items); filled: p &lt; 0.05</text>']
for t in range(int(lo) // 2 * 2, int(hi) + 1, 2):
    out.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{H - 40}" stroke="{"#000" if t == 0 else "#ddd"}"/>')
    out.append(f'<text x="{x(t):.1f}" y="{H - 24}" text-anchor="middle">{t:+d}</text>' if t else f'<text x="{x(t):.1f}" y="{H - 24}" text-anchor="middle">0</text>')
for i, arm in enumerate(arms):
    y0 = top + rowh * i + rowh / 2
    out.append(f'<text x="{left - 8}" y="{y0 + 4:.1f}" text-anchor="end">{arm}</text>')
    runs = [(d, r) for d, r in zip(deltas, rows) if r["arm"] == arm]
    for j, (d, r) in enumerate(sorted(runs, key=lambda t: t[0])):
        y = y0 + (j % 3 - 1) * 9  # spread dots that would overlap
        fill = colors.get(r["precision"], "#777") if float(r["p"]) < 0.05 else "white"
        out.append(f'<circle cx="{x(d):.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{colors.get(r["precision"], "#777")}" stroke-width="2">'
                   f'<title>{arm} seed {r["seed"]}, {r["machine"]} ({r["precision"]}): {d:+.1f}, p = {r["p"]}</title></circle>')
out.append(f'<text x="{left}" y="{H - 6}" fill="{colors["bf16"]}">● bf16 learner</text><text x="{left + 110}" y="{H - 6}" fill="{colors["f32"]}">● f32 learner</text>')
out.append("</svg>")
open(os.path.join(here, "delta.svg"), "w").write("\n".join(out) + "\n")
