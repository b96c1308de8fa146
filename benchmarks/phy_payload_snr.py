#!/usr/bin/env python3
"""Per frame: the SNR the robust receiver reports against the payload's true SNR.

Random unit-power complex Gaussian payloads (``--symbols`` per frame) are framed by
phy.robust.build_frame with 500-sample gaps, passed through relay.channel_impairments (GNU
Radio's fading model, CFO, SRO, AWGN), found by the C++ detector (numpy's when not built) and
demodulated by numpy's Demodulator. The simulation knows the sent symbols x, so each frame's
true payload SNR is 1 / mean |z - x|^2 of its equalised payload z (and its gain g = Re <x, z> /
|x|^2, and g^2 / mean |z - g x|^2: the SNR a decoder meets if the frame's gain error is
counted, which 1 / mean |z - x|^2 barely does at low SNR). Prints per SNR: the mean and
standard deviation over frames of reported minus true (dB) for ``snr_db`` (the reported
SNR) and ``header_snr_db`` (measured on the header alone), the gain's mean and spread, the
mean SNR after each frame's gain and the frames found.

  .venv/bin/python benchmarks/phy_payload_snr.py [--frames 200] [--snrs=-6,-3,0]
      [--fading rayleigh] [--doppler-hz 100] [--observations lmmse|ls] [--json]
"""
import argparse
import json
import os
import platform

import numpy as np
from gnuradio.kbsemcom.phy import robust
from gnuradio.kbsemcom.phy.relay import channel_impairments
from phy_equaliser import frames_through  # benchmarks/: the same frames and detection


def run_point(args, snr, seed):
    p = robust.RobustParams()
    rng = np.random.default_rng(seed)
    pays = ((rng.standard_normal((args.frames, args.symbols))
             + 1j * rng.standard_normal((args.frames, args.symbols))) / np.sqrt(2))
    multipath = "3path" if args.fading == "none" else "none"
    chan = channel_impairments(snr_db=snr, cfo=args.cfo, sro_ppm=args.sro_ppm,
                               multipath=multipath, fading=args.fading,
                               doppler_hz=args.doppler_hz, rician_k=args.rician_k,
                               samp_rate=1e6, selective=args.selective, seed=seed)
    y, starts = frames_through(chan, pays)
    dm = robust.Demodulator(p, observations=args.observations)
    got = {}
    for t, cfo_bin in starts:
        status, res = dm.demodulate(y, t, cfo_bin=cfo_bin)
        if status == "ok" and 0 <= res["seq"] < len(pays):
            got[res["seq"]] = res
    rows = []
    for s, res in sorted(got.items()):
        z, xs = res["symbols"], pays[s]
        g = float(np.sum(np.real(np.conj(xs) * z)) / np.sum(np.abs(xs) ** 2))
        rows.append(dict(seq=s, true=float(-10 * np.log10(np.mean(np.abs(z - xs) ** 2))),
                         gain=g, scaled=float(10 * np.log10(
                             max(g, 1e-3) ** 2 / np.mean(np.abs(z - g * xs) ** 2))),
                         **{k: float(res[k]) for k in ("snr_db", "header_snr_db",
                                                       "payload_pilot_snr_db") if k in res}))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per SNR")
    ap.add_argument("--symbols", type=int, default=64, help="payload symbols per frame")
    ap.add_argument("--snrs", default="-6,-3,0", help="per-sample SNRs (dB)")
    ap.add_argument("--fading", default="rayleigh", choices=["none", "rayleigh", "rician"],
                    help="none: the static 3-path channel")
    ap.add_argument("--doppler-hz", type=float, default=100.0, help="at 1 MS/s")
    ap.add_argument("--rician-k", type=float, default=4.0)
    ap.add_argument("--selective", action="store_true")
    ap.add_argument("--cfo", type=float, default=0.03125, help="cycles/sample")
    ap.add_argument("--sro-ppm", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--observations", default="lmmse", choices=["lmmse", "ls"],
                    help="the channel tracker's header observations (ls: the former receiver)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args()
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    out = []
    for i, snr in enumerate(float(s) for s in args.snrs.split(",")):
        rows = run_point(args, snr, args.seed * 1000 + i)
        summary = {"snr_db": snr, "frames_sent": args.frames, "frames_found": len(rows)}
        if rows:
            true = np.array([r["true"] for r in rows])
            summary["true_payload_snr_db"] = float(np.mean(true))
            summary["gain"] = float(np.mean([r["gain"] for r in rows]))
            summary["gain_std"] = float(np.std([r["gain"] for r in rows]))
            summary["scaled_payload_snr_db"] = float(np.mean([r["scaled"] for r in rows]))
            for k in ("snr_db", "header_snr_db", "payload_pilot_snr_db"):
                if k in rows[0]:
                    d = np.array([r[k] for r in rows]) - true
                    summary[f"{k}_minus_true"] = (float(np.mean(d)), float(np.std(d)))
        out.append(dict(summary, frames=rows))
    if args.json:
        print(json.dumps({"args": vars(args), "machine": machine, "points": out}))
        return
    shape = "static 3-path" if args.fading == "none" else (
        f"{'selective' if args.selective else 'flat'} {args.fading}"
        f"{f' K={args.rician_k:g}' if args.fading == 'rician' else ''}, Doppler "
        f"{args.doppler_hz:g} Hz at 1 MS/s")
    print(f"Reported vs true payload SNR: {shape}, {args.frames} frames of {args.symbols} "
          f"Gaussian symbols, CFO {args.cfo:g}, SRO {args.sro_ppm:g} ppm, seed {args.seed}, "
          f"{args.observations} channel observations; {machine}")
    print("| SNR/sample (dB) | frames | true payload SNR (dB) | gain on sent (mean / std) | "
          "SNR after the frame's gain (dB) | snr_db - true (dB, mean / std) | "
          "header_snr_db - true | payload_pilot_snr_db - true |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in out:
        if "gain" not in s:
            print(f"| {s['snr_db']:g} | 0/{s['frames_sent']} | - | - | - | - | - | - |")
            continue
        cell = (lambda k: "{:+.2f} / {:.2f}".format(*s[k]) if k in s else "-")
        print(f"| {s['snr_db']:g} | {s['frames_found']}/{s['frames_sent']} | "
              f"{s['true_payload_snr_db']:.2f} | {s['gain']:.3f} / {s['gain_std']:.3f} | "
              f"{s['scaled_payload_snr_db']:.2f} | {cell('snr_db_minus_true')} | "
              f"{cell('header_snr_db_minus_true')} | {cell('payload_pilot_snr_db_minus_true')} |")


if __name__ == "__main__":
    main()
