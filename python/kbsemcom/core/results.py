"""Result records, the semantic-accuracy metric, and the montage of sent vs retrieved images.

One record per transmitted image. A lost image (unreadable, wrong length, frame lost, never
received) is a record with ``lost: true`` and counts as wrong in the accuracy.

Open set (core/openset.py): ``match_score`` (0..1, SNR-aware) and ``no_match`` (true: the KB
holds nothing that matches the received image) come from a calibrated KB lookup; both are None
without a calibration (and for lost images). ``no_match`` does not change ``correct``, which
stays the retrieval's verdict.
"""
import json
from pathlib import Path

RECORD_FIELDS = ("seq", "image_id", "label", "class_name", "path", "retrieved_id",
                 "retrieved_label", "retrieved_class", "retrieved_path", "distance", "correct",
                 "lost", "stage", "reason", "snr_db", "channel", "cbr", "n_symbols", "extractor",
                 "match_score", "no_match")


def make_record(meta, **extra):
    """A flat result record from PDU metadata (missing fields are None)."""
    rec = {k: meta.get(k) for k in RECORD_FIELDS}
    rec["lost"] = bool(meta.get("lost", False))
    rec["correct"] = bool(meta.get("correct", False)) and not rec["lost"]
    if rec["lost"] or rec["no_match"] is None:
        rec["no_match"] = rec["match_score"] = None
    else:
        rec["no_match"] = bool(rec["no_match"])
        rec["match_score"] = None if rec["match_score"] is None else float(rec["match_score"])
    rec.update(extra)
    return rec


def lost_record(meta, stage, reason, **extra):
    return make_record(dict(meta, lost=True, stage=stage, reason=reason), **extra)


def summarize(records):
    """Counts and semantic accuracy (lost images count as wrong); n_scored = received images
    with an open-set decision, n_no_match = those judged to have no match in the KB."""
    n = len(records)
    lost = sum(1 for r in records if r["lost"])
    correct = sum(1 for r in records if r["correct"])
    scored = sum(1 for r in records if r.get("no_match") is not None)
    no_match = sum(1 for r in records if r.get("no_match"))
    return {"n_sent": n, "n_received": n - lost, "n_lost": lost, "n_correct": correct,
            "accuracy": correct / n if n else 0.0, "n_scored": scored,
            "n_no_match": no_match}


def write_jsonl(records, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


def read_jsonl(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def montage(records, path, max_pairs=24, title="", load_image=None):
    """A PNG grid of sent | retrieved image pairs, green when the class matches, red when
    not, grey when lost. ``load_image(source) -> PIL image`` reads either side (default:
    datasets.load_source)."""
    from .datasets import load_source
    load_image = load_image or load_source
    # a Figure of its own, not pyplot: importing pyplot costs the demo's rerun about a second
    from matplotlib.figure import Figure

    step = max(1, len(records) // max_pairs)  # spread over the classes, not the first few
    shown = records[::step][:max_pairs]
    cols = 4
    rows = max(1, (len(shown) + cols - 1) // cols)
    fig = Figure(figsize=(2 * cols * 1.4, rows * 1.7))
    axes = fig.subplots(rows, 2 * cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, rec in enumerate(shown):
        ax_sent, ax_got = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        colour = "grey" if rec["lost"] else ("green" if rec["correct"] else "red")
        _show(ax_sent, load_image, rec.get("path"), f"sent: {rec.get('class_name')}", "black")
        got = "lost" if rec["lost"] else f"got: {rec.get('retrieved_class')}"
        _show(ax_got, load_image, None if rec["lost"] else rec.get("retrieved_path"), got, colour)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


def _show(ax, load_image, source, label, colour):
    ax.set_title(label[:18], fontsize=7, color=colour)
    if source:
        try:
            ax.imshow(load_image(source))
        except Exception:  # noqa: BLE001 - a missing picture must not lose the montage
            pass
    ax.axis("on")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color(colour)
        spine.set_linewidth(2)
