#!/usr/bin/python3
"""Runs restyle-bench and the Python baseline in one shell session and prints ratios.

    bench/compare.py --bench build/worker/engine/bench/restyle-bench [--filter S] [--threads N]

Each restyle-bench line names its baseline workload ("baseline", else its own
name); the baseline script prints the same workloads with a "ref/" prefix.
Output: every raw JSON line (engine and baseline), then one JSON line per
engine benchmark with a baseline: {"name", "median_ms", "ref_median_ms",
"ratio"} (ratio = engine / baseline; below 1 is faster), and a table on stderr.
"""
import argparse
import json
import os
import subprocess
import sys


def run_lines(cmd):
    out = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True).stdout
    lines = []
    for raw in out.splitlines():
        raw = raw.strip()
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bench", default="build/worker/engine/bench/restyle-bench")
    p.add_argument("--filter", default="")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    engine = run_lines([args.bench, "--filter", args.filter, "--threads", str(args.threads)])
    # The baseline of an engine benchmark: its "baseline" field, else the
    # longest baseline name that is a prefix of its own name.
    script = os.path.join(here, "reference_baseline.py")
    known = run_lines([sys.executable, script, "--list"])
    known_names = [k["name"] for k in known]

    def baseline_of(e):
        if e.get("baseline"):
            return e["baseline"]
        prefixes = [n for n in known_names if e["name"] == n or e["name"].startswith(n + "/")]
        return max(prefixes, key=len) if prefixes else None

    wanted = sorted({b for b in map(baseline_of, engine) if b})
    ref = {}
    for name in wanted:  # one process each, so peak memory is the workload's own
        for line in run_lines([sys.executable, script, "--names", name,
                               "--threads", str(args.threads)]):
            ref[line["name"][len("ref/"):]] = line
    for line in engine + list(ref.values()):
        print(json.dumps(line))
    sys.stderr.write("%-52s %12s %12s %7s\n" % ("benchmark", "engine ms", "baseline ms", "ratio"))
    for e in engine:
        name = baseline_of(e)
        b = ref.get(name) if name else None
        if not b:
            continue
        ratio = e["median_ms"] / b["median_ms"]
        print(json.dumps({"name": e["name"], "baseline": "ref/" + name,
                          "threads": e["threads"], "median_ms": e["median_ms"],
                          "ref_median_ms": b["median_ms"], "ratio": ratio}))
        sys.stderr.write("%-52s %12.1f %12.1f %7.3f\n" % (e["name"], e["median_ms"],
                                                          b["median_ms"], ratio))


if __name__ == "__main__":
    main()
