#!/usr/bin/env python3
"""Feature extraction speed per inference backend (torch, OpenVINO), side by side in one run.

Rows: each extractor on each backend, at batch 1 (one image per call: the flowgraph's block
when images arrive one by one) and through the feature cache's path (features.extract_features
without its cache: decoding, preprocessing and inference in chunks, as KB builds and training
do). For openvino also batch 1 on the network with a dynamic batch dimension (what batch 1 ran
on before the static-shape network for one image), batch 1 with its threads pinned to cores
(OpenVINO's default, which the module turns off) and the preprocessing alone (PIL resize and
crop to the network's uint8 input, no inference). Timing rounds alternate between the rows and the median is printed, so a neighbour's load
on a shared machine hits every row alike; the ratio column divides by torch at batch 1 measured
in the same rounds. Also checks that every backend's features equal torch's within
extractors.FEATURE_TOLERANCE.

CLIP runs with random weights of the paper's architecture (open_clip:ViT-B-32): its speed does
not depend on the weights, which cannot be downloaded on an offline machine. Real images
(Fashion-MNIST test set). Prints the machine, the load average and the thread count.
Usage: .venv/bin/python benchmarks/extractor_speed.py [--images 64] [--threads 2] [--rounds 3]
       [--extractors efficientnet-lite0,open_clip:ViT-B-32]
"""
import argparse
import os
import platform
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64, help="images per measurement")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="inference threads (KBSEMCOM_THREADS); default: all cores")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (median)")
    p.add_argument("--extractors", default="efficientnet-lite0,open_clip:ViT-B-32")
    p.add_argument("--backends", default="torch,openvino")
    p.add_argument("--bf16", action="store_true",
                   help="also time openvino in bfloat16 at batch 1 (not used by the module: "
                        "the row prints its smallest cosine similarity to torch's features)")
    args = p.parse_args()
    os.environ["KBSEMCOM_THREADS"] = str(args.threads)
    os.environ["TQDM_DISABLE"] = "1"  # the cache path's progress bar
    import numpy as np
    from gnuradio.kbsemcom.core import datasets, extractors
    from gnuradio.kbsemcom.core.features import extract_features

    items = datasets.fashion_mnist().items("test")[:args.images]
    images = [it.load() for it in items]
    load_before = os.getloadavg()
    print("| extractor | backend | path | images/s | x torch batch 1 | CPU ms/img | max abs diff "
          "vs torch |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.extractors.split(","):
        exts = {}
        for backend in args.backends.split(","):
            ext = extractors.load_extractor(spec, backend="torch")
            if exts:  # random weights (CLIP here) differ per load: every backend gets the same
                ext.model.load_state_dict(next(iter(exts.values())).model.state_dict())
            exts[backend] = ext.use_backend(backend)
        ref = exts["torch"].embed(images) if "torch" in exts else None
        rows = {}
        for backend, ext in exts.items():
            ext.embed(images[:2])  # warm-up (batch 1 compiles its own network on first use)
            ext.embed(images[:1])
            diff = float(np.abs(ext.embed(images) - ref).max()) if ref is not None else None
            rows[(backend, "batch 1")] = (lambda e=ext: [e.embed([im]) for im in images], diff)
            rows[(backend, f"cache (chunks of {ext.batch_size})")] = (
                lambda e=ext: extract_features(e, items, use_cache=False, desc="bench"), diff)
            if backend == "openvino":
                rows[(backend, "batch 1, dynamic shape")] = (
                    lambda e=ext: [_dynamic(e, im) for im in images],
                    float(np.abs(np.concatenate([_dynamic(ext, im) for im in images]) - ref)
                          .max()) if ref is not None else None)
                rows[(backend, "batch 1, pinned threads")] = _pinned_row(ext, images, ref)
                rows[(backend, "preprocessing only")] = (
                    lambda e=ext: [e.prepare([im]) for im in images], None)
        if args.bf16 and "openvino" in exts and ref is not None:
            rows[("openvino bf16", "batch 1")] = _bf16_row(exts["openvino"], images, ref)
        rates = {key: [] for key in rows}
        cpu = {key: [] for key in rows}
        for _ in range(args.rounds):
            for key, (run, *_) in rows.items():
                start, cpu0 = time.perf_counter(), time.process_time()
                run()
                rates[key].append(len(images) / (time.perf_counter() - start))
                cpu[key].append(1e3 * (time.process_time() - cpu0) / len(images))
        base = statistics.median(rates[("torch", "batch 1")]) if "torch" in exts else None
        for (backend, path), (_, diff, *_) in rows.items():
            rate = statistics.median(rates[(backend, path)])
            ratio = f"{rate / base:.2f}" if base else "-"
            print(f"| {spec} | {backend} | {path} | {rate:.1f} | {ratio} | "
                  f"{statistics.median(cpu[(backend, path)]):.2f} | "
                  f"{'-' if diff is None else f'{diff:.1e}'} |")
            if backend == "openvino bf16":
                print(f"(openvino bf16: smallest cosine similarity to torch's features "
                      f"{rows[(backend, path)][2]:.5f}; the module keeps float32)")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
          f"{args.threads} inference threads; load average {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; {len(images)} Fashion-MNIST test images per row, "
          f"median of {args.rounds} alternating rounds; CPU: process CPU time (all threads) "
          f"per image; tolerance "
          f"{extractors.FEATURE_TOLERANCE:g}")


def _dynamic(ext, image):
    """The openvino feature of one image on the network with a dynamic batch dimension."""
    from gnuradio.kbsemcom.core.extractors import _normalise
    net = ext._openvino
    x = ext.prepare([image])
    with net._lock:
        return _normalise([net._request.infer({0: x})[0].copy()], ext.dim)


def _pinned_row(ext, images, ref):
    """(run, max abs diff) of one image per call on the batch-1 network compiled with its
    threads pinned to cores (OpenVINO's default for the latency hint; the module unpins them)."""
    import numpy as np
    from gnuradio.kbsemcom.core import ov_extractor
    net = ext._openvino
    model = net.model.clone()
    model.reshape([1, *(d.get_length() for d in list(model.input(0).get_partial_shape())[1:])])
    request = net.core.compile_model(model, "CPU", {
        **ov_extractor.LATENCY_CONFIG, "ENABLE_CPU_PINNING": True,
        "INFERENCE_NUM_THREADS": net.threads}).create_infer_request()

    def embed(im):
        with net._lock:
            f = request.infer({0: ext.prepare([im])}, share_inputs=True)[0].copy()
        return f / np.linalg.norm(f, axis=1, keepdims=True)
    feats = np.concatenate([embed(im) for im in images])
    diff = float(np.abs(feats - ref).max()) if ref is not None else None
    return (lambda: [embed(im) for im in images], diff)


def _bf16_row(ext, images, ref):
    """(run, max abs diff, smallest cosine) of the extractor's openvino network compiled in
    bfloat16, one image per call."""
    import numpy as np
    net = ext._openvino
    compiled = net.core.compile_model(net.model, "CPU", {
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": net.threads,
        "INFERENCE_PRECISION_HINT": "bf16"})
    request = compiled.create_infer_request()

    def embed(im):
        f = request.infer({0: ext.prepare([im])})[0]
        return f / np.linalg.norm(f, axis=1, keepdims=True)
    feats = np.concatenate([embed(im) for im in images])
    return (lambda: [embed(im) for im in images], float(np.abs(feats - ref).max()),
            float((feats * ref).sum(1).min()))


if __name__ == "__main__":
    main()
