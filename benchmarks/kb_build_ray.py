#!/usr/bin/env python3
"""KB feature extraction: one process (torch on --threads cores) against Ray Data on this
machine (a local Ray with --workers workers, one thread each), side by side in one run on the
same images, plus the largest difference between their features.

    nice .venv/bin/python benchmarks/kb_build_ray.py [--images 1024] [--dataset fashion-mnist]

Prints a Markdown table with the machine and its load average (a shared machine slows both
paths; compare the ratio, measured in one run).
"""
import argparse
import os
import platform
import tempfile
import time

import numpy as np

from gnuradio.kbsemcom.core import datasets, extractors
from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.core.kb_ray import extract_features_ray


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the one process")
    args = p.parse_args()
    items = datasets.open_dataset(args.dataset).items("test")[:args.images]
    os.environ["KBSEMCOM_THREADS"] = "1"  # each Ray worker: one core
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as parts:
        ray_f, _, report = extract_features_ray(args.extractor, items, parts,
                                                workers=args.workers, progress=False)
    ray_s = time.perf_counter() - t
    os.environ["KBSEMCOM_THREADS"] = str(args.threads)
    extractors.set_threads()
    ex = extractors.load_extractor(args.extractor)
    t = time.perf_counter()
    one_f, _ = extract_features(ex, items, use_cache=False)
    one_s = time.perf_counter() - t
    print(f"{len(items)} {args.dataset} images, {ex.name}; {platform.node()} "
          f"{os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}\n")
    print("| path | seconds | images/s | vs one process |")
    print("|---|---|---|---|")
    print(f"| one process, {args.threads} threads | {one_s:.1f} | "
          f"{len(items) / one_s:.1f} | 1.00 |")
    print(f"| Ray Data, {args.workers} workers x 1 thread (Ray start, worker model loads included) | {ray_s:.1f} | "
          f"{len(items) / ray_s:.1f} | {ray_s / one_s:.2f} |")
    print(f"\nlargest feature difference: {np.abs(ray_f - one_f).max():.2e}; shards per node: "
          f"{report['per_node']}")


if __name__ == "__main__":
    main()
