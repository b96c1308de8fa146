#!/usr/bin/env python3
"""Wall time of `kbsemcom demo` from an empty cache and of its rerun, per backend, in one run.

Each configuration gets a fresh cache folder (KBSEMCOM_CACHE; the converted OpenVINO network
and every feature, KB and codec start absent: a new user's first run), runs the demo once,
then again on the now warm cache. The Hugging Face cache is left as it is (the demo's
extractor is chosen from it). Prints the wall times, the demo's own phase timings, the
accuracy (equal between backends: the features are), the CPU seconds of the demo's process
tree (user+sys: less load-sensitive than wall time), the machine and the load average before
and after each run: on a shared machine the load says how much the times are worth.
Usage: .venv/bin/python benchmarks/demo_timing.py [--backends auto] [--threads 2]
       [-- extra demo options, e.g. --images 200]
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time


def run_demo(cache, out, backend, threads, extra):
    env = dict(os.environ, KBSEMCOM_CACHE=cache, KBSEMCOM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli", "demo", "--json",
           "--out", out, "--backend", backend, *extra]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the demo's process tree: less sensitive to a neighbour's load than wall
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode:
        raise SystemExit(f"demo failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, cpu, load, os.getloadavg()[0], json.loads(done.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="auto", help="comma-separated: auto, torch, openvino")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="KBSEMCOM_THREADS; default: all cores")
    p.add_argument("extra", nargs="*", help="more demo options (after --)")
    args = p.parse_args()
    print("| backend | run | wall s | CPU s (user+sys) | extractor load s | KB + features + codec s | "
          "flowgraph s | flowgraph images/s | accuracy | raw 1-NN reference | load avg before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="kbsemcom-demo-timing-") as tmp:
        for backend in args.backends.split(","):
            cache = os.path.join(tmp, f"cache-{backend}")
            for run in ("empty cache", "rerun"):
                wall, cpu, load0, load1, s = run_demo(cache, os.path.join(tmp, f"out-{backend}"),
                                                 backend, args.threads, args.extra)
                rows.append(s)
                ph = s["phases"]
                print(f"| {backend} ({s['extractor_backend']}) | {run} | {wall:.1f} | {cpu:.1f} | "
                      f"{ph['extractor_load_s']:.1f} | "
                      f"{ph['prepare_s'] - ph['extractor_load_s']:.1f} | "
                      f"{ph['flowgraph_s']:.1f} | {s['images_per_second']:.1f} | "
                      f"{s['accuracy']:.1%} | {s['raw_1nn_reference']:.1%} | {load0:.1f} / {load1:.1f} |",
                      flush=True)
    s = rows[0]
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
          f"KBSEMCOM_THREADS={args.threads}; {s['dataset']}, {s['extractor']}, {s['codec']} "
          f"CBR {s['cbr']}, {s['channel']} {s['snr_db']} dB, seed {s['seed']}, "
          f"{s['n_sent']} images sent; demo options: {' '.join(args.extra) or 'defaults'}")


if __name__ == "__main__":
    main()
