#!/usr/bin/env python3
"""Leave one data set out at CBR 1/48: is the loss the compression or the noise, and do the
transmitter's axes or its power allocation matter?

For X left out (the sizes and pool of benchmarks/leave_one_out.py), the encoder is a principal-
axes projection with k real values (64 complex symbols at CBR 1/48), unit power per image,
sent over AWGN and decided by the class-level MAP search of core/retrieval.py (general-map's
receiver). Variants of the transmitter:

``pool e=E``       the pool's first k principal axes, axis i at variance ∝ lambda_i^E (what
                   general / general-map do; E = 1 is the plain projection);
``pool wf``        the pool's axes with analog reverse water-filling at the operating SNR: the
                   power per axis p_i = (sqrt(lambda_i s2 / nu) - s2)^+ that minimises the
                   linear MMSE of the projection (s2 the noise variance per real value, nu
                   set by the power), so weak axes get nothing at low SNR;
``pool rep``       the pool's first k/2 axes, each sent twice (a repetition code: 3 dB on each);
``pool within e=E`` the principal axes of the pool's variation *within* each of its data sets
                   (each member data set centred on its own mean before the SVD), so that no
                   axis is spent on what tells the pool's data sets apart (e.g. grey clothes
                   against colour photos), which a single target data set does not vary
                   along; centred on the pool's mean at the transmitter as the others;
``KB axes e=1``    a diagnosis, not a codec: the first k principal axes of the receiver's KB
                   features (no labels), i.e. axes from data like X's own.

The receiver's kernel width (``spread``) of each variant is chosen on the pool's validation
pair (the validation KB's axes for "KB axes"), never on X. Prints accuracy on the pool's
validation pair and on X (sent vs KB), per SNR and without noise, beside the raw 1-NN
reference; --json prints JSON lines.

    KBSEMCOM_THREADS=1 nice .venv/bin/python benchmarks/loo_axes.py --datasets caltech100
"""
import argparse
import json
import time

import numpy as np
import torch

from gnuradio.kbsemcom.apps.common import machine
from gnuradio.kbsemcom.core import conventions, datasets, evaluation, protocols
from gnuradio.kbsemcom.core.channel import apply_channel, power_normalize
from gnuradio.kbsemcom.core.extractors import load_extractor
from gnuradio.kbsemcom.core.retrieval import class_map_search, noise_power

EVAL_SIZES = {"cifar10": (100, 100), "fashion-mnist": (100, 100), "caltech100": (10, 21)}
SPREADS = (2.0, 5.0, 10.0, 20.0)
VARIANTS = ("pool e=1", "pool e=0.75", "pool e=0.5", "pool wf", "pool rep", "pool within e=1",
            "pool within e=0.75", "KB axes e=1")


def principal_axes(features):
    """(mean [D], axes [r, D], variances [r]) of features [m, D]."""
    mean = features.mean(0)
    _, s, vt = np.linalg.svd(features - mean, full_matrices=False)
    return mean, vt, s ** 2 / max(1, len(features) - 1)


def within_axes(features, groups):
    """(mean [D], axes [r, D], variances [r]) of the variation within groups: features [m, D]
    each centred on its group's mean before the SVD; the mean returned is the overall one."""
    centred = np.array(features, np.float64)
    groups = np.asarray(groups)
    for g in np.unique(groups):
        centred[groups == g] -= centred[groups == g].mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return features.mean(0), vt, s ** 2 / max(1, len(features) - 1)


def water_filling(variances, noise_var, total):
    """Analog reverse water-filling: powers p_i = max(0, sqrt(lambda_i noise_var / nu) -
    noise_var) with sum p_i = total (the linear-MMSE power allocation over parallel AWGN
    channels), nu found by bisection."""
    lam = np.asarray(variances, np.float64)
    lo, hi = 1e-12, 1e12
    for _ in range(200):
        nu = np.sqrt(lo * hi)
        p = np.maximum(np.sqrt(lam * noise_var / nu) - noise_var, 0.0)
        lo, hi = (nu, hi) if p.sum() > total else (lo, nu)
    return np.maximum(np.sqrt(lam * noise_var / np.sqrt(lo * hi)) - noise_var, 0.0)


def encoder(variant, k, pool_axes, kb_axes, snr_db):
    """(mean, projection [k, D]) of a variant (see the module docstring)."""
    mean, axes, lam = kb_axes if variant.startswith("KB") else pool_axes
    if k > len(lam):
        raise ValueError(f"{k} real values need {k} principal axes; the features give "
                         f"{len(lam)}: use more images or a lower CBR")
    idx = np.arange(k) % (k // 2) if variant == "pool rep" else np.arange(k)
    if variant == "pool wf":
        # unit power per complex symbol = 0.5 per real value, k real values
        s2 = float(conventions.noise_power(0.0 if snr_db is None else snr_db)) / 2
        gain = np.sqrt(water_filling(lam[idx], s2, 0.5 * k) / lam[idx])
    else:
        e = float(variant.split("e=")[1]) if "e=" in variant else 1.0
        gain = lam[idx] ** ((e - 1) / 2)
    return mean, gain[:, None] * axes[idx]


def accuracy(variant, k, pool_axes, kb_feats, kb_labels, sent, sent_labels, snr_db, seed,
             spread):
    """Class-MAP accuracy of sent images against a KB through one variant and AWGN (snr_db
    None: no noise)."""
    kb_axes = principal_axes(kb_feats) if variant.startswith("KB") else None
    mean, proj = encoder(variant, k, pool_axes, kb_axes, snr_db)
    enc = lambda f: power_normalize(torch.from_numpy((f - mean) @ proj.T))  # noqa: E731
    keys, x = enc(kb_feats), enc(sent)
    gen = torch.Generator().manual_seed(seed)
    y = apply_channel(x, "none" if snr_db is None else "awgn", 0.0 if snr_db is None else
                      snr_db, gen).numpy()
    live = np.any(proj != 0, axis=1)   # water-filling may leave axes without power
    pos, _ = class_map_search(keys.numpy()[:, live], kb_labels, y[:, live],
                              noise_power(snr_db), None, spread)
    return float(np.mean(np.asarray(kb_labels)[pos] == np.asarray(sent_labels)))


def run_dataset(args, extractor, name):
    pool = protocols.pool_protocol(f"pool-without-{name}")
    train, val = datasets.DATASETS[name].pool
    proto = protocols.make_protocol(name, *EVAL_SIZES[name], train, val)
    setup = evaluation.build_setup(proto, extractor, pool, progress=not args.json)
    f = {r: setup.features[r].astype(np.float64) for r in setup.features}
    lab = {r: np.asarray(setup.labels(r)) for r in setup.features}
    pool_axes = principal_axes(f["train"])
    members = [it.class_name.split("/")[0] for it in setup.kept["train"]]
    pool_within = within_axes(f["train"], members)
    k = 2 * conventions.complex_symbols_for_cbr(args.cbr)
    rows = []
    for variant in args.variants:
        def mean_acc(role_kb, role_sent, snr, spread, base):
            axes = pool_within if "within" in variant else pool_axes
            return float(np.mean([accuracy(variant, k, axes, f[role_kb], lab[role_kb],
                                           f[role_sent], lab[role_sent], snr, base + s, spread)
                                  for s in args.seeds]))
        # the spread: best mean pool-validation accuracy over the test SNRs
        val = {sp: [mean_acc("val_kb", "val_sent", snr, sp, 1000) for snr in args.snrs]
               for sp in SPREADS}
        spread = max(SPREADS, key=lambda sp: np.mean(val[sp]))
        row = {"dataset": name, "variant": variant, "k_real": k, "spread": spread,
               "raw_1nn_reference": 100 * setup.raw_reference,
               "pool_val": {str(s): 100 * a for s, a in zip(args.snrs, val[spread])},
               "test": {str(s): 100 * mean_acc("kb", "sent", s, spread, 0) for s in args.snrs},
               "test_noiseless": 100 * mean_acc("kb", "sent", None, spread, 0)}
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(line(row, args.snrs), flush=True)
    return rows


def header(snrs):
    return ("| left out | transmitter | spread | raw 1-NN reference | no noise | " +
            " | ".join(f"{s:g} dB" for s in snrs) + " | pool validation, " +
            " / ".join(f"{s:g}" for s in snrs) + " dB |\n|" + "---|" * (6 + len(snrs)))


def line(r, snrs):
    return (f"| {r['dataset']} | {r['variant']} | {r['spread']:g} | "
            f"{r['raw_1nn_reference']:.1f} | {r['test_noiseless']:.1f} | " +
            " | ".join(f"{r['test'][str(s)]:.1f}" for s in snrs) + " | " +
            " / ".join(f"{r['pool_val'][str(s)]:.1f}" for s in snrs) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", default="caltech100", help="the data sets left out in turn")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--snrs", default="-4,0", help="AWGN SNRs in dB")
    p.add_argument("--seeds", default="0,1", help="noise seeds (the mean is shown)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    args.snrs = [float(s) for s in args.snrs.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    t0 = time.monotonic()
    extractor = load_extractor(args.extractor)
    if not args.json:
        print(header(args.snrs), flush=True)
    for name in [s.strip() for s in args.datasets.split(",") if s.strip()]:
        run_dataset(args, extractor, name)
    if not args.json:
        print(f"\nCBR {args.cbr}, AWGN, extractor {extractor.name}, noise seeds {args.seeds}, "
              f"{time.monotonic() - t0:.0f} s on {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
