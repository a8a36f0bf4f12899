#!/usr/bin/python3
"""The Generate load benchmark (docs/benchmarks.md#serving), one command.

Starts restyled and one restyle-worker on loopback (temporary directories,
ports the OS picks), and in the same session measures:

  engine      restyle-bench's GenerateImages throughput at batch 1..B on
              the same generator and device (the baseline)
  idle        one client, one tiny image at a time: the latency the
              service adds over the engine's forward
  saturation  N clients, with dynamic batching (the worker's defaults) and
              without (--max-generation-batch 1): throughput, latency,
              the batches formed; rounds alternate the two
  lru         (demo model) four adapted generators, a cache that holds
              two: hit rate, load time, latency of hits and misses
  training    (demo model) one client while the worker trains a job: the
              latency generating between training steps adds over idle

Every measurement is a JSON line on stdout (and in --out); the last line is
the summary with the ratios the goals are stated in:
  service_vs_engine  saturated images/s over the engine's at the mean
                     batch the worker formed (goal >= 0.9)
  batching_speedup   saturated images/s batched over unbatched
  idle_overhead_ms   idle p50 latency minus the engine's batch-1 forward
  training_added_ms  p50 latency while training minus idle p50

  bench/load.py [--model demo|256|1024] [--device cpu|cuda] [--rounds 3]
                [--duration 10] [--clients 16] [--threads N] [--build build]
                [--out FILE]

Loopback only, bounded in time; everything started is stopped on exit.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


class Service:
    """restyled and one worker, restarted with other worker flags on demand."""

    def __init__(self, build, run_dir, models, device, threads):
        self.build, self.run, self.models, self.device = build, run_dir, models, device
        self.threads = threads
        self.front = self.worker = None
        self.starts = 0

    def _wait_json(self, path, timeout=60):
        until = time.time() + timeout
        while time.time() < until:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                with open(path) as f:
                    return json.load(f)
            time.sleep(0.05)
        raise RuntimeError(f"{path} never appeared; see the logs in {self.run}")

    def start_front(self):
        ports = os.path.join(self.run, "front.json")
        self.front = subprocess.Popen(
            [f"{self.build}/server/restyled", "--data-dir", f"{self.run}/front", "--host", "127.0.0.1",
             "--port", "0", "--worker-port", "0", "--health-port", "0", "--metrics-port", "0",
             "--port-file", ports, "--drain-delay", "0"],
            stdout=open(f"{self.run}/front.log", "w"), stderr=subprocess.STDOUT)
        p = self._wait_json(ports)
        self.api = f"127.0.0.1:{p['api']}"
        self.worker_port = f"127.0.0.1:{p['worker']}"

    def start_worker(self, *flags):
        self.stop_worker()
        self.starts += 1
        ports = os.path.join(self.run, f"worker{self.starts}.json")
        argv = [f"{self.build}/worker/restyle-worker", "--front", self.worker_port,
                "--work-dir", f"{self.run}/worker", "--id", f"bench-{self.starts}",
                "--metrics-address", "127.0.0.1:0", "--health-address", "127.0.0.1:0", "--port-file", ports, "--device", self.device,
                "--threads", str(self.threads)]
        if self.models:
            argv += ["--models", self.models]
        else:  # the figures in docs/benchmarks.md were measured on these
            argv += ["--embedded-models", "random"]
        self.worker = subprocess.Popen(argv + list(flags),
                                       stdout=open(f"{self.run}/worker{self.starts}.log", "w"),
                                       stderr=subprocess.STDOUT)
        self.worker_metrics = f"127.0.0.1:{self._wait_json(ports)['metrics']}"
        # Serving once the front lists it with its source.
        until = time.time() + 120
        while time.time() < until:
            out = subprocess.run([f"{self.build}/client/restyle", "--server", self.api, "workers",
                                  "-o", "json"], capture_output=True, text=True)
            if out.returncode == 0 and f'"workers/bench-{self.starts}"' in out.stdout:
                return
            time.sleep(0.1)
        raise RuntimeError("the worker did not register")

    def stop_worker(self):
        stop(self.worker)
        self.worker = None

    def close(self):
        self.stop_worker()
        stop(self.front)


def stop(process, grace=20):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def emit(line, out):
    text = json.dumps(line, sort_keys=True)
    print(text, flush=True)
    if out:
        out.write(text + "\n")
        out.flush()


def load(svc, generators, label, clients, duration=None, requests=None, seed_base=0):
    argv = [f"{svc.build}/bench/restyle-load", "--server", svc.api, "--clients", str(clients),
            "--label", label, "--worker-metrics", svc.worker_metrics, "--seed-base", str(seed_base)]
    for g in generators:
        argv += ["--generator", g]
    argv += ["--requests", str(requests)] if requests else ["--duration", str(duration)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=(duration or 60) + 300)
    if out.returncode != 0:
        raise RuntimeError(f"restyle-load failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine_baseline(build, model, device, threads, batches):
    argv = [f"{build}/worker/engine/bench/restyle-bench", "--device", device, "--threads",
            str(threads), "--filter", f"serve/generate/{model}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.startswith("{")]
    found = {}
    for l in lines:
        if l["name"].endswith("/invariant") and l["batch"] in batches and "skipped" not in l:
            l["images_per_s"] = l["batch"] * 1000.0 / l["median_ms"]
            found[l["batch"]] = l
    return found


def resident_bytes(svc, timeout=30):
    """The worker's restyle_generators_resident_bytes once it is sampled (non-zero)."""
    until = time.time() + timeout
    while time.time() < until:
        with urllib.request.urlopen(f"http://{svc.worker_metrics}/metrics", timeout=10) as page:
            for line in page.read().decode().splitlines():
                if line.startswith("restyle_generators_resident_bytes "):
                    value = int(float(line.split()[1]))
                    if value > 0:
                        return value
        time.sleep(0.2)
    raise RuntimeError("the worker never reported its resident generators")


def submit(svc, target, stage1_iters=2, stage2_iters=2):
    out = subprocess.run([f"{svc.build}/client/restyle", "--server", svc.api, "adapt", "--source",
                          "demo", "--target", target, "--stage1-iters", str(stage1_iters),
                          "--stage1-batch", "2", "--stage2-iters", str(stage2_iters),
                          "--mean-latent-samples", "64", "-o", "json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[0])


def job_state(svc, job):
    out = subprocess.run([f"{svc.build}/client/restyle", "--server", svc.api, "get", job, "-o",
                          "json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[0]).get("state")


def adapt(svc, target):
    job = submit(svc, target)["name"]
    subprocess.run([f"{svc.build}/client/restyle", "--server", svc.api, "wait", job, "--timeout",
                    "10m"], capture_output=True, check=True)
    return "generators/" + job.split("/", 1)[1]


def while_training(svc, source, requests):
    """One client while a long job trains on the only worker; the job is cancelled after."""
    job = submit(svc, "watercolor", stage1_iters=100000, stage2_iters=2)["name"]
    until = time.time() + 120
    while job_state(svc, job) != "JOB_STATE_RUNNING":
        if time.time() > until:
            raise RuntimeError(f"{job} never started")
        time.sleep(0.1)
    time.sleep(1)  # into the training steps
    try:
        return load(svc, [source], "training/1-client", 1, requests=requests, seed_base=7 * 10**6)
    finally:
        subprocess.run([f"{svc.build}/client/restyle", "--server", svc.api, "cancel", job],
                       capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="demo", choices=["demo", "256", "1024"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--idle-requests", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0,
                    help="LibTorch threads of the worker and the engine baseline (0: on the CPU, "
                         "all CPUs but one, which the front, the clients and the encoders share)")
    ap.add_argument("--build", default="build")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    out = open(a.out, "w") if a.out else None
    run = tempfile.mkdtemp(prefix="restyle-load.")
    models = ""
    if a.model != "demo":
        models = f"{run}/models"
        subprocess.run([f"{a.build}/bench/restyle-random-model", "--size", a.model, "--out", models],
                       check=True, capture_output=True)
    source = "generators/demo" if a.model == "demo" else f"generators/random-{a.model}"
    max_batch = 32 if a.device == "cuda" else 8
    threads = a.threads or (max(1, os.cpu_count() - 1) if a.device == "cpu" else os.cpu_count())
    svc = Service(a.build, run, models, a.device, threads)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        batches = [b for b in (1, 2, 4, 8, 16, 32) if b <= max_batch]
        engine = engine_baseline(a.build, a.model, a.device, threads, batches)
        for b, l in sorted(engine.items()):
            emit({"bench": "engine", "model": a.model, "device": a.device, "batch": b,
                  "median_ms": l["median_ms"], "images_per_s": l["images_per_s"]}, out)

        svc.start_front()
        results = {"batched": [], "unbatched": [], "idle": []}
        for r in range(a.rounds):
            order = ["batched", "unbatched"] if r % 2 == 0 else ["unbatched", "batched"]
            for mode in order:
                svc.start_worker(*([] if mode == "batched" else ["--max-generation-batch", "1"]))
                load(svc, [source], "warm-up", 2, requests=8, seed_base=10**9)
                if mode == "batched":
                    idle = load(svc, [source], f"idle/round{r}", 1, requests=a.idle_requests,
                                seed_base=r * 10**6)
                    emit(idle, out)
                    results["idle"].append(idle)
                sat = load(svc, [source], f"saturation-{mode}/round{r}", a.clients,
                           duration=a.duration, seed_base=r * 10**6 + 10**5)
                emit(sat, out)
                results[mode].append(sat)

        lru = training = None
        if a.model == "demo":
            svc.start_worker()
            training = while_training(svc, source, a.idle_requests // 2)
            emit(training, out)
            adapted = [adapt(svc, t) for t in ("ukiyo-e", "pixar", "sketch", "oil painting")]
            # Room for two of the four: every load past the second evicts one.
            load(svc, adapted[:1], "probe", 1, requests=1)
            one = resident_bytes(svc)
            svc.start_worker("--cache-memory", str(2 * one + one // 2), "--max-generation-batch", "1",
                             "--generation-window-ms", "0")
            lru = load(svc, adapted, "lru/4-generators-budget-2", 4, duration=a.duration)
            lru["worker"]["hit_rate"] = 1 - lru["worker"]["generator_loads"] / max(1, lru["worker"]["batches"])
            emit(lru, out)

        def median(mode, key):
            return statistics.median(x[key] for x in results[mode])

        sat_batched = median("batched", "images_per_s")
        sat_unbatched = median("unbatched", "images_per_s")
        mean_batch = statistics.median(x["worker"]["mean_batch"] for x in results["batched"])
        engine_b = min(engine, key=lambda b: abs(b - mean_batch)) if engine else None
        idle_p50 = statistics.median(x["latency_ms"]["p50"] for x in results["idle"])
        summary = {
            "bench": "summary", "model": a.model, "device": a.device, "rounds": a.rounds,
            "threads": threads,
            "clients": a.clients, "saturated_images_per_s": sat_batched,
            "unbatched_images_per_s": sat_unbatched, "mean_batch_formed": mean_batch,
            "engine_batch_compared": engine_b,
            "engine_images_per_s": engine[engine_b]["images_per_s"] if engine_b else None,
            "batching_speedup": sat_batched / sat_unbatched if sat_unbatched else None,
            "idle_p50_ms": idle_p50,
            "engine_b1_ms": engine[1]["median_ms"] if 1 in engine else None,
        }
        if engine_b:
            summary["service_vs_engine"] = sat_batched / summary["engine_images_per_s"]
        if 1 in engine:
            summary["idle_overhead_ms"] = idle_p50 - engine[1]["median_ms"]
        if training:
            summary["training_p50_ms"] = training["latency_ms"]["p50"]
            summary["training_p99_ms"] = training["latency_ms"]["p99"]
            summary["training_added_ms"] = training["latency_ms"]["p50"] - idle_p50
        if lru:
            summary["lru_hit_rate"] = lru["worker"]["hit_rate"]
            summary["lru_mean_load_ms"] = lru["worker"]["mean_load_ms"]
            summary["lru_latency_p50_ms"] = lru["latency_ms"]["p50"]
            summary["lru_latency_p99_ms"] = lru["latency_ms"]["p99"]
        emit(summary, out)
    finally:
        svc.close()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
