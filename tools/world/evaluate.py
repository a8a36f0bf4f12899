#!/usr/bin/env python3
"""IPL against NADA in the toy world, judged (docs/world.md).

For each target style, runs `restyle-train --world --method both` (the same
seeds for both methods), reads the judge's numbers from each job's
quality.json, draws the same seeds from the source and from both adapted
generators with restyle-generate, and writes:
  OUT/table.md, OUT/table.json   the judge's numbers per target and method
  OUT/<target>.png               rows: source, IPL, NADA (same seeds)

Usage: /usr/bin/python3 tools/world/evaluate.py --build build --out world-eval
       [--targets sketch,neon] [--iterations 100] [--seeds 3] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

TARGETS = ["sketch", "pixel art", "neon", "watercolor"]
METRICS = [("judged target style", "style_rate", "%"), ("content kept", "content_kept", "%"),
           ("content entropy (bits)", "content_entropy_bits", ""),
           ("judge feature diversity", "feature_diversity", "")]


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def judge_of(job_dir):
    with open(os.path.join(job_dir, "quality.json")) as f:
        q = json.load(f)
    if "judge" not in q:
        raise SystemExit(f"{job_dir}/quality.json has no judge numbers")
    return q["judge"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", default="build")
    p.add_argument("--out", required=True)
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--iterations", type=int, default=0, help="stage 1 and 2 steps (0: --world's)")
    p.add_argument("--seeds", type=int, default=1, help="job seeds per target (rounds)")
    p.add_argument("--samples", type=int, default=128, help="judged images per job")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--columns", type=int, default=12)
    args = p.parse_args()
    train = os.path.join(args.build, "worker/engine/adapt_job/restyle-train")
    generate = os.path.join(args.build, "worker/engine/adapt_job/restyle-generate")
    os.makedirs(args.out, exist_ok=True)
    rows = {}
    for target in args.targets.split(","):
        slug = target.replace(" ", "-")
        per_seed = []
        for seed in range(args.seeds):
            out = os.path.join(args.out, slug, f"seed{seed}")
            cmd = [train, "--world", "--target", target, "--method", "both", "--out", out,
                   "--seed", str(seed * 1000), "--threads", str(args.threads),
                   "--quality-samples", str(args.samples)]
            if args.iterations:
                cmd += ["--stage1-iters", str(args.iterations), "--stage2-iters", str(args.iterations)]
            run(cmd)
            per_seed.append({m: judge_of(os.path.join(out, m)) for m in ("ipl", "nada")})
        rows[target] = per_seed
        # Pictures of the first seed's jobs: source, IPL, NADA on the same seeds.
        first = os.path.join(args.out, slug, "seed0")
        seeds = f"0-{args.columns - 1}"
        images = []
        for m in ("ipl", "nada"):
            run([generate, "--job", os.path.join(first, m), "--seeds", seeds, "--out",
                 os.path.join(first, m, "seeds"), "--with-source", "--threads", str(args.threads)])
        for name, m in (("source", "ipl"), ("ipl", "ipl"), ("nada", "nada")):
            suffix = "_source" if name == "source" else ""
            images += [world.read_png(os.path.join(first, m, "seeds", f"seed{s:04d}{suffix}.png"))
                       for s in range(args.columns)]
        world.write_png(os.path.join(args.out, f"{slug}.png"), world.grid(images, args.columns, scale=3))

    def mean(target, method, side, key):
        vals = [r[method][side][key] if side else r[method][key] for r in rows[target]]
        return float(np.mean(vals)), float(np.std(vals))

    table = {}
    lines = ["| target | measure | source | IPL | NADA |", "|---|---|---:|---:|---:|"]
    for target in rows:
        table[target] = {}
        for label, key, unit in METRICS:
            if key == "content_kept":
                src = None
                ipl, nada = mean(target, "ipl", None, key), mean(target, "nada", None, key)
            else:
                src = mean(target, "ipl", "source", key)
                ipl, nada = mean(target, "ipl", "adapted", key), mean(target, "nada", "adapted", key)
            table[target][key] = {"source": src, "ipl": ipl, "nada": nada}

            def fmt(v):
                if v is None:
                    return ""
                m, s = v
                text = f"{100 * m:.0f}%" if unit == "%" else f"{m:.3f}"
                if len(rows[target]) > 1:
                    text += f" ± {100 * s:.0f}" if unit == "%" else f" ± {s:.3f}"
                return text
            lines.append(f"| {target} | {label} | {fmt(src)} | {fmt(ipl)} | {fmt(nada)} |")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "table.json"), "w") as f:
        json.dump({"settings": vars(args), "per_seed": rows, "mean_std": table}, f, indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
