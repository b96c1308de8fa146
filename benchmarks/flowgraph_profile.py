#!/usr/bin/env python3
"""Per-block profile of the TX+RX flowgraph (kbsemcom demo's semantic_loopback), and its
images/s against the extractor alone, measured side by side in one run.

Every PDU block counts the seconds spent in its processing and in PDU conversion, and the CPU
time of its handler's thread (pdus.PduBlock.profile); the table prints them per image. Wall
times include waiting for a core (on a loaded machine mostly that); the CPU column does not.
The process's CPU time per image (all threads: inference, blocks, GNU Radio, spinning thread
pools) is printed for the flowgraph and the extractor alone. "extractor alone" does what the
flowgraph's extractor block must do per image, outside GNU Radio: decode the image file and
embed it, one image per call. Rounds alternate between the two and the median is printed, so a
neighbour's load on a shared machine hits both alike.

The KB and codec come from the pipeline's caches (built on first use: Fashion-MNIST, 50 KB
images per class, codec trained on 50 images per class for 10 epochs: their accuracy does not
matter here, only their cost per image).
Usage: .venv/bin/python benchmarks/flowgraph_profile.py [--images 300] [--rounds 3]
       [--backend auto] [--threads 2]
"""
import argparse
import os
import platform
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=300, help="images sent per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backend", default="auto", help="auto, torch or openvino")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="inference threads (KBSEMCOM_THREADS); default: all cores")
    args = p.parse_args()
    os.environ["KBSEMCOM_THREADS"] = str(args.threads)
    from gnuradio.kbsemcom.core import datasets, extractors, pipeline, protocols
    from gnuradio.kbsemcom.flowgraphs import run_until_done, semantic_loopback

    dataset = datasets.fashion_mnist()
    extractor = extractors.load_extractor("efficientnet-lite0", backend=args.backend)
    per_class = -(-args.images // len(dataset.class_names))
    split = protocols.split_dataset(dataset, per_class, 50, 50, 10)
    link = pipeline.prepare_link(extractor, split, "1/48", "awgn", 0, epochs=10,
                                 progress=False)
    sent = split.sent[:args.images]
    payloads = [it.read_bytes() for it in sent]
    extractor.embed([datasets.decode_image(payloads[0], "warm-up")])

    def alone():
        for i, data in enumerate(payloads):
            extractor.embed([datasets.decode_image(data, sent[i].image_id)])

    rates = {"flowgraph": [], "extractor alone": []}
    cpu = {"flowgraph": [], "extractor alone": []}
    profiles = []
    for _ in range(args.rounds):
        start, cpu0 = time.perf_counter(), time.process_time()
        alone()
        rates["extractor alone"].append(len(sent) / (time.perf_counter() - start))
        cpu["extractor alone"].append(1e3 * (time.process_time() - cpu0) / len(sent))
        tb = semantic_loopback(sent, extractor, link.codec, link.kb, "awgn", 10.0, 0)
        cpu0 = time.process_time()
        seconds = run_until_done(tb, tb.sink, 600)
        cpu["flowgraph"].append(1e3 * (time.process_time() - cpu0) / len(sent))
        if tb.sink.count() != len(sent):
            raise SystemExit(f"only {tb.sink.count()} of {len(sent)} results came back")
        rates["flowgraph"].append(len(sent) / seconds)
        profiles.append({b.stage: dict(b.profile) for b in
                         (tb.extractor, tb.encoder, tb.channel, tb.decoder, tb.lookup)
                         if hasattr(b, "profile")})
    print("| block | PDUs | calls | processing ms/img | PDU conversion ms/img | thread CPU "
          "ms/img |")
    print("|---|---|---|---|---|---|")
    last = profiles[-1]
    for stage, prof in last.items():
        n = max(prof["handled"], 1)
        thread_cpu = f"{1e3 * prof['cpu_s'] / n:.2f}" if "cpu_s" in prof else "-"  # older code
        print(f"| {stage} | {prof['handled']} | {prof['calls']} | "
              f"{1e3 * prof['busy_s'] / n:.2f} | {1e3 * prof['pdu_s'] / n:.3f} | {thread_cpu} |")
    flow = statistics.median(rates["flowgraph"])
    solo = statistics.median(rates["extractor alone"])
    print(f"\nflowgraph {flow:.1f} images/s, extractor alone {solo:.1f} images/s: ratio "
          f"{flow / solo:.2f} (median of {args.rounds} alternating rounds, {len(sent)} images "
          f"each; all rounds: flowgraph {[round(r, 1) for r in rates['flowgraph']]}, alone "
          f"{[round(r, 1) for r in rates['extractor alone']]})")
    print(f"process CPU per image: flowgraph {statistics.median(cpu['flowgraph']):.2f} ms, "
          f"extractor alone {statistics.median(cpu['extractor alone']):.2f} ms (medians)")
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores; "
          f"{args.threads} inference threads; backend {extractor.backend}; load average "
          f"{os.getloadavg()[0]:.1f}; Fashion-MNIST, efficientnet-lite0, seed 0, AWGN 10 dB, "
          f"CBR 1/48")


if __name__ == "__main__":
    main()
