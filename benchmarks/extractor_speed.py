#!/usr/bin/env python3
"""Feature extraction speed of EfficientNet-Lite0 and CLIP ViT-B-32, side by side in one run.

CLIP runs with random weights of the paper's architecture (open_clip:ViT-B-32): its speed does
not depend on the weights, which cannot be downloaded on an offline machine. Real images
(Fashion-MNIST test set, decoded to RGB once, outside the timing). Prints a table with the
machine and the thread count.
Usage: .venv/bin/python benchmarks/extractor_speed.py [--images 128] [--threads 1]
"""
import argparse
import os
import platform
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=128, help="images per measurement")
    p.add_argument("--threads", type=int, default=1, help="torch threads (KBSEMCOM_THREADS)")
    p.add_argument("--batches", default="1,16", help="batch sizes to time, comma-separated")
    args = p.parse_args()
    os.environ["KBSEMCOM_THREADS"] = str(args.threads)
    from gnuradio.kbsemcom.core import datasets, extractors

    images = [it.load() for it in datasets.fashion_mnist().items("test")[:args.images]]
    rows = []
    for spec in ("efficientnet-lite0", "open_clip:ViT-B-32"):
        ext = extractors.load_extractor(spec)
        for batch in (int(b) for b in args.batches.split(",")):
            ext.batch_size = batch
            ext.embed(images[:batch])  # warm-up
            start = time.perf_counter()
            ext.embed(images)
            rows.append((spec, ext.dim, batch, len(images) / (time.perf_counter() - start)))
    print("| extractor | dim | batch | images/s |\n|---|---|---|---|")
    for spec, dim, batch, rate in rows:
        print(f"| {spec} | {dim} | {batch} | {rate:.1f} |")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; torch "
          f"threads {args.threads}; {len(images)} Fashion-MNIST test images per row")


if __name__ == "__main__":
    main()
