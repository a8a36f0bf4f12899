#!/usr/bin/python3
"""Runs restyle-bench and the Python baseline in one shell session and prints ratios.

    bench/compare.py --bench build/worker/engine/bench/restyle-bench [--filter S] [--threads N]
                     [--rounds R]

Each restyle-bench line names its baseline workload ("baseline", else its own
name); the baseline script prints the same workloads with a "ref/" prefix.
Output: every raw JSON line (engine and baseline), then one JSON line per
engine benchmark with a baseline: {"name", "median_ms", "ref_median_ms",
"ratio"} (ratio = engine / baseline; below 1 is faster), and a table on stderr.

--rounds R (default 1) runs engine and baseline R times, alternating, and
reports for each side the median over rounds of its per-run median (and the
spread of the per-round ratios), which keeps a noisy neighbour on a shared
machine from deciding a ratio.
"""
import argparse
import collections
import json
import os
import statistics
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
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "reference_baseline.py")
    known = run_lines([sys.executable, script, "--list"])
    known_names = [k["name"] for k in known]

    # The baseline of an engine benchmark: its "baseline" field, else the
    # longest baseline name that is a prefix of its own name.
    def baseline_of(e):
        if e.get("baseline"):
            return e["baseline"]
        prefixes = [n for n in known_names if e["name"] == n or e["name"].startswith(n + "/")]
        return max(prefixes, key=len) if prefixes else None

    engine_runs = collections.defaultdict(list)  # name -> JSON line per round
    ref_runs = collections.defaultdict(list)
    for _ in range(args.rounds):
        engine = run_lines([args.bench, "--filter", args.filter, "--threads", str(args.threads)])
        for e in engine:
            engine_runs[e["name"]].append(e)
        wanted = sorted({b for b in map(baseline_of, engine) if b})
        for name in wanted:  # one process each, so peak memory is the workload's own
            for line in run_lines([sys.executable, script, "--names", name,
                                   "--threads", str(args.threads)]):
                ref_runs[line["name"][len("ref/"):]].append(line)
    for lines in list(engine_runs.values()) + list(ref_runs.values()):
        for line in lines:
            print(json.dumps(line))
    sys.stderr.write("%-52s %12s %12s %7s %15s\n" % ("benchmark", "engine ms", "baseline ms",
                                                      "ratio", "round ratios"))
    for name_e, lines in sorted(engine_runs.items()):
        name = baseline_of(lines[0])
        refs = ref_runs.get(name) if name else None
        if not refs:
            continue
        e_ms = statistics.median(l["median_ms"] for l in lines)
        b_ms = statistics.median(l["median_ms"] for l in refs)
        ratio = e_ms / b_ms
        rounds = [a["median_ms"] / b["median_ms"] for a, b in zip(lines, refs)]
        print(json.dumps({"name": name_e, "baseline": "ref/" + name,
                          "threads": lines[0]["threads"], "rounds": len(rounds),
                          "median_ms": e_ms, "ref_median_ms": b_ms, "ratio": ratio,
                          "round_ratios": rounds,
                          "peak_rss_bytes": max(l["peak_rss_bytes"] for l in lines),
                          "ref_peak_rss_bytes": max(l["peak_rss_bytes"] for l in refs)}))
        spread = "%.2f-%.2f" % (min(rounds), max(rounds))
        sys.stderr.write("%-52s %12.1f %12.1f %7.3f %15s\n" % (name_e, e_ms, b_ms, ratio, spread))

if __name__ == "__main__":
    main()
