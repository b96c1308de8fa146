#!/usr/bin/env python3
"""Size and per-image latency of the codec recipes (the paper's kbsc, our kbsc-kb and
kbsc-ret) at each CBR, the way a flowgraph block runs them: one feature -> encode -> channel
-> decode, batch 1, through the numpy API the GNU Radio blocks call (SemanticCodec.encode /
Channel / decode).

Latency does not depend on the trained weights, so freshly initialised models are timed.

    .venv/bin/python benchmarks/codec_size_latency.py [--dim 1280] [--repeats 300]

Prints a Markdown table plus the machine and torch threads; --json for JSON lines.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.core.channel import Channel
from gnuradio.kbsemcom.core.codec import SemanticCodec, recipe_config
from gnuradio.kbsemcom.core.extractors import set_threads


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dim", type=int, default=1280, help="feature dimension (EfficientNet 1280)")
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--classes", type=int, default=100,
                   help="training classes, which size kbsc-kb's class part (Caltech-100: 100)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    set_threads()
    ident = {"name": "benchmark", "dim": args.dim}
    rng = np.random.default_rng(0)
    feature = rng.standard_normal(args.dim).astype(np.float32)
    feature /= np.linalg.norm(feature)
    rows = []
    for recipe in ("kbsc", "kbsc-kb", "kbsc-ret"):
        for cbr in conventions.PAPER_CBRS:
            config = recipe_config(recipe, ident, cbr, n_classes=args.classes)
            codec = SemanticCodec(config).eval()
            link = Channel("awgn", 0.0, 0)
            for _ in range(20):  # warm-up
                codec.decode(link(codec.encode(feature)))
            t = time.perf_counter()
            for _ in range(args.repeats):
                codec.decode(link(codec.encode(feature)))
            ms = (time.perf_counter() - t) / args.repeats * 1e3
            n_params = codec.size_parameters()
            rows.append({"codec": recipe, "cbr": cbr, "complex_symbols": codec.n_symbols,
                         "parameters": n_params, "size_mb": n_params * 4 / 1e6,
                         "ms_per_image": ms})
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, torch " \
              f"{torch.__version__} {torch.get_num_threads()} threads"
    if args.json:
        for r in rows:
            print(json.dumps(dict(r, machine=machine)))
        return 0
    print("| codec | CBR | symbols | parameters + buffers | float32 MB | "
          "encode+channel+decode ms/image |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['codec']} | {r['cbr']} | {r['complex_symbols']} | {r['parameters']:,} | "
              f"{r['size_mb']:.1f} | {r['ms_per_image']:.2f} |")
    print(f"\n{args.dim}-d features, {args.classes} classes, batch 1, {args.repeats} repeats; "
          f"{machine}. kbsc-kb has no decoder: its KB search runs over 2n-d codewords "
          f"instead of {args.dim}-d features.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
