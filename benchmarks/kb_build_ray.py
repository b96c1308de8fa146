#!/usr/bin/env python3
"""KB feature extraction: one process (--threads cores) against Ray Data on this machine (a
local Ray with --workers workers of --worker-threads threads each, polling as
--ray-config says), side by side on the same images, plus the
largest difference between their features.

    nice .venv/bin/python benchmarks/kb_build_ray.py [--images 1024] [--rounds 3]

The two paths alternate round by round (one process, Ray, one process, Ray, ...) so that a
change in a shared machine's load hits both alike; the ratio of their medians is the cost of
Ray. Each round includes what a build pays every time: loading the extractor (one process) or
starting the actor pool and loading one extractor per worker (Ray). Starting Ray itself
(``ray.init``, paid once per build, or never with a running cluster) is timed apart.

Beside the wall clock, the CPU seconds each path used (one process: its own; Ray: from Linux
/proc, this process and every process under it, Ray's raylet, GCS and workers included,
finished ones through their parent's children times): on a shared machine the wall clock measures the neighbours' load
as well, the CPU time mostly what the path itself costs.
Prints a Markdown table with the machine and its load average.
"""
import argparse
import os
import platform
import tempfile
import time

import numpy as np

from gnuradio.kbsemcom.core import datasets, extractors
from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.core.kb_ray import extract_features_ray, init_local


def tree_cpu_s(root=None):
    """CPU seconds (user + system) of a process and all its descendants, alive or reaped."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
            procs[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    root = root or os.getpid()
    kids = {}
    for pid, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += procs.get(pid, (0, 0))[1]
        todo += kids.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def one_process(spec, items, threads):
    os.environ["KBSEMCOM_THREADS"] = str(threads)
    extractors.set_threads()
    t = time.perf_counter()
    ex = extractors.load_extractor(spec)
    feats, _ = extract_features(ex, items, use_cache=False)
    return time.perf_counter() - t, feats, ex


def on_ray(spec, items, workers, threads):
    with tempfile.TemporaryDirectory() as parts:
        t = time.perf_counter()
        feats, _, report = extract_features_ray(spec, items, parts, workers=workers,
                                                progress=False, threads=threads)
        return time.perf_counter() - t, feats, report


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads of the one process")
    p.add_argument("--worker-threads", type=int, default=1,
                   help="CPUs and extractor threads per Ray worker")
    p.add_argument("--ray-config", default="quiet", choices=["quiet", "default"],
                   help="the local Ray's polling: kb_ray.QUIET_SYSTEM_CONFIG or Ray's "
                        "defaults")
    args = p.parse_args()
    import ray
    items = datasets.open_dataset(args.dataset).items("test")[:args.images]
    loads = [os.getloadavg()[0]]
    t = time.perf_counter()
    init_local(args.workers * args.worker_threads, quiet=args.ray_config == "quiet")
    init_s = time.perf_counter() - t
    one_s, ray_s, one_cpu, ray_cpu, diff, per_node = [], [], [], [], 0.0, None
    try:
        for r in range(args.rounds):
            c = time.process_time()  # this process alone: Ray's idle daemons do not count
            s, one_f, ex = one_process(args.extractor, items, args.threads)
            one_cpu.append(time.process_time() - c)
            one_s.append(s)
            c = tree_cpu_s()
            s, ray_f, report = on_ray(args.extractor, items, args.workers, args.worker_threads)
            ray_cpu.append(tree_cpu_s() - c)
            ray_s.append(s)
            diff = max(diff, float(np.abs(ray_f - one_f).max()))
            per_node = report["per_node"]
            loads.append(os.getloadavg()[0])
            print(f"round {r + 1}: one process {one_s[-1]:.1f} s ({one_cpu[-1]:.1f} CPU s), "
                  f"Ray {ray_s[-1]:.1f} s ({ray_cpu[-1]:.1f} CPU s), load avg {loads[-1]:.1f}",
                  flush=True)
    finally:
        ray.shutdown()
    one, on = float(np.median(one_s)), float(np.median(ray_s))
    one_c, on_c = float(np.median(one_cpu)), float(np.median(ray_cpu))
    print(f"\n{len(items)} {args.dataset} images x {args.rounds} rounds, {ex.name} "
          f"({ex.backend}); {platform.node()} {os.cpu_count()} cores, load avg "
          f"{min(loads):.1f} to {max(loads):.1f}\n")
    print("| path | median wall s (rounds) | images/s | wall vs one process | median CPU s "
          "(rounds) | CPU vs one process |")
    print("|---|---|---|---|---|---|")
    print(f"| one process, {args.threads} threads (extractor load included) | {one:.1f} "
          f"({', '.join(f'{s:.1f}' for s in one_s)}) | {len(items) / one:.1f} | 1.00 | "
          f"{one_c:.1f} ({', '.join(f'{s:.1f}' for s in one_cpu)}) | 1.00 |")
    print(f"| Ray Data, {args.workers} workers x {args.worker_threads} thread(s), "
          f"{args.ray_config} Ray config (actor start and model loads included) | {on:.1f} ({', '.join(f'{s:.1f}' for s in ray_s)}) | "
          f"{len(items) / on:.1f} | {on / one:.2f} | {on_c:.1f} "
          f"({', '.join(f'{s:.1f}' for s in ray_cpu)}) | {on_c / one_c:.2f} |")
    print(f"| the same plus starting a local Ray ({init_s:.1f} s, once per build) | "
          f"{on + init_s:.1f} | {len(items) / (on + init_s):.1f} | {(on + init_s) / one:.2f} "
          "| | |")
    print(f"\nlargest feature difference: {diff:.2e}; shards per node: {per_node}")


if __name__ == "__main__":
    main()
