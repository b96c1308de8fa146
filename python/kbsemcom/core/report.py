"""The report of an evaluation: records averaged over seeds, results.jsonl / CSV / Markdown
tables and plots. Reads records (dicts with evaluation.RECORD_KEYS); runs nothing.
"""
import csv
import json
from pathlib import Path

import numpy as np

from . import conventions
from .evaluation import RECORD_KEYS


def mean_over_seeds(records):
    """Records averaged over seeds: accuracy mean and std, n_seeds."""
    groups = {}
    for r in records:
        key = tuple((k, r.get(k)) for k in RECORD_KEYS if k not in ("seed", "accuracy", "n_lost"))
        groups.setdefault(key, []).append(r)
    out = []
    for key, rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs])
        out.append(dict(dict(key), accuracy=float(acc.mean()), accuracy_std=float(acc.std()),
                        n_seeds=len(rs)))
    return out


def _sort_key(r):
    snr = -99 if r["snr_db"] is None else r["snr_db"]
    n = r["complex_symbols"] or 0
    return (r["dataset"], r.get("kb_per_class") or 0, r["codec"], r["train_channel"] or "",
            r["channel"], n, snr)


def write_outputs(records, out, title=""):
    """results.jsonl, results.csv, results.md (seed means) and plots under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    keys = list(RECORD_KEYS) + sorted({k for r in records for k in r} - set(RECORD_KEYS))
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(records)
    (out / "results.md").write_text(markdown_table(records, title))
    return [out / "results.jsonl", out / "results.csv", out / "results.md"] + \
        plot_results(records, out)


def markdown_table(records, title=""):
    """Seed-mean accuracy (%) per codec / CBR / channels (rows) and SNR (columns)."""
    means = sorted(mean_over_seeds(records), key=_sort_key)
    snrs = sorted({r["snr_db"] for r in means if r["snr_db"] is not None})
    has_none = any(r["snr_db"] is None for r in means)
    cols = [f"{s:g} dB" for s in snrs] + (["no noise"] if has_none else [])
    rows, lines = {}, []
    for r in means:
        key = (r["dataset"], r.get("kb_per_class"), r["codec"], r["cbr"],
               r["complex_symbols"], r["train_channel"], r["channel"], r["raw_1nn_reference"])
        rows.setdefault(key, {})[r["snr_db"]] = r
    if title:
        lines += [f"### {title}", ""]
    lines.append("| data set | KB/class | codec | CBR | symbols | trained on | channel | raw 1-NN reference | " +
                 " | ".join(cols) + " |")
    lines.append("|" + "---|" * (8 + len(cols)))
    for key, by_snr in rows.items():
        ds, kbpc, codec, cbr, n, tch, ch, ceil = key
        cells = [f"{100 * by_snr[s]['accuracy']:.1f}" if s in by_snr else "" for s in snrs]
        if has_none:
            cells.append(f"{100 * by_snr[None]['accuracy']:.1f}" if None in by_snr else "")
        lines.append(f"| {ds} | {kbpc or ''} | {codec} | {cbr or '-'} | {n or '-'} | {tch or '-'} "
                     f"| {ch} | "
                     f"{100 * ceil:.1f} | " + " | ".join(cells) + " |")
    n_seeds = max((r["n_seeds"] for r in means), default=0)
    lines += ["", f"Semantic accuracy in %, mean of {n_seeds} noise seed(s); raw 1-NN reference = "
              "noiseless 1-NN retrieval of the raw sent features against the same KB (a "
              "reference, not a ceiling: codecs that decode against the KB or learned from "
              "labels can exceed it); the 'no noise' column is each method's own noiseless "
              "accuracy (--channels none): its compression loss, apart from the channel's."]
    return "\n".join(lines) + "\n"


def plot_results(records, out, fixed_snrs=(-4.0, 0.0, 10.0)):
    """accuracy_vs_snr_<dataset>_<codec>_<channel>.png and accuracy_vs_cbr_<dataset>_<channel>.png."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    means = [r for r in mean_over_seeds(records) if r["snr_db"] is not None]
    paths = []
    groups = {}
    for r in means:
        groups.setdefault((r["dataset"], r.get("kb_per_class"), r["channel"]), []).append(r)
    for (ds, kbpc, ch), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        tag = f"{ds}{'_kb' + str(kbpc) if kbpc else ''}_{ch}"
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        lines = {}
        for r in rs:
            lines.setdefault((r["codec"], r["cbr"], r["train_channel"]), []).append(r)
        styles = ["-", "--", ":", "-."]
        codecs = sorted({k[0] for k in lines})
        for (codec, cbr, tch), pts in sorted(lines.items(), key=lambda kv: (
                kv[0][0], -(kv[1][0]["complex_symbols"] or 0), kv[0][2] or "")):
            pts = sorted(pts, key=lambda r: r["snr_db"])
            label = f"{codec} {cbr}" + (f" (trained {tch})" if tch and tch != ch else "")
            ax.plot([p["snr_db"] for p in pts], [100 * p["accuracy"] for p in pts],
                    styles[codecs.index(codec) % 4], marker="o", ms=3, label=label)
        ax.axhline(100 * rs[0]["raw_1nn_reference"], color="k", lw=1, alpha=0.6, label="raw 1-NN reference")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("semantic accuracy (%)")
        ax.set_title(f"{ds} ({rs[0]['extractor']}), {ch}" + (f", KB {kbpc}/class" if kbpc else ""),
                     fontsize=9)
        paths.append(_save_plot(fig, ax, Path(out) / f"accuracy_vs_snr_{tag}.png"))
        # accuracy vs CBR at fixed SNRs (methods with a CBR axis, matched training)
        cbr_pts = [r for r in rs if r["snr_db"] in fixed_snrs and r["train_channel"] in (ch, None)
                   and r["codec"] != "raw" and r["complex_symbols"]]
        if len({r["complex_symbols"] for r in cbr_pts}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        by = {}
        for r in cbr_pts:
            by.setdefault((r["codec"], r["snr_db"]), []).append(r)
        for (codec, snr), pts in sorted(by.items()):
            pts = sorted(pts, key=lambda r: r["complex_symbols"])
            ax.plot([p["complex_symbols"] for p in pts], [100 * p["accuracy"] for p in pts],
                    styles[codecs.index(codec) % 4], marker="o", ms=3,
                    label=f"{codec} {snr:g} dB")
        ax.axhline(100 * rs[0]["raw_1nn_reference"], color="k", lw=1, alpha=0.6, label="raw 1-NN reference")
        ax.set_xscale("log", base=2)
        ticks = sorted({p["complex_symbols"] for p in cbr_pts})
        ax.set_xticks(ticks)
        ax.set_xticklabels([conventions.cbr_for_complex_symbols(t) for t in ticks])
        ax.set_xlabel("CBR (complex symbols / 3072)")
        ax.set_ylabel("semantic accuracy (%)")
        ax.set_title(f"{ds}, {ch}: accuracy vs CBR", fontsize=9)
        paths.append(_save_plot(fig, ax, Path(out) / f"accuracy_vs_cbr_{tag}.png"))
    return paths


def _save_plot(fig, ax, path):
    """Grid, legend, tight layout, PNG; returns the path."""
    import matplotlib.pyplot as plt
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
