#!/usr/bin/env python3
"""What each part of kbsc-kb is worth: the trained codec of a protocol, CBR and channel
(from the codec cache that `kbsemcom evaluate` fills, trained if missing), evaluated on the
protocol's sent/KB images with its class part at every gain it chose from (gain 0 = the
instance part alone: principal axes, decoded against the KB), next to the validation accuracy
that picked the gain; and the chosen codec's accuracy split by how many training images the
sent image's class had (the classifier cannot know a class it never saw).

    .venv/bin/python benchmarks/codec_kb_ablation.py --dataset caltech100 --cbrs 1/48,1/12

Prints a Markdown table with the data set, extractor, seeds and machine; --json for JSON lines.
"""
import argparse
import json
import os
import platform

import numpy as np

from gnuradio.kbsemcom.core import conventions, evaluation, protocols
from gnuradio.kbsemcom.core.extractors import load_extractor


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="caltech100", help="protocol (see kbsemcom evaluate)")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--cbrs", default="1/48,1/12")
    p.add_argument("--channel", default="awgn", help="training and test channel")
    p.add_argument("--snrs", default="-7,-4,0,10", help="test SNRs in dB")
    p.add_argument("--seeds", default="0,1,2", help="noise seeds (the table shows the mean)")
    p.add_argument("--few", type=int, default=10,
                   help="split classes at this many training images")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    extractor = load_extractor(args.extractor)
    setup = evaluation.build_setup(protocols.make_protocol(args.dataset), extractor)
    method = evaluation.get_method("kbsc-kb")
    snrs = [float(s) for s in args.snrs.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    ceiling = evaluation.retrieval_outcome_kb(setup.kb, setup.labels("kb"), setup.features["sent"],
                                              setup.labels("sent")).correct
    n_train = np.bincount(setup.labels("train"), minlength=len(setup.protocol.class_names))
    few = n_train[setup.labels("sent")] < args.few  # per sent image: its class is rare
    groups = {"all": np.ones_like(few), f"classes with < {args.few} training images": few,
              f"classes with >= {args.few}": ~few}
    rows = []
    for cbr in args.cbrs.split(","):
        cbr = conventions.format_cbr(cbr)
        codec = evaluation.codec_for(setup, "kbsc-kb", cbr, args.channel)
        chosen = float(codec.class_gain)
        for h in [h for h in codec.history if "class_gain" in h]:
            codec.class_gain.fill_(h["class_gain"])
            correct = {snr: np.mean([method.evaluate(evaluation.EvalContext(
                setup, cbr, codec.n_symbols, args.channel, args.channel, snr, seed,
                codec)).correct for seed in seeds], axis=0) for snr in snrs}
            for group, mask in groups.items():
                if group != "all" and (h["class_gain"] != chosen or mask.all() or not mask.any()):
                    continue
                rows.append({"cbr": cbr, "class_gain": h["class_gain"],
                             "chosen": h["class_gain"] == chosen, "group": group,
                             "n_sent": int(mask.sum()), "raw_1nn_reference": float(ceiling[mask].mean()),
                             "val_accuracy": h["val_accuracy"],
                             "accuracy": {s: float(c[mask].mean()) for s, c in correct.items()}})
        codec.class_gain.fill_(chosen)
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    about = (f"{args.dataset} ({len(setup.kept['sent'])} sent, {len(setup.kept['kb'])} KB), "
             f"{extractor.name}, {args.channel}, noise seeds {args.seeds}, codec seed 0; "
             f"{machine}")
    if args.json:
        for r in rows:
            print(json.dumps(dict(r, about=about)))
        return 0
    print("| CBR | class gain | sent images | their raw 1-NN reference % | validation % | " +
          " | ".join(f"{s:g} dB" for s in snrs) + " |")
    print("|---|---|---|---|---|" + "---|" * len(snrs))
    for r in rows:
        gain = f"**{r['class_gain']:g}** (chosen)" if r["chosen"] else f"{r['class_gain']:g}"
        print(f"| {r['cbr']} | {gain} | {r['group']}: {r['n_sent']} | {100 * r['raw_1nn_reference']:.1f} | "
              f"{100 * r['val_accuracy']:.1f} | " +
              " | ".join(f"{100 * r['accuracy'][s]:.1f}" for s in snrs) + " |")
    print(f"\nSemantic accuracy in %; gain 0 = principal axes alone; a group's raw 1-NN reference is the "
          f"raw features' noiseless retrieval for its sent images. {about}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
