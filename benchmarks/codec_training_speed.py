#!/usr/bin/env python3
"""Wall and CPU time of `kbsemcom evaluate`'s codec training, the two ways side by side.

"one at a time": every codec trained in the evaluating process on all cores
(KBSEMCOM_TRAIN_THREADS = KBSEMCOM_THREADS: the behaviour before issue 13, bit for bit);
"parallel": the default, one single-threaded process per core (evaluation.pretrain_codecs).
Each mode runs the same evaluation slice in its own fresh codec cache; features, data and
the converted network come from the current cache (KBSEMCOM_CACHE; a first, untimed
evaluation of the raw feature fills it), so only the codecs start cold. Modes alternate over
--rounds.
Prints wall time, CPU seconds of the process tree (user+sys: less load-sensitive than wall),
the load average before/after, the machine, and the largest accuracy difference between the
modes (one thread and several round differently: not zero, but small).
Usage: .venv/bin/python benchmarks/codec_training_speed.py [--dataset cifar10]
       [--codecs kbsc,kbsc-kb] [--cbrs 1/48,1/12] [--epochs 5] [--rounds 1]
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
from pathlib import Path

SHARED = ("features", "openvino", "data")  # the cache's parts both modes reuse


def evaluate(args, codecs, out):
    cmd = [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli", "evaluate", "--dataset",
           args.dataset, "--extractor", args.extractor, "--codecs", codecs, "--cbrs",
           args.cbrs, "--channels", args.channels, "--snrs=" + args.snrs, "--seeds", "0",
           "--epochs", str(args.epochs), "--json", "--out", str(out)]
    for role in ("sent", "kb", "train", "val"):
        if getattr(args, f"{role}_per_class") is not None:
            cmd += [f"--{role}-per-class", str(getattr(args, f"{role}_per_class"))]
    return cmd


def run(mode, args, tmp, n):
    cores = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    cache = Path(tmp) / f"cache-{mode}-{n}".replace(" ", "-")
    cache.mkdir()
    from gnuradio.kbsemcom.core import datasets
    for part in SHARED:
        src = datasets.cache_dir() / part
        src.mkdir(parents=True, exist_ok=True)
        (cache / part).symlink_to(src)
    env = dict(os.environ, KBSEMCOM_CACHE=str(cache), KBSEMCOM_THREADS=str(cores),
               KBSEMCOM_TRAIN_THREADS=str(cores if mode == "one at a time" else 1))
    out = Path(tmp) / f"out-{mode}-{n}".replace(" ", "-")
    cmd = evaluate(args, args.codecs, out)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"evaluate failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    n_codecs = len(list((cache / "codecs").glob("*.pt")))
    return wall, cpu, load, os.getloadavg()[0], n_codecs, recs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--codecs", default="kbsc,kbsc-kb")
    p.add_argument("--cbrs", default="1/48,1/12")
    p.add_argument("--channels", default="awgn")
    p.add_argument("--snrs", default="0")
    p.add_argument("--epochs", type=int, default=5, help="epochs per codec (the cap)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of both modes")
    for role in ("sent", "kb", "train", "val"):
        p.add_argument(f"--{role}-per-class", type=int, default=None,
                       help="images per class (default: the protocol's)")
    args = p.parse_args()
    warm = subprocess.run(evaluate(args, "raw", Path(tempfile.mkdtemp()) / "raw"),
                          capture_output=True, text=True)  # features into the cache, untimed
    if warm.returncode:
        raise SystemExit(f"evaluate failed ({warm.returncode}): {warm.stderr.strip()[-800:]}")
    print("| mode | round | codecs trained | wall s | CPU s (user+sys) | load avg before/after |")
    print("|---|---|---|---|---|---|", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="kbsemcom-codec-speed-") as tmp:
        for n in range(args.rounds):
            for mode in ("one at a time", "parallel"):
                wall, cpu, l0, l1, k, recs = run(mode, args, tmp, n)
                results.setdefault(mode, recs)
                print(f"| {mode} | {n + 1} | {k} | {wall:.1f} | {cpu:.1f} | {l0:.1f} / {l1:.1f} |",
                      flush=True)
    key = lambda r: (r["codec"], r["cbr"], r["channel"], r["snr_db"], r["seed"])  # noqa: E731
    a = {key(r): r["accuracy"] for r in results["one at a time"]}
    b = {key(r): r["accuracy"] for r in results["parallel"]}
    diff = max(abs(a[k] - b[k]) for k in a)
    print(f"largest accuracy difference between the modes: {100 * diff:.2f} points over "
          f"{len(a)} points")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
          f"{args.dataset}, {args.extractor}, codecs {args.codecs}, CBRs {args.cbrs}, "
          f"{args.channels}, SNRs {args.snrs}, {args.epochs} epochs, seed 0")


if __name__ == "__main__":
    main()
