#!/usr/bin/env python3
"""The baselines table of docs/baselines.md: semantic accuracy on CIFAR-10 at CBR 1/48, 1/12,
1/3 and SNR -5, 0, 5, 10 dB over AWGN and Rayleigh for the semantic codec, the raw feature,
the digital chain (HEVC-intra + LDPC 1/4 + QPSK) and its ideal-code bound.

It is one `kbsemcom evaluate` run (same engine, KB, channels and metric as every codec);
options after the script name are passed on and override the defaults below, e.g.

    .venv/bin/python benchmarks/baselines_table.py                      # the docs table
    .venv/bin/python benchmarks/baselines_table.py --sent-per-class 50  # more images
    .venv/bin/python benchmarks/baselines_table.py \
        --codecs kbsc,kbsc-ret,digital,digital-16qam,digital-bound

Prints the Markdown table, the command, data set, extractor, seeds and machine; writes
results.jsonl / .csv / .md and plots to --out (default runs/baselines/cifar10).
"""
import sys

from gnuradio.kbsemcom.apps import cli

DEFAULTS = {
    "--dataset": "cifar10",
    "--extractor": "efficientnet-lite0",
    "--codecs": "kbsc-kb,digital,digital-bound",
    "--cbrs": "1/48,1/12,1/3",
    "--snrs": "-5,0,5,10",
    "--channels": "awgn,rayleigh",
    "--seeds": "0",
    # a subset: 10 sent and 100 KB images per class (the shared 2-core machine; see the docs)
    "--sent-per-class": "10",
    "--kb-per-class": "100",
    "--out": "runs/baselines/cifar10",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    args = ["evaluate", "--raw"]
    for opt, value in DEFAULTS.items():
        if opt not in given:
            args.append(f"{opt}={value}")
    args += argv
    print("command: kbsemcom " + " ".join(args), flush=True)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
