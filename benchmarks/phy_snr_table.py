#!/usr/bin/env python3
"""Frames detected and semantic accuracy against SNR for the OFDM PHY.

Images of a data set are embedded, encoded by the codec (trained like the demo, cached),
framed by ofdm_tx, passed through GNU Radio's channels.channel_model (AWGN at the given
per-sample SNR, carrier-frequency offset, sampling-rate offset, a three-path multipath
profile), received by ofdm_rx, decoded and looked up in the KB. A frame that is not found
counts as a wrong image. For comparison: the codec over its own AWGN channel at the
receiver's mean post-EQ SNR estimate, and the noiseless ceiling.

  .venv/bin/python benchmarks/phy_snr_table.py [--snrs -2,0,2,4,6,8,10,15,20] [--json]
"""
import argparse
import json
import os
import platform

import numpy as np
from gnuradio.kbsemcom.core import datasets, extractors, pipeline, protocols
from gnuradio.kbsemcom.core.codec import retrieval_accuracy
from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.phy.simulate import MULTIPATH, phy_loopback


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--extractor", default="efficientnet-lite0")
    ap.add_argument("--cbr", default="1/48")
    ap.add_argument("--images", type=int, default=200, help="images sent per SNR")
    ap.add_argument("--kb-per-class", type=int, default=100)
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--snrs", default="-2,0,2,4,6,8,10,15,20",
                    help="per-sample SNRs (dB) at the channel model")
    ap.add_argument("--cfo", type=float, default=0.01, help="CFO, cycles/sample (0.64 carrier)")
    ap.add_argument("--sro-ppm", type=float, default=20.0)
    ap.add_argument("--flat", action="store_true", help="no multipath (AWGN + CFO + SRO)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    ext = extractors.load_extractor(args.extractor)
    ds = datasets.open_dataset(args.dataset)
    per_class = max(1, -(-args.images // len(ds.class_names)))
    split = protocols.split_dataset(ds, per_class, args.kb_per_class, args.train_per_class,
                                    args.val_per_class)
    kb = pipeline.build_kb(ext, split.kb, ds.class_names)
    codec, codec_path, _ = pipeline.prepare_codec(ext, split, args.cbr, "awgn",
                                                  args.seed, args.epochs, lr=1e-3)
    feats, kept = extract_features(ext, split.sent[:args.images])
    labels = np.array([it.label for it in kept])
    kb_feats, kb_labels = kb.features(), np.array([e["label"] for e in kb.entries])
    ceiling = retrieval_accuracy(feats, labels, kb_feats, kb_labels)
    symbols = codec.encode(feats)
    taps = (1.0,) if args.flat else MULTIPATH
    rows = []
    for i, snr in enumerate(float(s) for s in args.snrs.split(",")):
        got, stats = phy_loopback(symbols, snr, args.cfo, args.sro_ppm, taps,
                                  seed=args.seed * 1000 + i, timeout=300)
        best = {}
        for meta, sym in got:
            best.setdefault(meta["seq"], (meta, sym))
        seqs = sorted(best)
        correct = 0
        est = None
        sim = None
        if seqs:
            dec = codec.decode(np.stack([best[s][1] for s in seqs]))
            hits = kb.search(dec, 1)[1][:, 0]
            correct = int(np.sum(kb_labels[hits] == labels[seqs]))
            est = float(10 * np.log10(np.mean([10 ** (best[s][0]["snr_db"] / 10)
                                               for s in seqs])))
            sim = float(np.mean([retrieval_accuracy(
                codec.transmit(feats, "awgn", est, seed=s), labels, kb_feats, kb_labels)
                for s in range(3)]))
        rows.append({"snr_db": snr, "frames_found": len(seqs), "frames_sent": len(kept),
                     "false_or_bad_headers": stats["bad_header"],
                     "post_eq_snr_db": None if est is None else round(est, 2),
                     "accuracy": correct / len(kept),
                     "accuracy_of_received": correct / len(seqs) if seqs else None,
                     "codec_awgn_at_post_eq_snr": sim})
    info = {"dataset": ds.name, "extractor": ext.name, "cbr": codec.config.to_dict()["cbr"],
            "n_symbols": codec.n_symbols, "codec": str(codec_path), "seed": args.seed,
            "images": len(kept), "kb": len(kb), "ceiling": ceiling, "cfo": args.cfo,
            "sro_ppm": args.sro_ppm, "multipath": list(map(str, taps)),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print(f"OFDM PHY vs SNR: {info['dataset']}, {info['extractor']}, CBR {info['cbr']} "
          f"({info['n_symbols']} symbols), {info['images']} images, KB {info['kb']}, seed "
          f"{args.seed}, CFO {args.cfo} cyc/sample, SRO {args.sro_ppm} ppm, "
          f"{'flat' if args.flat else '3-path'} channel; {info['machine']}")
    print(f"noiseless retrieval ceiling {ceiling:.1%}, chance {1 / len(ds.class_names):.1%}")
    print("| SNR/sample (dB) | frames found | post-EQ SNR (dB) | accuracy (lost = wrong) | "
          "accuracy of received | codec AWGN at post-EQ SNR |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        f = (lambda v, p: "-" if v is None else p.format(v))
        print(f"| {r['snr_db']:g} | {r['frames_found']}/{r['frames_sent']} | "
              f"{f(r['post_eq_snr_db'], '{:.1f}')} | {r['accuracy']:.1%} | "
              f"{f(r['accuracy_of_received'], '{:.1%}')} | "
              f"{f(r['codec_awgn_at_post_eq_snr'], '{:.1%}')} |")


if __name__ == "__main__":
    main()
