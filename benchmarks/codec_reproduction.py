#!/usr/bin/env python3
"""Compare a `kbsemcom evaluate` run with the reference measurements of the paper's recipe
(NOTES.md: an independent implementation, EfficientNet-Lite0 features, mean of 3 seeds), and
show how far each codec is from the raw 1-NN reference at SNR >= -4 dB.

    .venv/bin/python benchmarks/codec_reproduction.py runs/full/cifar10/results.jsonl \
        runs/full/caltech100/results.jsonl

Prints Markdown tables (ours vs reference, and the gap to the raw 1-NN reference per codec/CBR/channel).
"""
import argparse
import json

from gnuradio.kbsemcom.core.report import mean_over_seeds

# (dataset, codec, cbr, snr_db) -> accuracy in %; codec None = the raw 1-NN reference, 'raw' = no codec
REFERENCE = {
    ("cifar10", None, None, None): 63.2, ("caltech100", None, None, None): 86.6,
    ("cifar10", "raw", None, -7): 56.1, ("cifar10", "raw", None, 0): 61.7,
    ("cifar10", "raw", None, 10): 62.9,
    ("caltech100", "raw", None, -7): 82.3, ("caltech100", "raw", None, 0): 85.9,
    ("caltech100", "raw", None, 10): 86.4,
}
for ds, rows in {"cifar10": {"1/48": (46.0, 53.6, 58.6, 62.0), "1/12": (55.9, None, 62.1, 63.1),
                             "1/3": (61.8, None, 63.3, 63.5)},
                 "caltech100": {"1/48": (53.7, 66.4, 73.1, 77.2),
                                "1/12": (76.3, None, 81.3, 82.9),
                                "1/3": (83.6, None, 85.7, 85.5)}}.items():
    for cbr, vals in rows.items():
        for snr, v in zip((-7, -4, 0, 10), vals):
            if v is not None:
                REFERENCE[(ds, "kbsc", cbr, snr)] = v


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("results", nargs="+", help="results.jsonl files")
    args = p.parse_args()
    records = []
    for path in args.results:
        with open(path) as fh:
            records += [json.loads(line) for line in fh if line.strip()]
    means = mean_over_seeds(records)
    print("| data set | what | CBR | SNR dB | reference % | ours % | difference |")
    print("|---|---|---|---|---|---|---|")
    for (ds, codec, cbr, snr), ref in REFERENCE.items():
        if codec is None:
            got = [r["raw_1nn_reference"] for r in means if r["dataset"] == ds]
        else:
            got = [r["accuracy"] for r in means if r["dataset"] == ds and r["codec"] == codec
                   and (cbr is None or r["cbr"] == cbr) and r["channel"] == "awgn"
                   and r["train_channel"] in ("awgn", None) and r["snr_db"] == snr]
        if not got:
            continue
        ours = 100 * got[0]
        print(f"| {ds} | {codec or 'raw 1-NN reference'} | {cbr or '-'} | {'' if snr is None else snr} | "
              f"{ref:.1f} | {ours:.1f} | {ours - ref:+.1f} |")
    print("\nWorst gap to the raw 1-NN reference over SNR >= -4 dB (points; negative = below it):\n")
    print("| data set | codec | CBR | channel | worst gap | at SNR dB |")
    print("|---|---|---|---|---|---|")
    groups = {}
    for r in means:
        if r["snr_db"] is not None and r["snr_db"] >= -4 and r["train_channel"] in (
                r["channel"], None):
            groups.setdefault((r["dataset"], r["codec"], r["complex_symbols"], r["cbr"],
                               r["channel"]), []).append(r)
    for (ds, codec, _, cbr, ch), rs in sorted(groups.items()):
        worst = min(rs, key=lambda r: r["accuracy"] - r["raw_1nn_reference"])
        print(f"| {ds} | {codec} | {cbr} | {ch} | "
              f"{100 * (worst['accuracy'] - worst['raw_1nn_reference']):+.1f} | {worst['snr_db']:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
