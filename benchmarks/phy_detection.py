#!/usr/bin/env python3
"""Frames found and headers decoded against SNR, per PHY mode, and false alarms on noise.

Frames of random unit-power symbols (64 = CBR 1/48) go through ofdm_tx -> GNU Radio's
channels.channel_model (AWGN at the per-sample SNR, CFO, sampling-rate offset, the 3-path
profile simulate.MULTIPATH) -> ofdm_rx, in each mode. A frame counts when its header passed
the CRC (the receiver published it). Also: the payload's SNR measured against what was sent
(1 / mean squared error of the equaliser output as the decoder gets it: ZF in short mode,
unbiased MMSE in robust mode; and the unbiased SNR of z = a x + e, a fitted per frame,
comparable across modes), each mode's overhead (preamble + header + guard
samples per image) and images/s per MHz, and the robust detector's false alarms on noise
alone (complex Gaussian noise, ``--noise-seconds`` at 1 MS/s, through the same detector
code).

  .venv/bin/python benchmarks/phy_detection.py [--frames 100] [--snrs=-9,-6,-3,0,4] [--json]
"""
import argparse
import json
import os
import platform
import time

import numpy as np
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.framing import OfdmParams
from gnuradio.kbsemcom.phy.simulate import MULTIPATH, phy_loopback


def false_alarms(seconds, rate=1e6, block=1 << 16, seed=0):
    """Robust detector on complex Gaussian noise: (detections, samples, the largest
    statistic, seconds of CPU per second of signal). The receiver's detector: the C++ block
    when it is built (GNU Radio's noise source), else numpy's."""
    from gnuradio import analog, blocks, gr
    from gnuradio.kbsemcom.phy.ofdm_rx import cpp_detector
    cpp = cpp_detector(robust.Detector(robust.RobustParams()))
    if cpp is not None:
        total = int(seconds * rate)
        tb = gr.top_block()
        src = analog.noise_source_c(analog.GR_GAUSSIAN, 1.0, seed + 1)
        head, sink = blocks.head(gr.sizeof_gr_complex, total), blocks.null_sink(1)
        tb.connect(src, head, cpp, sink)
        t0 = time.process_time()
        tb.run()
        return cpp.detections(), total, cpp.max_statistic(), \
            (time.process_time() - t0) / seconds
    det = robust.Detector(robust.RobustParams())
    rng = np.random.default_rng(seed)
    total, hits, top = int(seconds * rate), 0, 0.0
    t0 = time.process_time()
    done = 0
    while done < total:
        n = min(block, total - done)
        y = (rng.standard_normal(n + det.n) + 1j * rng.standard_normal(n + det.n)).astype(
            np.complex64)
        _, coh, _ = det.stats(y, 0, n)
        if np.any(~np.isnan(coh)):
            top = max(top, float(np.nanmax(coh)))
        hits += len(det.scan(y, 0, n))
        done += n
    return hits, total, top, (time.process_time() - t0) / seconds


def _unbiased(x, z):
    """Linear SNR of z = a x + e: |a|^2 mean|x|^2 / mean|e|^2."""
    a = np.vdot(x, z) / np.vdot(x, x)
    return abs(a) ** 2 * np.mean(np.abs(x) ** 2) / np.mean(np.abs(z - a * x) ** 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="short,robust")
    ap.add_argument("--snrs", default="-9,-6,-3,0,4")
    ap.add_argument("--frames", type=int, default=100, help="frames per point")
    ap.add_argument("--symbols", type=int, default=64, help="payload symbols (64 = CBR 1/48)")
    ap.add_argument("--cfo", type=float, default=2 / 64, help="cycles/sample (2 carriers)")
    ap.add_argument("--sro-ppm", type=float, default=20.0)
    ap.add_argument("--noise-seconds", type=float, default=60.0,
                    help="noise-only seconds at 1 MS/s for the false-alarm count (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    sent = []
    for _ in range(args.frames):
        s = rng.normal(size=args.symbols) + 1j * rng.normal(size=args.symbols)
        sent.append((s / np.sqrt(np.mean(np.abs(s) ** 2))).astype(np.complex64))
    rows = []
    for mode in args.modes.split(","):
        p = robust.RobustParams() if mode == "robust" else OfdmParams()
        frame = p.frame_len(args.symbols)
        for i, snr in enumerate(float(s) for s in args.snrs.split(",")):
            t0 = time.monotonic()
            got, stats = phy_loopback(sent, snr, args.cfo, args.sro_ppm, MULTIPATH,
                                      seed=args.seed * 1000 + i, timeout=600, mode=mode)
            seqs = {m["seq"] for m, _ in got if not m.get("lost")}
            err = [np.mean(np.abs(s - sent[m["seq"]]) ** 2) for m, s in got
                   if not m.get("lost")]
            # unbiased: z = a x + e with a fitted per frame (MMSE shrinks, ZF does not)
            ub = [_unbiased(sent[m["seq"]], s) for m, s in got if not m.get("lost")]
            rows.append({
                "mode": mode, "snr_db": snr, "found": len(seqs), "sent": len(sent),
                "triggers": stats["triggers"], "bad_header": stats["bad_header"],
                "payload_snr_db": round(float(10 * np.log10(1 / np.mean(err))), 2)
                if err else None,
                "payload_snr_unbiased_db": round(float(10 * np.log10(np.mean(ub))), 2)
                if ub else None,
                "est_snr_db": round(float(10 * np.log10(np.mean(
                    [10 ** (m["snr_db"] / 10) for m, _ in got]))), 2) if got else None,
                "overhead": frame - p.payload_symbols(args.symbols) * p.sym_len,
                "frame_len": frame, "images_per_s_per_mhz": round(1e6 / frame, 1),
                "seconds": round(time.monotonic() - t0, 1)})
    fa = None
    if args.noise_seconds > 0:
        hits, total, top, cpu = false_alarms(args.noise_seconds, seed=args.seed + 99)
        fa = {"detections": hits, "samples": total, "max_statistic": round(top, 1),
              "threshold": robust.THRESHOLD, "per_minute_at_1msps": hits * 60e6 / total,
              "cpu_s_per_s_at_1msps": round(cpu, 2)}
    info = {"frames": args.frames, "symbols": args.symbols, "cfo": args.cfo,
            "sro_ppm": args.sro_ppm, "multipath": list(map(str, MULTIPATH)),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"}
    if args.json:
        print(json.dumps({"info": info, "rows": rows, "false_alarms": fa}))
        return
    print(f"PHY modes: {args.frames} frames of {args.symbols} symbols per point, CFO "
          f"{args.cfo:g} cycles/sample, SRO {args.sro_ppm:g} ppm, 3-path; {info['machine']}")
    print("| mode | SNR/sample (dB) | frames found + header | triggers / bad headers | payload "
          "1/MSE (dB) | payload SNR unbiased (dB) | overhead (samples/image) | images/s per "
          "MHz |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ps = "-" if r["payload_snr_db"] is None else f"{r['payload_snr_db']:.1f}"
        pu = "-" if r["payload_snr_unbiased_db"] is None else \
            f"{r['payload_snr_unbiased_db']:.1f}"
        print(f"| {r['mode']} | {r['snr_db']:g} | {r['found']}/{r['sent']} | "
              f"{r['triggers']} / {r['bad_header']} | {ps} | {pu} | {r['overhead']} | "
              f"{r['images_per_s_per_mhz']} |")
    if fa:
        print(f"robust detector on noise alone: {fa['detections']} detections in "
              f"{fa['samples']:,} samples ({fa['per_minute_at_1msps']:.2f} per minute at "
              f"1 MS/s), largest statistic {fa['max_statistic']} (threshold "
              f"{fa['threshold']}); detector CPU {fa['cpu_s_per_s_at_1msps']} s per s at "
              "1 MS/s")


if __name__ == "__main__":
    main()
