#!/usr/bin/python3
"""Ranks operators of a restyle-bench --profile trace by self time.

    bench/profile_summary.py TRACE.json [--top N]

The trace (Chrome format, from LibTorch's profiler) nests events: an aten::conv2d
contains aten::convolution, which contains aten::mkldnn_convolution. Self time
is an event's duration minus that of the events directly inside it, per thread.
Prints one table: operator, calls, self ms, share of the total.
"""
import argparse
import collections
import json


def main():
    p = argparse.ArgumentParser()
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    with open(args.trace) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[e.get("tid", 0)].append(e)
    self_us = collections.Counter()
    calls = collections.Counter()
    for evs in by_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []  # [event, time of children]
        for e in evs:
            while stack and e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]:
                done, child = stack.pop()
                self_us[done["name"]] += done["dur"] - child
            if stack:
                stack[-1][1] += e["dur"]
            stack.append([e, 0.0])
            calls[e["name"]] += 1
        while stack:
            done, child = stack.pop()
            self_us[done["name"]] += done["dur"] - child
    total = sum(self_us.values()) or 1.0
    print("%-44s %8s %11s %7s" % ("operator", "calls", "self ms", "share"))
    for name, us in self_us.most_common(args.top):
        print("%-44s %8d %11.1f %6.1f%%" % (name[:44], calls[name], us / 1000, 100 * us / total))
    print("%-44s %8s %11.1f" % ("total", "", total / 1000))


if __name__ == "__main__":
    main()
