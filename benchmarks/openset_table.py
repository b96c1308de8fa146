#!/usr/bin/env python3
"""KB mismatch (open set): does the receiver know when its KB holds no match?

Per data set, some classes are removed from the receiver's KB (5 of CIFAR-10's 10, 20 of
Caltech-100's 100) and images of every class are sent through a codec and the channel (AWGN or
Rayleigh, the codec trained on it). For each received vector the receiver computes a match
score (core/openset.py). Only validation and training images decide anything: the statistic and
its neighbour count K are the ones with the best mean validation AUROC at -4, 0, 4 and 10 dB
(openset.choose_statistic), the validation sent images searched against a validation KB shaped
like the receiver's (the validation KB filled up with training images to the receiver's KB size
per class, less as many classes, drawn apart from the test's); the match score is calibrated on
the in-KB validation images against that same KB (its K nearest depend on which classes the KB
holds and how densely), and one threshold (the target false-rejection rate) serves every SNR.
Reported per data set, codec, CBR and SNR: AUROC of the score (in-KB vs not), top-1 accuracy on
in-KB images, false-rejection rate (FRR) of in-KB images and rejection rate of out-of-KB images
at the threshold; the same for a plain nearest-distance threshold (one threshold for the target
FRR on the same calibration images, pooled over the SNRs) on the same received vectors; and the
noiseless raw-feature nearest-distance AUROC (what a perfect channel would give) as the
reference. Over Rayleigh the receiver is given the fading |h| per symbol (the csi of Coherent
Channel) for the statistics that use it (``centroid_lr``), in choice, calibration and test;
--no-csi takes it away (they use E|h| instead).

    .venv/bin/python benchmarks/openset_table.py --datasets cifar10,caltech100 --cbrs 1/48

Prints a Markdown table with data set, extractor, seeds, machine and wall time; writes
openset.jsonl, openset.md and plots to --out; --json prints JSON lines instead;
--save-calibration DIR writes each codec's calibration (for KB Lookup's calibration file).
--calibrate-on kb calibrates on the receiver's KB itself (its own images, each against the KB
less itself); --calibrate-on kb-validation sends the validation images of the KB's classes
against the receiver's KB (the statistic and K are chosen on the validation pair either way).
The codecs are the cached ones of `kbsemcom evaluate` (trained if missing), trained on the
protocol's training split, which holds every class (the transmitter's codec knows more classes
than the receiver's KB).
"""
import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gnuradio.kbsemcom.core import conventions, evaluation, openset, protocols
from gnuradio.kbsemcom.core.extractors import load_extractor
from gnuradio.kbsemcom.core.kb import KnowledgeBase

HELD_OUT = {"cifar10": 5, "caltech100": 20, "fashion-mnist": 5}
QUICK_SIZES = (20, 20, 100, 10)


def held_out_classes(n_classes, n_out, seed):
    """The classes a KB leaves out: n_out of n_classes, drawn with ``seed``."""
    if not 0 < n_out < n_classes:
        raise SystemExit(f"--held-out must lie in 1..{n_classes - 1}, got {n_out}")
    return np.sort(np.random.default_rng(seed).permutation(n_classes)[:n_out])


def sub_kb(features, labels, items, keep_mask, class_names, identity):
    idx = np.flatnonzero(keep_mask)
    return KnowledgeBase.from_items(features[idx], [items[i] for i in idx], class_names,
                                    identity, index="Flat")


def calibration_kb(setup, held_out, per_class, proto, identity):
    """The calibration KB: the validation KB (every class but ``held_out``) filled up with
    training images to the receiver's KB size per class (as many as there are): the nearest
    in-KB distance depends on how densely the KB covers a class, so the calibration KB must be
    as dense as the receiver's. Validation and training images only, never sent or KB
    images."""
    feats = np.concatenate([setup.features["val_kb"], setup.features["train"]])
    items = list(setup.kept["val_kb"]) + list(setup.kept["train"])
    labs = np.array([it.label for it in items])
    keep, count = np.zeros(len(items), bool), {}
    for i, lab in enumerate(labs):
        if lab not in held_out and count.get(lab, 0) < per_class:
            keep[i], count[lab] = True, count.get(lab, 0) + 1
    return sub_kb(feats, labs, items, keep, proto.class_names, identity)


def noise(seed, snr):
    key = f"openset:{seed}:{snr}"
    return torch.Generator().manual_seed(int(hashlib.sha1(key.encode()).hexdigest()[:12], 16))


def plain_threshold(codec, val_kb, val_feats, val_in, snrs, target_frr, channel):
    """The nearest-distance baseline: one threshold on -d_1 for target_frr over the
    validation in-KB images pooled over the SNRs."""
    search = codec.searchable_kb(val_kb)
    pooled = []
    for snr in snrs:
        y = openset.received_vectors(codec, val_feats[val_in], channel, snr, noise(-2, snr))
        pooled.append(openset.search_statistic(search, y, "nearest")[0])
    return openset.threshold_for_frr(np.concatenate(pooled), target_frr)


def run_dataset(args, extractor, name):
    sizes = QUICK_SIZES if args.quick else (None,) * 4
    proto = protocols.make_protocol(name, *sizes)
    setup = evaluation.build_setup(proto, extractor, progress=not args.json)
    n_classes = len(proto.class_names)
    n_out = args.held_out or HELD_OUT.get(name, n_classes // 2)
    test_out = held_out_classes(n_classes, n_out, args.split_seed)
    # the validation pair's own held-out classes; 'test' (a diagnosis only) takes the test's
    val_out = test_out if args.val_held_out == "test" else \
        held_out_classes(n_classes, n_out, args.split_seed + 1000)
    ident = extractor.identity
    kb_lab, val_kb_lab = setup.labels("kb"), setup.labels("val_kb")
    kb = sub_kb(setup.features["kb"], kb_lab, setup.kept["kb"], ~np.isin(kb_lab, test_out),
                proto.class_names, ident)
    val_kb = sub_kb(setup.features["val_kb"], val_kb_lab, setup.kept["val_kb"],
                    ~np.isin(val_kb_lab, val_out), proto.class_names, ident)
    per_class = int(np.max(np.bincount(kb_lab)))
    # the KB the score is chosen and calibrated on: as dense as the receiver's and, like it,
    # without some classes (the validation pair's own held-out ones)
    choice_kb = calibration_kb(setup, list(val_out), per_class, proto, ident)
    cal_kb = choice_kb
    sent, sent_lab = setup.features["sent"], setup.labels("sent")
    val_sent, val_lab = setup.features["val_sent"], setup.labels("val_sent")
    sent_in, val_in = ~np.isin(sent_lab, test_out), ~np.isin(val_lab, val_out)
    kb_labels = np.array([e["label"] for e in kb.entries])
    # the reference: raw features, no channel, plain nearest distance
    raw_stat, _ = openset.search_statistic(kb, sent, "nearest")
    reference = openset.auroc(raw_stat[sent_in], raw_stat[~sent_in])
    base = {"dataset": name, "extractor": extractor.name, "n_sent_in": int(sent_in.sum()),
            "n_sent_out": int((~sent_in).sum()), "n_kb": len(kb),
            "held_out_test": test_out.tolist(), "held_out_val": val_out.tolist(),
            "n_val_kb": len(val_kb), "n_choice_kb": len(choice_kb),
            "n_calibration_kb": len(cal_kb), "raw_noiseless_auroc": reference}
    rows = []
    for recipe in args.recipes:
        for channel in args.channels:
            for cbr in args.cbrs:
                rows += run_codec(args, setup, recipe, cbr, channel, dict(base), kb, choice_kb,
                                  cal_kb, proto, name, val_out, sent, sent_lab, sent_in,
                                  val_sent, val_in, kb_labels)
    if not args.json:
        print(markdown(mean_rows(rows)), flush=True)
    return rows


def run_codec(args, setup, recipe, cbr, channel, base, kb, choice_kb, cal_kb, proto, name,
              val_out, sent, sent_lab, sent_in, val_sent, val_in, kb_labels):
    """Rows of one codec (recipe, CBR, channel it is trained and tested on)."""
    codec = evaluation.codec_for(setup, recipe, cbr, channel, progress=not args.json)
    csi = not args.no_csi
    choice = openset.choose_statistic(codec, choice_kb, val_sent, val_in, channel,
                                      statistics=args.statistics, ks=args.ks, fading_known=csi)
    if args.calibrate_on == "kb":  # the receiver's KB itself, its images as queries
        q = np.random.default_rng(args.split_seed).permutation(len(kb))[:2000]
        cal = openset.calibrate(codec, kb, kb.features()[q], channel,
                                statistic_name=choice["statistic"], k=choice["k"],
                                target_frr=args.target_frr, own=q, fading_known=csi)
    elif args.calibrate_on == "kb-validation":  # validation images of the KB's classes
        keep = np.isin(setup.labels("val_sent"), np.unique(kb_labels))
        cal = openset.calibrate(codec, kb, val_sent[keep], channel,
                                statistic_name=choice["statistic"], k=choice["k"],
                                target_frr=args.target_frr, fading_known=csi)
    else:
        cal = openset.calibrate(codec, cal_kb, val_sent[val_in], channel,
                                statistic_name=choice["statistic"],
                                k=choice["k"], target_frr=args.target_frr,
                                fading_known=csi)
    cal.source.update(dataset=name, protocol=proto.name, held_out=val_out.tolist(),
                      role={"validation": "validation pair",
                            "kb": "receiver KB, own images",
                            "kb-validation": "receiver KB, validation images"}[
                                args.calibrate_on])
    if args.save_calibration:
        cal.save(Path(args.save_calibration) /
                 f"openset-{name}-{recipe}-{cbr.replace('/', 'of')}-{channel}.json")
    plain_t = plain_threshold(codec, cal_kb, val_sent, val_in, args.snrs, args.target_frr,
                              channel)
    search = codec.searchable_kb(kb)
    # where the AUROC goes: the chosen statistic on the noiseless codewords (compression only)
    y0 = openset.received_vectors(codec, sent, "none", None, noise(0, 0))
    s0, _ = openset.search_statistic(search, y0, cal.statistic, cal.k, cal.variances_at(None),
                                     "none")
    n0, _ = openset.search_statistic(search, y0, "nearest")
    base.update(codec=recipe, cbr=cbr, channel=channel, statistic=cal.statistic, k=cal.k,
                val_auroc=choice["auroc"], target_frr=args.target_frr,
                calibrate_on=args.calibrate_on, csi=csi,
                codec_noiseless_auroc=openset.auroc(s0[sent_in], s0[~sent_in]),
                codec_noiseless_plain_auroc=openset.auroc(n0[sent_in], n0[~sent_in]))
    rows = []
    for snr in args.snrs:
        for seed in args.seeds:
            y, fading = openset.received_vectors(codec, sent, channel, snr, noise(seed, snr),
                                                 return_fading=True)
            # the receiver knows the fading per symbol over Rayleigh (the PDU's csi)
            stat, pos = openset.search_statistic(search, y, cal.statistic, cal.k,
                                                 cal.variances_at(snr), channel, snr,
                                                 fading if channel == "rayleigh" and csi
                                                 else None)
            score = cal.match_score(stat, snr)
            reject = cal.no_match(score)
            near, _ = openset.search_statistic(search, y, "nearest")
            plain_reject = near < plain_t
            correct = kb_labels[pos] == sent_lab
            rows.append(dict(
                base, snr_db=float(snr), seed=int(seed),
                auroc=openset.auroc(score[sent_in], score[~sent_in]),
                auroc_stat=openset.auroc(stat[sent_in], stat[~sent_in]),
                accuracy_in_kb=float(correct[sent_in].mean()),
                frr=openset.rejection_rate(reject[sent_in]),
                out_rejected=openset.rejection_rate(reject[~sent_in]),
                plain_auroc=openset.auroc(near[sent_in], near[~sent_in]),
                plain_frr=openset.rejection_rate(plain_reject[sent_in]),
                plain_out_rejected=openset.rejection_rate(plain_reject[~sent_in])))
    return rows


def mean_rows(rows):
    """Rows averaged over noise seeds."""
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["codec"], r["channel"], r["cbr"], r["snr_db"]),
                          []).append(r)
    out = []
    for group in groups.values():
        m = dict(group[0])
        for key in ("auroc", "auroc_stat", "accuracy_in_kb", "frr", "out_rejected",
                    "plain_auroc", "plain_frr", "plain_out_rejected"):
            m[key] = float(np.mean([g[key] for g in group]))
        out.append(m)
    return out


def markdown(rows):
    lines = ["| data set | codec | channel | CBR | SNR dB | statistic (K) | AUROC | plain AUROC "
             "| codec noiseless AUROC | raw noiseless AUROC | acc. in-KB | FRR | out rejected | "
             "plain FRR | plain out rejected |",
             "|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['codec']} | {r['channel']} | {r['cbr']} | "
                     f"{r['snr_db']:g} | {r['statistic']} ({r['k']}) | {r['auroc']:.3f} | "
                     f"{r['plain_auroc']:.3f} | {r['codec_noiseless_auroc']:.3f} | "
                     f"{r['raw_noiseless_auroc']:.3f} | {100 * r['accuracy_in_kb']:.1f}% | "
                     f"{100 * r['frr']:.1f}% | {100 * r['out_rejected']:.1f}% | "
                     f"{100 * r['plain_frr']:.1f}% | {100 * r['plain_out_rejected']:.1f}% |")
    return "\n".join(lines)


def plot(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = sorted({(r["dataset"], r["codec"], r["channel"], r["cbr"]) for r in rows})
    fig, axes = plt.subplots(2, len(keys), figsize=(4 * len(keys), 6.5), squeeze=False)
    for j, key in enumerate(keys):
        rs = sorted((r for r in rows if (r["dataset"], r["codec"], r["channel"], r["cbr"]) ==
                     key),
                    key=lambda r: r["snr_db"])
        snr = [r["snr_db"] for r in rs]
        ax = axes[0, j]
        ax.plot(snr, [r["auroc"] for r in rs], "o-", label=f"match score ({rs[0]['statistic']})")
        ax.plot(snr, [r["plain_auroc"] for r in rs], "s--", label="plain nearest distance")
        ax.axhline(rs[0]["raw_noiseless_auroc"], color="grey", ls=":",
                   label="raw features, noiseless")
        ax.set_title(f"{key[0]} {key[1]} {key[2]} CBR {key[3]}", fontsize=9)
        ax.set_ylabel("AUROC (in-KB vs not)")
        ax.legend(fontsize=7)
        ax = axes[1, j]
        ax.plot(snr, [100 * r["frr"] for r in rs], "o-", label="match score")
        ax.plot(snr, [100 * r["plain_frr"] for r in rs], "s--", label="plain nearest distance")
        t = 100 * rs[0]["target_frr"]
        ax.axhspan(t - 3, t + 3, color="green", alpha=0.1, label="target +- 3 points")
        ax.set_xlabel(f"SNR (dB), {key[2]}")
        ax.set_ylabel("false rejections of in-KB images (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out) / "openset.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", default="cifar10,caltech100")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--recipes", default="kbsc-kb", help="codec recipes (see kbsemcom evaluate)")
    p.add_argument("--cbrs", default="1/48")
    p.add_argument("--channels", default="awgn", help="awgn, rayleigh (each codec trained "
                   "and tested on its channel)")
    p.add_argument("--snrs", default="-4,-2,0,2,4,7,10", help="test SNRs (dB)")
    p.add_argument("--seeds", default="0", help="noise seeds (tables show the mean)")
    p.add_argument("--held-out", type=int, default=0,
                   help="classes removed from the KB (0: 5 of CIFAR-10, 20 of Caltech-100, "
                        "half otherwise); the validation KB removes as many of its own")
    p.add_argument("--split-seed", type=int, default=0, help="which classes are held out")
    p.add_argument("--target-frr", type=float, default=openset.DEFAULT_TARGET_FRR)
    p.add_argument("--ks", default=",".join(map(str, openset.DEFAULT_KS)),
                   help="neighbour counts K the score is chosen among (on validation)")
    p.add_argument("--statistics", default=",".join(openset.STATISTICS),
                   help="statistics the score is chosen among (on validation)")
    p.add_argument("--calibrate-on", choices=("validation", "kb", "kb-validation"),
                   default="kb-validation",
                   help="the match score's calibration: validation images of the KB's "
                        "classes (never sent images) against the receiver's KB (the default: "
                        "the in-KB score depends on which classes the KB holds); the "
                        "validation pair (its own KB lacking other classes: false rejections "
                        "drift 3-4 points under the target); or the receiver's KB itself (its "
                        "own images as queries, each against the KB less itself: what "
                        "'kbsemcom kb calibrate' does). The statistic and K are chosen on the "
                        "validation pair either way")
    p.add_argument("--val-held-out", choices=("draw", "test"), default="draw",
                   help="the classes the validation pair's KB lacks: its own draw, or (a "
                        "diagnosis of the calibration, not a protocol) the test KB's")
    p.add_argument("--no-csi", action="store_true",
                   help="over Rayleigh the receiver is not given the fading |h| per symbol")
    p.add_argument("--quick", action="store_true", help="small sizes (tests): 20 sent, 20 KB, "
                   "100 training, 10 validation images per class")
    p.add_argument("--out", default="runs/openset")
    p.add_argument("--save-calibration", default="", help="folder for calibration files")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.recipes = [s.strip() for s in args.recipes.split(",") if s.strip()]
    args.cbrs = [conventions.format_cbr(s) for s in args.cbrs.split(",")]
    args.channels = [s.strip() for s in args.channels.split(",") if s.strip()]
    args.ks = [int(s) for s in args.ks.split(",")]
    args.statistics = [s.strip() for s in args.statistics.split(",") if s.strip()]
    args.snrs = [float(s) for s in args.snrs.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.monotonic()
    extractor = load_extractor(args.extractor)
    rows = []
    for name in [s.strip() for s in args.datasets.split(",") if s.strip()]:
        rows += run_dataset(args, extractor, name)
    wall = time.monotonic() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "openset.jsonl", "w") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    table = mean_rows(rows)
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    head = (f"open set: {args.datasets}, extractor {extractor.name}, codecs "
            f"{','.join(args.recipes)}, {','.join(args.channels)}, CBR {','.join(args.cbrs)}, "
            f"noise seeds {args.seeds}, split seed {args.split_seed}, calibrated on "
            f"{args.calibrate_on}{', no csi' if args.no_csi else ''}"
            f"{', validation pair lacks the test classes' if args.val_held_out == 'test' else ''}"
            f", target FRR "
            f"{args.target_frr:.0%}, machine {machine}, wall time {wall:.0f} s")
    (out / "openset.md").write_text(head + "\n\n" + markdown(table) + "\n")
    png = plot(table, out)
    if args.json:
        for r in table:
            print(json.dumps(r))
    else:
        print(head)
        print()
        print(markdown(table))
        print(f"\nwritten to {out}/ (openset.jsonl, openset.md, {png.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
