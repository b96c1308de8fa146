#!/usr/bin/env python3
"""Microseconds per frame in the C++ robust demodulator (lib/robust_demod.cc), its two
calls apart: header() (CFO, channel least squares, header grid and phase fit, Viterbi)
and payload() (the frame-wide phase/CFO/SRO fit, channel tracking, MMSE). One robust
frame (3-path multipath, CFO 0.02 cycles/sample, AWGN at --snr dB), each call repeated
--loops times in a row, --repeats rounds; CPU time of this process (time.process_time),
best and median round. The deframer thread's whole budget at 10 MS/s is one frame's
duration (3,904 samples = 390 us for 64 symbols); benchmarks/phy_throughput.py measures
the receiver around it.

  .venv/bin/python benchmarks/phy_demod_loop.py [--symbols 64] [--loops 300]
      [--repeats 5] [--json]
"""
import argparse
import json
import os
import platform
import time

import numpy as np
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.ofdm_rx import cpp_demod
from gnuradio.kbsemcom.phy.simulate import MULTIPATH


def frame(n_sym, snr_db, seed):
    """One robust frame with 300 samples of silence either side, through MULTIPATH, a CFO
    and AWGN; returns (samples, params)."""
    p = robust.RobustParams()
    rng = np.random.default_rng(seed)
    pay = rng.normal(size=n_sym) + 1j * rng.normal(size=n_sym)
    pay = (pay / np.sqrt(np.mean(np.abs(pay) ** 2))).astype(np.complex64)
    x = np.concatenate([np.zeros(300), robust.build_frame(p, pay, 9, 77), np.zeros(300)])
    taps = np.asarray(MULTIPATH) / np.linalg.norm(MULTIPATH)
    x = np.convolve(x, taps)[:len(x)] * np.exp(2j * np.pi * 0.02 * np.arange(len(x)))
    std = conventions.noise_std_per_real(snr_db)
    y = x + std * (rng.normal(size=len(x)) + 1j * rng.normal(size=len(x)))
    return y.astype(np.complex64), p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--symbols", type=int, default=64, help="payload symbols per frame")
    ap.add_argument("--snr", type=float, default=15.0, help="per-sample SNR (dB)")
    ap.add_argument("--loops", type=int, default=300, help="calls per round")
    ap.add_argument("--repeats", type=int, default=5, help="rounds (best and median kept)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args()
    if args.symbols < 1 or args.loops < 1 or args.repeats < 1:
        ap.error("--symbols, --loops and --repeats must be at least 1")
    y, p = frame(args.symbols, args.snr, args.seed)
    d = robust.Demodulator(p)
    try:
        d.cpp = cpp_demod(d)
    except ImportError as e:
        raise SystemExit(f"the C++ module is not built ({e}): run scripts/setup.sh")
    _, coh, bins = d.det.stats(y, 290, 311)
    t0 = 290 + int(np.nanargmax(coh))
    cfo_bin = int(bins[t0 - 290])
    pmap = p.payload_map(args.symbols)
    if parse_ok(d, y, t0, cfo_bin) is None:
        raise SystemExit(f"the frame's header did not decode at {args.snr} dB: raise --snr")
    times = {"header": [], "payload": []}
    for _ in range(args.repeats):
        t = time.process_time()
        for _ in range(args.loops):
            d.cpp.header(y, t0, cfo_bin)
        times["header"].append((time.process_time() - t) / args.loops * 1e6)
        t = time.process_time()
        for _ in range(args.loops):
            d.cpp.payload(y, t0, args.symbols, pmap)
        times["payload"].append((time.process_time() - t) / args.loops * 1e6)
    frame_us = p.frame_len(args.symbols) / 10.0  # at 10 MS/s
    info = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
            "load_average": os.getloadavg()[0], "symbols": args.symbols, "snr_db": args.snr,
            "loops": args.loops, "repeats": args.repeats, "seed": args.seed,
            "frame_us_at_10msps": frame_us}
    rows = {k: {"best_us": min(v), "median_us": float(np.median(v))} for k, v in times.items()}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print(f"C++ robust demodulator per frame: {info['machine']}, {args.symbols} symbols "
          f"({p.frame_len(args.symbols)} samples = {frame_us:.0f} us at 10 MS/s), "
          f"{args.snr:g} dB, seed {args.seed}, {args.repeats} x {args.loops} calls, "
          f"load average {info['load_average']:.2f}")
    print(f"{'call':10s} {'best us':>8s} {'median us':>10s}")
    for k, r in rows.items():
        print(f"{k:10s} {r['best_us']:8.1f} {r['median_us']:10.1f}")
    tot = rows["header"]["best_us"] + rows["payload"]["best_us"]
    print(f"{'both':10s} {tot:8.1f} {'':>10s}  (CPU time; best of the rounds)")


def parse_ok(d, y, t0, cfo_bin):
    """The header's fields if the C++ header() decodes this frame's header, else None."""
    bits = np.asarray(d.cpp.header(y, t0, cfo_bin)) ^ d._white
    return robust.parse_header_bits(bits)


if __name__ == "__main__":
    main()
