#!/usr/bin/env python3
"""Air time per image of each PHY mode: preamble, header and guard samples (the overhead),
payload samples, and images/s per MHz, for every CBR of the paper.

Every number is counted on a frame actually built by the mode's transmitter code
(framing.build_frame / robust.build_frame) and split by the mode's layout parameters. At
complex baseband one sample per second per Hz: images/s per MHz = 10^6 / frame samples, the
rate at 1 MS/s with frames back to back (a channel's or an extractor's limits not counted).

  .venv/bin/python benchmarks/phy_overhead.py [--cbrs 1/48,1/12,1/3] [--json]
"""
import argparse
import json

import numpy as np
from gnuradio.kbsemcom.core import conventions
from gnuradio.kbsemcom.phy import framing, robust


def layout(mode, n_symbols):
    """Samples of one frame carrying n_symbols: preamble, header, payload, guard, total."""
    if mode == "robust":
        p = robust.RobustParams()
        frame = robust.build_frame(p, np.ones(n_symbols, np.complex64), 0, 0)
        preamble, header = p.preamble_len, p.header_symbols * p.sym_len
    else:
        p = framing.OfdmParams()
        frame = framing.build_frame(p, np.ones(n_symbols, np.complex64), 0, 0)
        preamble, header = p.preamble_symbols * p.sym_len, p.header_symbols * p.sym_len
    payload = p.payload_symbols(n_symbols) * p.sym_len
    if len(frame) != preamble + header + payload + p.guard_len:  # the layout is the frame
        raise RuntimeError(f"{mode}: frame of {len(frame)} samples does not match its layout")
    return {"mode": mode, "symbols": n_symbols, "preamble": preamble, "header": header,
            "guard": p.guard_len, "payload": payload,
            "overhead": preamble + header + p.guard_len, "frame": len(frame)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="short,robust")
    ap.add_argument("--cbrs", default=",".join(conventions.PAPER_CBRS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for mode in args.modes.split(","):
        for cbr in args.cbrs.split(","):
            r = layout(mode, conventions.complex_symbols_for_cbr(cbr))
            r.update(cbr=conventions.format_cbr(cbr),
                     overhead_share=round(r["overhead"] / r["frame"], 3),
                     images_per_s_per_mhz=round(1e6 / r["frame"], 1),
                     ms_per_image_at_1msps=round(r["frame"] / 1e3, 3))
            rows.append(r)
    if args.json:
        print(json.dumps(rows))
        return
    print("PHY overhead per image (samples; FFT 64, CP 16; frames built by the TX code)")
    print("| mode | CBR | symbols | preamble | header | guard | overhead | payload | frame | "
          "overhead share | images/s per MHz |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['cbr']} | {r['symbols']} | {r['preamble']} | "
              f"{r['header']} | {r['guard']} | {r['overhead']} | {r['payload']} | "
              f"{r['frame']} | {r['overhead_share']:.0%} | {r['images_per_s_per_mhz']} |")


if __name__ == "__main__":
    main()
