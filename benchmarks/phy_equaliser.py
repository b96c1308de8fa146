#!/usr/bin/env python3
"""The robust PHY's equaliser variants on the same received frames: semantic accuracy against
the same codec over AWGN at the SNR each variant reports.

Images of a data set are embedded and encoded by the demo's codec (as phy_snr_table.py),
framed by phy.robust.build_frame with 500-sample gaps, passed through GNU Radio's
``channels.channel_model`` (AWGN at the per-sample SNR, CFO, sampling-rate offset, the 3-path
profile simulate.MULTIPATH unless ``--flat``); the C++ robust_detector finds the starts
(when built; else numpy's Detector), and numpy's Demodulator equalises each frame once per
variant (phy/robust.py, ``Demodulator._equalise``):

- ``unbiased`` (the receiver's default): MMSE divided by its mean gain fitted on the header;
- ``mmse``: H* Y / (|H|^2 + sigma^2), shrunk by |H|^2 / (|H|^2 + sigma^2);
- ``zf``: Y / H;
- ``scalar``: MMSE divided by the mean MMSE gain computed from H and sigma^2.

Per variant: frames decoded, median reported SNR (1 / MSE on the known header, for
``unbiased`` moved to the payload by the tracked channel (``snr_db``); for ``mmse``
that is 1 + SNR, so its AWGN reference uses 10 log10(10^(snr/10) - 1)), the payload's SNR
against what was sent (1 / mean |z - x|^2), its gain on what was sent (Re <x, z> / |x|^2),
the accuracy of the received images and the codec over AWGN at the reported SNR (mean of
``--awgn-seeds`` seeds), and the unit-power rescale of the MMSE output as a diagnostic.

  .venv/bin/python benchmarks/phy_equaliser.py [--images 500] [--snrs=-9,-6,-3,0,10] [--json]
"""
import argparse
import json
import os
import platform

import numpy as np
import pmt
from gnuradio import blocks, channels, gr
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.ofdm_rx import cpp_detector
from gnuradio.kbsemcom.phy.simulate import MULTIPATH
from phy_snr_table import semantic_link  # benchmarks/: the same sent images, KB and codec

GAP = 500


def through_channel(symbols, snr, cfo, sro_ppm, taps, seed):
    """The frames (seq = row) back to back through channel_model: see ``frames_through``."""
    taps = np.asarray(taps, complex) / np.linalg.norm(taps)
    chan = channels.channel_model(noise_voltage=conventions.gnuradio_noise_voltage(snr),
                                  frequency_offset=cfo, epsilon=1.0 + sro_ppm * 1e-6,
                                  taps=list(taps), noise_seed=int(seed) + 1)
    return frames_through(chan, symbols)


def frames_through(chan, symbols):
    """The robust frames of ``symbols`` (seq = row) back to back with GAP zeros between,
    through the channel block ``chan``; returns (received samples, detected starts
    [(start, cfo_bin or None)]) from the C++ detector, or numpy's without the module."""
    p = robust.RobustParams()
    gap = np.zeros(GAP, np.complex64)
    parts = [gap]
    for seq, pay in enumerate(symbols):
        parts += [robust.build_frame(p, pay, seq, seq), gap]
    x = np.concatenate(parts + [np.zeros(8000, np.complex64)])
    tb = gr.top_block()
    src = blocks.vector_source_c(x, False)
    sink = blocks.vector_sink_c()
    tb.connect(src, chan, sink)
    det = cpp_detector(robust.Detector(p))
    if det is not None:
        marks = blocks.vector_sink_b()
        tb.connect(chan, det, marks)
    tb.run()
    y = np.asarray(sink.data(), np.complex64)
    if det is None:
        ref = robust.Detector(p)
        return y, [(t, None) for t, _ in ref.scan(y, 0, len(y) - ref.n - robust.SEG)]
    starts = sorted((t.offset - det.delay(), pmt.to_python(t.value)[1]) for t in marks.tags()
                    if pmt.symbol_to_string(t.key) == "robust_sof")
    return y, starts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--extractor", default="efficientnet-lite0")
    ap.add_argument("--cbr", default="1/48")
    ap.add_argument("--images", type=int, default=200, help="images (frames) per SNR")
    ap.add_argument("--kb-per-class", type=int, default=100)
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--val-per-class", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--snrs", default="-9,-6,-3,0,10", help="per-sample SNRs (dB)")
    ap.add_argument("--cfo", type=float, default=0.03125, help="CFO, cycles/sample")
    ap.add_argument("--sro-ppm", type=float, default=20.0)
    ap.add_argument("--flat", action="store_true", help="no static multipath")
    ap.add_argument("--awgn-seeds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args()

    link = semantic_link(args)
    ext, ds, kb, codec, codec_path = link.ext, link.ds, link.kb, link.codec, link.codec_path
    feats, kept, labels, kb_labels = link.feats, link.kept, link.labels, link.kb_labels
    raw_ref, symbols = link.raw_ref, link.symbols
    taps = (1.0,) if args.flat else MULTIPATH
    p = robust.RobustParams()
    demods = {v: robust.Demodulator(p, equaliser=v) for v in robust.Demodulator.EQUALISERS}

    def accuracy(rx, seqs):
        return float(np.mean(kb_labels[kb.search(codec.decode(rx), 1)[1][:, 0]]
                             == labels[seqs]))

    rows = []
    for i, snr in enumerate(float(s) for s in args.snrs.split(",")):
        y, starts = through_channel(symbols, snr, args.cfo, args.sro_ppm, taps,
                                    args.seed * 1000 + i)
        got = {v: {} for v in demods}
        for t, cfo_bin in starts:
            for v, dm in demods.items():
                status, res = dm.demodulate(y, t, cfo_bin=cfo_bin)
                if status == "ok" and 0 <= res["seq"] < len(symbols):
                    got[v][res["seq"]] = res
        variants = [(v, v) for v in demods] + [("mmse, unit power (diagnostic)", "mmse")]
        for name, v in variants:
            seqs = sorted(got[v])
            row = {"snr_db": snr, "equaliser": name, "frames_sent": len(symbols),
                   "frames_found": len(seqs)}
            if seqs:
                rx = np.stack([got[v][s]["symbols"] for s in seqs])
                if name != v:
                    rx = rx / np.sqrt(np.mean(np.abs(rx) ** 2, axis=1, keepdims=True))
                x = symbols[seqs]
                rep = np.array([got[v][s]["snr_db"] for s in seqs])
                eq = 10 * np.log10(np.maximum(10 ** (rep / 10) - 1, 1e-3)) \
                    if v == "mmse" else rep
                ref = []
                for k in range(args.awgn_seeds):
                    dec = np.stack([codec.transmit(feats[s:s + 1], "awgn", eq[j],
                                                   seed=1000 * k + s)[0]
                                    for j, s in enumerate(seqs)])
                    ref.append(np.mean(kb_labels[kb.search(dec, 1)[1][:, 0]] == labels[seqs]))
                acc = accuracy(rx, seqs)
                row.update(
                    reported_snr_db=round(float(np.median(rep)), 2),
                    awgn_snr_db=round(float(np.median(eq)), 2),
                    payload_snr_db=round(float(-10 * np.log10(np.mean(np.abs(rx - x) ** 2))), 2),
                    gain=round(float(np.mean(np.sum(np.real(np.conj(x) * rx), 1)
                                             / np.sum(np.abs(x) ** 2, 1))), 3),
                    accuracy_of_received=acc, codec_awgn_at_reported_snr=float(np.mean(ref)),
                    difference=acc - float(np.mean(ref)))
            rows.append(row)
        if not args.json:
            print(f"  SNR {snr:g} dB: {len(got['unbiased'])}/{len(symbols)} frames", flush=True)
    info = {"dataset": ds.name, "extractor": ext.name, "cbr": codec.config.to_dict()["cbr"],
            "n_symbols": codec.n_symbols, "codec": str(codec_path), "seed": args.seed,
            "images": len(kept), "kb": len(kb), "raw_1nn_reference": raw_ref, "cfo": args.cfo,
            "sro_ppm": args.sro_ppm, "multipath": list(map(str, taps)),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print(f"Robust PHY equalisers: {info['dataset']}, {info['extractor']}, CBR {info['cbr']} "
          f"({info['n_symbols']} symbols), {info['images']} images, KB {info['kb']}, seed "
          f"{args.seed}, CFO {args.cfo:g} cyc/sample, SRO {args.sro_ppm:g} ppm, "
          f"{'flat' if args.flat else '3-path'} channel; {info['machine']}")
    print(f"raw 1-NN reference (noiseless raw features) {raw_ref:.1%}")
    print("| SNR/sample (dB) | equaliser | frames | reported SNR (dB) | AWGN-equivalent SNR "
          "(dB) | payload SNR vs sent (dB) | gain on sent | accuracy of received | codec AWGN "
          "at reported SNR | difference (points) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "gain" not in r:
            print(f"| {r['snr_db']:g} | {r['equaliser']} | 0/{r['frames_sent']} | - | - | - | "
                  "- | - | - | - |")
            continue
        print(f"| {r['snr_db']:g} | {r['equaliser']} | {r['frames_found']}/{r['frames_sent']} | "
              f"{r['reported_snr_db']:.1f} | {r['awgn_snr_db']:.1f} | {r['payload_snr_db']:.1f} | "
              f"{r['gain']:.2f} | {r['accuracy_of_received']:.1%} | "
              f"{r['codec_awgn_at_reported_snr']:.1%} | {100 * r['difference']:+.1f} |")


if __name__ == "__main__":
    main()
