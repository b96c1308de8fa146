#!/usr/bin/env python3
"""The robust header's code: GNU Radio's gr-fec Viterbi against a float Viterbi, header frame
error rate against SNR.

Random 64-bit headers, coded by gr-fec's cc_encoder (robust.conv_encode), each coded bit
repeated over the header's 1,536 slots (robust.RobustParams' map), BPSK over AWGN at the
per-carrier SNR of a per-sample SNR (x 64/52; an ideal single-path channel, known exactly),
maximum-ratio combined, then decoded three ways: gr-fec's cc_decoder as the receiver runs it
(robust.viterbi: 8-bit soft symbols, end state 0), gr-fec's cc_decoder not told the end state
(end_state -1), and a float soft Viterbi written here (the decoder robust.py had before
gr-fec; tests/test_phy_fec.py uses it as the reference). The PHY's own figure (frames found
and headers decoded through the channel model) is benchmarks/phy_detection.py's.

  .venv/bin/python benchmarks/header_fec.py [--frames 2000] [--snrs=-15,-14,-13,-12,-10] [--json]
"""
import argparse
import json
import os
import platform

import numpy as np
from gnuradio.kbsemcom.phy import robust

TAPS0 = (robust.G1 >> np.arange(7)) & 1  # output bit = XOR_j tap[j] * input[i - j]
TAPS1 = (robust.G2 >> np.arange(7)) & 1


def reference_encode(bits):
    """The K=7 code with 6 zero tail bits as a binary convolution (independent of gr-fec)."""
    b = np.concatenate([np.asarray(bits, np.int64) & 1, np.zeros(6, np.int64)])
    out = np.empty(2 * len(b), np.uint8)
    out[0::2] = np.convolve(b, TAPS0)[:len(b)] & 1
    out[1::2] = np.convolve(b, TAPS1)[:len(b)] & 1
    return out


def reference_viterbi(llr):
    """Float soft Viterbi of reference_encode (llr > 0: coded bit 0), start and end state 0."""
    llr = np.asarray(llr, float).reshape(-1, 2)
    ns = np.arange(64)
    reg = (ns[:, None] << 1 | np.arange(2)[None, :]) & 0x7F  # [state, bit] -> register
    out0 = np.array([[bin(r & robust.G1).count("1") & 1 for r in row] for row in reg])
    out1 = np.array([[bin(r & robust.G2).count("1") & 1 for r in row] for row in reg])
    preds = np.stack([(ns >> 1), (ns >> 1) | 32])
    s0 = 1.0 - 2 * out0[preds, (ns & 1)[None, :]]
    s1 = 1.0 - 2 * out1[preds, (ns & 1)[None, :]]
    pm = np.full(64, -1e18)
    pm[0] = 0.0
    dec = np.zeros((len(llr), 64), np.uint8)
    for t, (l0, l1) in enumerate(llr):
        cand = pm[preds] + s0 * l0 + s1 * l1
        dec[t] = np.argmax(cand, axis=0)
        pm = cand[dec[t], ns]
    bits = np.zeros(len(llr), np.uint8)
    s = 0
    for t in range(len(llr) - 1, -1, -1):
        bits[t] = s & 1
        s = (s >> 1) | (int(dec[t, s]) << 5)
    return bits[:-6]


def _open_end_decoder():
    from gnuradio import fec
    return fec.cc_decoder.make(robust.HEADER_BITS, 7, 2, [robust.G1, robust.G2], 0, -1,
                               fec.CC_TERMINATED, False)


def error_rates(snr_db, frames, seed, open_end=False):
    """Header frame errors at a per-sample SNR: {"gr_fec", "float", ["gr_fec_open_end"]}."""
    p = robust.RobustParams()
    hmap = p.header_map()
    es = 10 ** (snr_db / 10) * 64 / 52
    rng = np.random.default_rng(seed)
    errs = {"gr_fec": 0, "float": 0}
    dec = None
    if open_end:
        dec, errs["gr_fec_open_end"] = _open_end_decoder(), 0
    for _ in range(frames):
        bits = rng.integers(0, 2, robust.HEADER_BITS).astype(np.uint8)
        y = 1.0 - 2.0 * robust.conv_encode(bits)[hmap]
        y = y + rng.normal(size=len(y)) / np.sqrt(2 * es)
        llr = np.zeros(p.coded_bits)
        np.add.at(llr, hmap, y)
        errs["gr_fec"] += int(np.any(robust.viterbi(llr) != bits))
        errs["float"] += int(np.any(reference_viterbi(llr) != bits))
        if dec is not None:
            soft, out = robust.soft_symbols(llr), np.zeros(len(bits), np.uint8)
            dec.generic_work(robust._capsule(soft), robust._capsule(out))
            errs["gr_fec_open_end"] += int(np.any(out != bits))
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=2000, help="headers per SNR")
    ap.add_argument("--snrs", default="-15,-14,-13,-12,-10", help="per-sample SNRs (dB)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from tqdm import tqdm
    rows = []
    for i, snr in enumerate(tqdm([float(s) for s in args.snrs.split(",")], desc="SNRs",
                                 disable=args.json)):
        e = error_rates(snr, args.frames, args.seed * 1000 + i, open_end=True)
        rows.append(dict(snr_db=snr, frames=args.frames, **e))
    info = {"frames": args.frames, "seed": args.seed, "soft_scale": robust.SOFT_SCALE,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"}
    if args.json:
        print(json.dumps({"info": info, "rows": rows}))
        return
    print(f"Header frame errors, {args.frames} headers per point, ideal channel, seed "
          f"{args.seed}; {info['machine']}")
    print("| SNR/sample (dB) | gr-fec (receiver) | float Viterbi | gr-fec, end state unknown |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['snr_db']:g} | {r['gr_fec']}/{r['frames']} | {r['float']}/{r['frames']} | "
              f"{r['gr_fec_open_end']}/{r['frames']} |")


if __name__ == "__main__":
    main()
