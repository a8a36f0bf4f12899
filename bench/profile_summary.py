#!/usr/bin/python3
"""Ranks operators of a restyle-bench --profile trace by self time.

    bench/profile_summary.py TRACE.json [--top N]

The trace (Chrome format, from LibTorch's profiler) nests events: an aten::conv2d
contains aten::convolution, which contains aten::mkldnn_convolution. Self time
is an event's duration minus that of the events directly inside it, per thread.
Prints one table: operator, calls, self ms, share of the total.

A CUDA trace (restyle-bench --device cuda --profile: LibTorch's Kineto
profiler, CPU and CUDA activities) also holds the GPU kernels. Then two more
tables rank GPU time, which is what a CUDA step's wall time follows: by the
innermost operator that launched each kernel (matched through the launch's
correlation id), and by kernel name.
"""
import argparse
import bisect
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
    gpu_cats = ("kernel", "gpu_memcpy", "gpu_memset")
    launch_cats = ("cuda_runtime", "cuda_driver")
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e and e.get("cat") not in gpu_cats + launch_cats:
            by_thread[(e.get("pid", 0), e.get("tid", 0))].append(e)
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
    gpu_summary(events, by_thread, gpu_cats, launch_cats, args.top)


def gpu_summary(events, by_thread, gpu_cats, launch_cats, top):
    """GPU time by launching operator and by kernel (CUDA traces only)."""
    kernels = [e for e in events if e.get("ph") == "X" and e.get("cat") in gpu_cats]
    if not kernels:
        return
    launches = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") in launch_cats:
            corr = (e.get("args") or {}).get("correlation")
            if corr is not None:
                launches[corr] = e
    starts = {key: [e["ts"] for e in evs] for key, evs in by_thread.items()}

    def innermost_op(launch):
        # by_thread lists are sorted by (start, -duration): the last op that
        # starts before the launch and ends after it is the innermost one.
        key = (launch.get("pid", 0), launch.get("tid", 0))
        evs = by_thread.get(key, [])
        i = bisect.bisect_right(starts.get(key, []), launch["ts"])
        best = None
        for e in reversed(evs[max(0, i - 256):i]):
            if e["ts"] + e["dur"] >= launch["ts"] + launch.get("dur", 0):
                if best is None or e["dur"] < best["dur"]:
                    best = e
        return best["name"] if best else "(no operator)"

    by_op, op_calls = collections.Counter(), collections.Counter()
    by_kernel, kernel_calls = collections.Counter(), collections.Counter()
    for k in kernels:
        launch = launches.get((k.get("args") or {}).get("correlation"))
        op = innermost_op(launch) if launch else "(unmatched)"
        by_op[op] += k["dur"]
        op_calls[op] += 1
        by_kernel[k["name"]] += k["dur"]
        kernel_calls[k["name"]] += 1
    busy = sum(by_op.values()) or 1.0
    span = (max(k["ts"] + k["dur"] for k in kernels) - min(k["ts"] for k in kernels)) or 1.0
    print()
    print("GPU: %d kernels, %.1f ms busy over a %.1f ms span (%.0f%% busy)" % (
        len(kernels), busy / 1000, span / 1000, 100 * busy / span))
    print("%-44s %8s %11s %7s" % ("GPU time by launching operator", "kernels", "ms", "share"))
    for name, us in by_op.most_common(top):
        print("%-44s %8d %11.2f %6.1f%%" % (name[:44], op_calls[name], us / 1000, 100 * us / busy))
    print("%-72s %6s %9s %7s" % ("GPU time by kernel", "calls", "ms", "share"))
    for name, us in by_kernel.most_common(top):
        print("%-72s %6d %9.2f %6.1f%%" % (name[:72], kernel_calls[name], us / 1000, 100 * us / busy))


if __name__ == "__main__":
    main()
