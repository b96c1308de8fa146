#!/usr/bin/env python3
"""CPU time per PDU of each small block of the TX+RX flowgraph (encoder, channel, decoder, KB
lookup), its whole message handler: PDU parsing, processing, metadata, building and publishing
the PDU out.

Each block's handler is called directly on one thread with a PDU as the block before it makes
it (same codec, KB and metadata as benchmarks/flowgraph_profile.py), and the thread's CPU time
is counted (time.thread_time): what the block takes from the cores the extractor shares, which a
loaded machine inflates much less than wall time. Rounds alternate between the blocks; the
median is printed. Prints the machine and the load average.
Usage: .venv/bin/python benchmarks/block_cost.py [--calls 500] [--rounds 3] [--json]
"""
import argparse
import json
import os
import platform
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=500, help="PDUs per block per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = p.parse_args()
    if args.calls < 1 or args.rounds < 1:
        p.error("--calls and --rounds must be at least 1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from gnuradio import kbsemcom
    from gnuradio.kbsemcom.core import datasets, extractors, pipeline, protocols
    from gnuradio.kbsemcom.pdus import make_pdu

    dataset = datasets.fashion_mnist()
    extractor = extractors.load_extractor("efficientnet-lite0")
    split = protocols.split_dataset(dataset, 10, 50, 50, 10)
    link = pipeline.prepare_link(extractor, split, "1/48", "awgn", 0, epochs=10,
                                 progress=False)
    codec, kb = link.codec, link.kb
    item = split.sent[0]
    feature = extractor.embed([item.load()])[0]
    meta = {"image_id": item.image_id, "label": int(item.label), "class_name": item.class_name,
            "seq": 0, "source": str(item.source), "extractor": extractor.name}
    symbols = codec.encode(feature)
    sent = dict(meta, cbr="1/48", n_symbols=len(symbols))
    received = dict(sent, channel="awgn", snr_db=10.0)
    blocks = {
        "semantic_encoder": (kbsemcom.semantic_encoder(codec), make_pdu(meta, feature)),
        "semantic_channel": (kbsemcom.semantic_channel("awgn", 10.0, 0),
                             make_pdu(sent, symbols)),
        "semantic_decoder": (kbsemcom.semantic_decoder(codec), make_pdu(received, symbols)),
        "kb_lookup": (kbsemcom.kb_lookup(kb, codec),
                      make_pdu(received, codec.decode(symbols))),
    }
    cost = {name: [] for name in blocks}
    for block, msg in blocks.values():
        block._handle(msg)  # warm-up
    for _ in range(args.rounds):
        for name, (block, msg) in blocks.items():
            start = time.thread_time()
            for _ in range(args.calls):
                block._handle(msg)
            cost[name].append(1e6 * (time.thread_time() - start) / args.calls)
    rows = {name: round(statistics.median(v), 1) for name, v in cost.items()}
    info = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "load_average": round(os.getloadavg()[0], 1), "calls": args.calls,
            "rounds": args.rounds, "total_us": round(sum(rows.values()), 1)}
    if args.json:
        print(json.dumps({"rows": rows, "info": info}))
        return
    print("| block | handler CPU us per PDU |")
    print("|---|---|")
    for name, us in rows.items():
        print(f"| {name} | {us:.1f} |")
    print(f"\nall four: {info['total_us']:.1f} us per image; median of {args.rounds} alternating "
          f"rounds of {args.calls} PDUs; machine: {info['machine']}; load average "
          f"{info['load_average']}; Fashion-MNIST, efficientnet-lite0, CBR 1/48, AWGN 10 dB")


if __name__ == "__main__":
    main()
