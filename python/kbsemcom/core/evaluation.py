"""The evaluation engine (no GNU Radio): features, codecs and semantic accuracy over a grid of
methods x CBRs x channels x SNRs x seeds, written as results.jsonl / CSV / Markdown and plots.

Method registry
---------------
Every way of getting an image's meaning across the channel is a *method* registered by name::

    from gnuradio.kbsemcom.core import evaluation as ev

    class MyMethod(ev.Method):
        name = "my-method"
        uses_cbr = True        # False: evaluated once per (channel, SNR, seed); CBR is its own
        def prepare(self, setup, cbr, train_channel):
            return state       # optional, e.g. a trained model; cached per (cbr, train_channel)
        def evaluate(self, ctx):
            ...                # ctx: EvalContext (below)
            return ev.Outcome(correct=..., lost=..., complex_symbols=...)

    ev.register_method(MyMethod())         # or ev.register_method("name", function(ctx))

``ctx`` (:class:`EvalContext`) gives the protocol's sent features / labels / items
(``ctx.sent_features``, ``ctx.sent_labels``, ``ctx.sent_items``), the receiver's KB
(``ctx.kb``, ``ctx.kb_features``, ``ctx.kb_labels``), the codec training split
(``ctx.train_features``, ``ctx.train_labels``, ``ctx.validation``), the extractor
(``ctx.extractor``, to re-embed reconstructed images), ``ctx.cbr`` ("1/48"),
``ctx.complex_symbols``, ``ctx.train_channel``, ``ctx.channel``, ``ctx.snr_db`` (None for no
channel), ``ctx.seed`` and ``ctx.state`` (what ``prepare`` returned). An :class:`Outcome` holds one
boolean per sent image: ``correct`` (top-1 KB hit has the sent class) and ``lost`` (nothing usable
arrived; a lost image always counts as wrong). ``retrieval_outcome(ctx, decoded)`` turns decoded
features into an Outcome. Methods that ignore the CBR report the symbols they used in
``Outcome.complex_symbols``. Labels are never an input of the transmitter.

Built-in methods: ``kbsc`` (the paper's recipe), ``kbsc-kb`` (ours, the default: decodes
against the KB), ``kbsc-ret`` (ours, retrieval-trained MLP) and ``raw`` (the raw feature as
D/2 complex symbols, no codec).

Records (one per evaluated point) carry RECORD_KEYS; see :func:`run_evaluation`.
"""
import csv
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import conventions
from .channel import apply_channel, check_channel, power_normalize
from .features import extract_features
from .kb import KnowledgeBase
from .protocols import ROLES, labels
from .progress import bars_off

log = logging.getLogger("kbsemcom.evaluation")

RECORD_KEYS = ("dataset", "protocol", "extractor", "codec", "cbr", "complex_symbols",
               "train_channel", "channel", "snr_db", "seed", "n_sent", "n_kb", "n_lost",
               "accuracy", "ceiling", "codec_dataset", "kb_per_class")


# --------------------------------------------------------------------------- registry

@dataclass
class Outcome:
    """Per sent image: correct (bool [m]) and lost (bool [m]); a lost image counts as wrong."""
    correct: np.ndarray
    lost: np.ndarray = None
    complex_symbols: int = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.correct = np.asarray(self.correct, dtype=bool)
        self.lost = np.zeros_like(self.correct) if self.lost is None else \
            np.asarray(self.lost, dtype=bool)
        if self.lost.shape != self.correct.shape:
            raise ValueError(f"lost {self.lost.shape} and correct {self.correct.shape} differ")

    def accuracy(self):
        """Semantic accuracy; lost images are wrong whatever ``correct`` says."""
        if not len(self.correct):
            return 0.0
        return float(np.mean(self.correct & ~self.lost))


class Method:
    """Base of an evaluation method (see the module docstring)."""
    name = "method"
    description = ""
    uses_cbr = True

    def prepare(self, setup, cbr, train_channel):
        return None

    def evaluate(self, ctx):
        raise NotImplementedError


class FunctionMethod(Method):
    """A plain function ``fn(ctx) -> Outcome`` as a method."""

    def __init__(self, name, fn, uses_cbr=True, description=""):
        self.name, self.fn, self.uses_cbr = name, fn, uses_cbr
        self.description = description or (fn.__doc__ or "").strip().split("\n")[0]

    def evaluate(self, ctx):
        return self.fn(ctx)


METHODS = {}


def register_method(name_or_method, method=None, replace=False):
    """Register a Method instance (its ``.name``), or ``register_method(name, fn_or_method)``."""
    if method is None:
        method = name_or_method
        name = method.name
    else:
        name = name_or_method
        if callable(method) and not isinstance(method, Method):
            method = FunctionMethod(name, method)
    if not isinstance(method, Method):
        raise TypeError(f"method {name!r} must be a Method or a function(ctx) -> Outcome")
    if name in METHODS and not replace:
        raise ValueError(f"method {name!r} is already registered (pass replace=True)")
    METHODS[name] = method
    return method


def get_method(name):
    _load_plugins()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(method_names())}")
    return METHODS[name]


def method_names():
    _load_plugins()
    return sorted(METHODS)


# core/<module>.py files imported on first lookup so that their register_method calls run
# (the baselines' module registers the digital chain, the ideal-code bound, ...)
PLUGIN_MODULES = ("baselines",)


def _load_plugins():
    import importlib
    for mod in PLUGIN_MODULES:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{mod}":
                raise


# --------------------------------------------------------------------------- setup / context

@dataclass
class EvalSetup:
    """Features of one protocol's roles, the KB and the ceiling. ``codec_protocol`` is the
    protocol whose training split trains codecs (another data set for cross-data-set runs)."""
    protocol: object
    extractor: object
    features: dict
    kept: dict
    kb: KnowledgeBase
    codec_protocol: object = None
    ceiling: float = 0.0

    @property
    def dataset(self):
        return self.protocol.dataset

    def labels(self, role):
        return labels(self.kept[role])

    def kb_per_class(self):
        return self.protocol.params.get("kb_per_class")


def build_setup(protocol, extractor, codec_protocol=None, progress=True):
    """Extract (or load cached) features for every role, build the KB, measure the ceiling."""
    features, kept = {}, {}
    source = {"sent": protocol, "kb": protocol}
    for role in ("train", "val_sent", "val_kb"):
        source[role] = codec_protocol or protocol
    for role in ROLES:
        items = source[role].role(role)
        features[role], kept[role] = extract_features(
            extractor, items, desc=f"{source[role].dataset} {role} features")
        lost = len(items) - len(kept[role])
        if lost:
            log.warning("%s %s: %d unreadable images skipped", source[role].name, role, lost)
    kb = KnowledgeBase.from_items(features["kb"], kept["kb"], protocol.class_names,
                                  extractor.identity)
    setup = EvalSetup(protocol, extractor, features, kept, kb, codec_protocol or protocol)
    setup.ceiling = retrieval_outcome_kb(kb, labels(kept["kb"]), features["sent"],
                                         labels(kept["sent"])).accuracy()
    return setup


def limit_kb(setup, kb_per_class):
    """The setup with at most kb_per_class KB images per class (same sent set and codecs)."""
    by_class, idx = {}, []
    for i, it in enumerate(setup.kept["kb"]):
        by_class.setdefault(it.label, []).append(i)
    for lab in sorted(by_class):
        idx.extend(by_class[lab][:kb_per_class])
    feats = setup.features["kb"][idx]
    kept = [setup.kept["kb"][i] for i in idx]
    protocol = setup.protocol.limit_kb(kb_per_class)
    kb = KnowledgeBase.from_items(feats, kept, protocol.class_names, setup.extractor.identity)
    new = EvalSetup(protocol, setup.extractor, dict(setup.features, kb=feats),
                    dict(setup.kept, kb=kept), kb, setup.codec_protocol)
    new.ceiling = retrieval_outcome_kb(kb, labels(kept), new.features["sent"],
                                       new.labels("sent")).accuracy()
    return new


@dataclass
class EvalContext:
    """One evaluated point; see the module docstring."""
    setup: EvalSetup
    cbr: str
    complex_symbols: int
    train_channel: str
    channel: str
    snr_db: float
    seed: int
    state: object = None

    sent_features = property(lambda self: self.setup.features["sent"])
    sent_labels = property(lambda self: self.setup.labels("sent"))
    sent_items = property(lambda self: self.setup.kept["sent"])
    kb = property(lambda self: self.setup.kb)
    kb_features = property(lambda self: self.setup.features["kb"])
    kb_labels = property(lambda self: self.setup.labels("kb"))
    kb_items = property(lambda self: self.setup.kept["kb"])
    train_features = property(lambda self: self.setup.features["train"])
    train_labels = property(lambda self: self.setup.labels("train"))
    extractor = property(lambda self: self.setup.extractor)
    class_names = property(lambda self: self.setup.protocol.class_names)

    @property
    def validation(self):
        s = self.setup
        return {"sent_features": s.features["val_sent"], "sent_labels": s.labels("val_sent"),
                "kb_features": s.features["val_kb"], "kb_labels": s.labels("val_kb")}

    def generator(self):
        """A torch generator for this point's channel noise: same seed, SNR and channel give
        the same noise for every method, so methods are compared on equal draws."""
        key = f"{self.seed}:{self.channel}:{self.snr_db}"
        return torch.Generator().manual_seed(int(hashlib.sha1(key.encode()).hexdigest()[:12], 16))


def retrieval_outcome_kb(kb, kb_labels, decoded, sent_labels, lost=None):
    """Outcome of a top-1 KB search for decoded features (rows of lost images may be any)."""
    decoded = np.asarray(decoded, dtype=np.float32)
    if not len(decoded):
        return Outcome(np.zeros(0, bool), lost)
    _, nearest = kb.search(decoded, 1)
    return Outcome(np.asarray(kb_labels)[nearest[:, 0]] == np.asarray(sent_labels), lost)


def retrieval_outcome(ctx, decoded, lost=None, complex_symbols=None, kb=None):
    """Outcome of decoded features [m, D] against the context's KB (or ``kb``, a view of it
    such as a codec's ``searchable_kb``)."""
    out = retrieval_outcome_kb(ctx.kb if kb is None else kb, ctx.kb_labels, decoded,
                               ctx.sent_labels, lost)
    out.complex_symbols = complex_symbols
    return out


def through_channel(ctx, real_symbols):
    """Real-layout unit-power symbols [m, 2n] (numpy or torch) through ctx's channel, seeded."""
    x = torch.as_tensor(np.asarray(real_symbols, dtype=np.float32))
    snr = 0.0 if ctx.snr_db is None else ctx.snr_db
    return apply_channel(x, ctx.channel, snr, ctx.generator())


# --------------------------------------------------------------------------- built-in methods

class CodecMethod(Method):
    """A trained SemanticCodec per CBR and training channel, cached on disk."""
    uses_cbr = True

    def __init__(self, recipe, description):
        self.name = self.recipe = recipe
        self.description = description

    def prepare(self, setup, cbr, train_channel):
        return codec_for(setup, self.recipe, cbr, train_channel)

    def evaluate(self, ctx):
        codec = ctx.state
        with torch.no_grad():
            x = codec.encode_real(torch.from_numpy(ctx.sent_features))
            decoded = codec.decode_real(through_channel(ctx, x)).numpy()
        return retrieval_outcome(ctx, decoded, complex_symbols=codec.n_symbols,
                                 kb=codec.searchable_kb(ctx.kb))


class RawFeatures(Method):
    """The raw D-d feature, power-normalised, as D/2 complex symbols; no codec."""
    name = "raw"
    uses_cbr = False
    description = "raw feature as D/2 complex symbols, no codec (the paper's 'no MLP')"

    def evaluate(self, ctx):
        feats = torch.from_numpy(ctx.sent_features)
        if feats.shape[1] % 2:
            feats = torch.nn.functional.pad(feats, (0, 1))
        dim = ctx.sent_features.shape[1]
        received = through_channel(ctx, power_normalize(feats)).numpy()[:, :dim]
        return retrieval_outcome(ctx, received, complex_symbols=feats.shape[1] // 2)


register_method(CodecMethod("kbsc", "the paper's recipe: MLP 384, MSE, Adam 1e-4, batch 128, "
                            "SNR per batch from {-7,-4,0,4,7,10}"))
register_method(CodecMethod("kbsc-kb", "ours, the default: linear code trained on the channel's "
                            "class posterior; the receiver decodes against the KB in symbol "
                            "space (maximum likelihood on AWGN)"))
register_method(CodecMethod("kbsc-ret", "ours: retrieval-trained MLP (contrastive loss on the "
                            "decoded feature, per-image SNR), unit-norm output"))
register_method(RawFeatures())
DEFAULT_CODEC = "kbsc-kb"


def codec_for(setup, recipe, cbr, train_channel, seed=0, progress=True):
    """Train (or load from the cache) the codec of a recipe for a CBR and training channel on
    the setup's codec-training split."""
    from .codec import recipe_config
    from .pipeline import train_or_load_codec
    cp = setup.codec_protocol
    config = recipe_config(recipe, setup.extractor.identity, cbr, train_channel, seed)
    config.training_data = {"dataset": cp.dataset, "protocol": cp.name,
                            "n_train": len(setup.kept["train"]),
                            "n_val_sent": len(setup.kept["val_sent"]),
                            "n_val_kb": len(setup.kept["val_kb"])}
    return train_or_load_codec(config, setup.features, setup.kept, progress)[0]


# --------------------------------------------------------------------------- the grid

def run_evaluation(setup, methods, cbrs, snrs, channels, train_channels=None, seeds=(0,),
                   progress=True, extra=None):
    """Evaluate every method over the grid; returns one record per point.

    train_channels: None = matched (each channel's codec trained on that channel; 'none'
    uses AWGN-trained codecs), else every train channel x every test channel.
    snrs apply to awgn/rayleigh; the 'none' channel is evaluated once (snr_db None).
    """
    methods = [get_method(m) if isinstance(m, str) else m for m in methods]
    channels = [check_channel(c) for c in channels]
    cbrs = [conventions.format_cbr(c) for c in cbrs]
    points = []
    for m in methods:
        for cbr in (cbrs if m.uses_cbr else [None]):
            for ch in channels:
                tchs = [("awgn" if ch == "none" else ch)] if train_channels is None else \
                    [check_channel(t) for t in train_channels]
                for tch in (tchs if m.uses_cbr else [None]):
                    for snr in ([None] if ch == "none" else snrs):
                        for seed in seeds:
                            points.append((m, cbr, tch, ch, snr, seed))
    states, records = {}, []
    for m, cbr, tch, ch, snr, seed in tqdm(points, desc=f"evaluate {setup.dataset}",
                                           unit="point", disable=bars_off(progress)):
        key = (m.name, cbr, tch)
        if key not in states:
            states[key] = m.prepare(setup, cbr, tch)
        n_sym = conventions.complex_symbols_for_cbr(cbr) if cbr else None
        ctx = EvalContext(setup, cbr, n_sym, tch, ch, None if snr is None else float(snr),
                          int(seed), states[key])
        out = m.evaluate(ctx)
        if len(out.correct) != len(ctx.sent_labels):
            raise ValueError(f"method {m.name} returned {len(out.correct)} results for "
                             f"{len(ctx.sent_labels)} sent images")
        n_sym = out.complex_symbols or n_sym
        rec = {"dataset": setup.dataset, "protocol": setup.protocol.name,
               "extractor": setup.extractor.name, "codec": m.name,
               "cbr": cbr or (conventions.cbr_for_complex_symbols(n_sym) if n_sym else None),
               "complex_symbols": n_sym, "train_channel": tch, "channel": ch,
               "snr_db": ctx.snr_db, "seed": int(seed), "n_sent": len(out.correct),
               "n_kb": len(setup.kb), "n_lost": int(out.lost.sum()),
               "accuracy": out.accuracy(), "ceiling": setup.ceiling,
               "codec_dataset": setup.codec_protocol.dataset if m.uses_cbr else None,
               "kb_per_class": setup.kb_per_class()}
        rec.update(out.extra)
        rec.update(extra or {})
        records.append(rec)
    return records


# --------------------------------------------------------------------------- outputs

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
               r["complex_symbols"], r["train_channel"], r["channel"], r["ceiling"])
        rows.setdefault(key, {})[r["snr_db"]] = r
    if title:
        lines += [f"### {title}", ""]
    lines.append("| data set | KB/class | codec | CBR | symbols | trained on | channel | ceiling | " +
                 " | ".join(cols) + " |")
    lines.append("|" + "---|" * (8 + len(cols)))
    for key, by_snr in rows.items():
        ds, kbpc, codec, cbr, n, tch, ch, ceil = key
        cells = [f"{100 * by_snr[s]['accuracy']:.1f}" if s in by_snr else "" for s in snrs]
        if has_none:
            cells.append(f"{100 * by_snr[None]['accuracy']:.1f}" if None in by_snr else "")
        lines.append(f"| {ds} | {kbpc or ''} | {codec} | {cbr} | {n} | {tch or '-'} | {ch} | "
                     f"{100 * ceil:.1f} | " + " | ".join(cells) + " |")
    n_seeds = max((r["n_seeds"] for r in means), default=0)
    lines += ["", f"Semantic accuracy in %, mean of {n_seeds} noise seed(s); ceiling = noiseless "
              "retrieval of the raw sent features against the same KB."]
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
        ax.axhline(100 * rs[0]["ceiling"], color="k", lw=1, alpha=0.6, label="ceiling")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylabel("semantic accuracy (%)")
        ax.set_title(f"{ds} ({rs[0]['extractor']}), {ch}" + (f", KB {kbpc}/class" if kbpc else ""),
                     fontsize=9)
        paths.append(_save_plot(fig, ax, Path(out) / f"accuracy_vs_snr_{tag}.png"))
        # accuracy vs CBR at fixed SNRs (methods with a CBR axis, matched training)
        cbr_pts = [r for r in rs if r["snr_db"] in fixed_snrs and r["train_channel"] in (ch, None)
                   and r["codec"] != "raw"]
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
        ax.axhline(100 * rs[0]["ceiling"], color="k", lw=1, alpha=0.6, label="ceiling")
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
