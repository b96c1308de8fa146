"""The evaluation engine (no GNU Radio): features, codecs and semantic accuracy over a grid of
methods x CBRs x channels x SNRs x seeds, one record per point. Its report (results.jsonl /
CSV / Markdown tables and plots) is report.py; the method API (Method, Outcome, the
registry) is methods.py, re-exported here.

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

Built-in methods: one per codec recipe (``recipes.DESCRIPTIONS``: ``kbsc`` the paper's, the
default; ``kbsc-kb`` ours, a linear code decoded against the KB; ``kbsc-ret`` ours, an MLP
trained for retrieval; ``general`` ours, for any KB), ``raw`` (the raw feature as D/2 complex
symbols, no codec) and ``probe`` (the supervised reference: a linear probe gating 1-NN). The
baselines package registers its methods (digital chains, bounds) when it is imported, which
``get_method`` does on first use: the engine knows the baselines, they know only methods.py.

Records (one per evaluated point) carry RECORD_KEYS; see :func:`run_evaluation`.
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from . import conventions
from .channel import check_channel, power_normalize
from .features import extract_features
from .kb import KnowledgeBase
from .methods import (METHODS, FunctionMethod, Method, Outcome,  # noqa: F401 (re-exported)
                      register_method, retrieval_outcome, retrieval_outcome_kb, through_channel)
from .protocols import ROLES, labels
from .progress import bars_off
from .recipes import DESCRIPTIONS

log = logging.getLogger("kbsemcom.evaluation")

RECORD_KEYS = ("dataset", "protocol", "extractor", "codec", "cbr", "complex_symbols",
               "train_channel", "channel", "snr_db", "seed", "n_sent", "n_kb", "n_lost",
               "accuracy", "raw_1nn_reference", "codec_dataset", "kb_per_class")


# --------------------------------------------------------------------------- registry

def get_method(name):
    _load_plugins()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered: {', '.join(method_names())}")
    return METHODS[name]


def method_names():
    _load_plugins()
    return sorted(METHODS)


# core/<module> packages imported on first lookup so that their register_method calls run
# (the baselines register the digital chain, the ideal-code bound, ...); they import only
# methods.py, never this module
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
    """Features of one protocol's roles, the KB and the raw 1-NN reference
    (noiseless retrieval of the raw sent features). ``codec_protocol`` is the
    protocol whose training split trains codecs (another data set for cross-data-set runs);
    ``codec_options`` are CodecConfig values given to every recipe (e.g. ``{"epochs": 25}``
    to cap training) over the recipe's own defaults."""
    protocol: object
    extractor: object
    features: dict
    kept: dict
    kb: KnowledgeBase
    codec_protocol: object = None
    raw_reference: float = 0.0
    codec_options: dict = field(default_factory=dict)

    @property
    def dataset(self):
        return self.protocol.dataset

    def labels(self, role):
        return labels(self.kept[role])

    def kb_per_class(self):
        return self.protocol.params.get("kb_per_class")


def build_setup(protocol, extractor, codec_protocol=None, progress=True, codec_options=None):
    """Extract (or load cached) features for every role, build the KB, measure the raw 1-NN
    reference.
    codec_options: see EvalSetup."""
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
    setup = EvalSetup(protocol, extractor, features, kept, kb, codec_protocol or protocol,
                      codec_options=dict(codec_options or {}))
    setup.raw_reference = retrieval_outcome_kb(kb, labels(kept["kb"]), features["sent"],
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
                    dict(setup.kept, kb=kept), kb, setup.codec_protocol,
                    codec_options=setup.codec_options)
    new.raw_reference = retrieval_outcome_kb(kb, labels(kept), new.features["sent"],
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
            received, fading = through_channel(ctx, x, return_fading=True)
            decoded = codec.decode_real(received).numpy()
        kb = codec.searchable_kb(ctx.kb)
        if getattr(codec, "class_map", False):  # class-level MAP at the known SNR and fading
            from .retrieval import noise_power
            pos = codec.map_search(kb, decoded, noise_power(ctx.snr_db),
                                   fading.numpy() if ctx.channel == "rayleigh" else None)
            return Outcome(np.asarray(ctx.kb_labels)[pos] == np.asarray(ctx.sent_labels),
                           complex_symbols=codec.n_symbols)
        return retrieval_outcome(ctx, decoded, complex_symbols=codec.n_symbols, kb=kb)


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


class LinearProbe(Method):
    """The supervised reference for codecs that learn from labels (kbsc-kb's classifier): a
    linear softmax classifier (a linear probe) trained on the codec-training split's raw
    features and labels, gating 1-NN: the retrieved image is the nearest KB image of the
    predicted class, so its accuracy is the probe's own. No channel: the same figure at every
    point. Needs the evaluated data set's own training split (not a pool)."""
    name = "probe"
    uses_cbr = False
    description = ("supervised reference: linear probe on the training split's raw features "
                   "gating 1-NN (no channel)")

    def prepare(self, setup, cbr, train_channel):
        if setup.codec_protocol.class_names != setup.protocol.class_names:
            raise ValueError("the probe reference needs the evaluated data set's own training "
                             "split (its classes); drop --codec-dataset or the probe")
        gen = torch.Generator().manual_seed(0)
        x = torch.from_numpy(setup.features["train"])
        y = torch.as_tensor(setup.labels("train"))
        mean = x.mean(0)
        probe = torch.nn.Linear(x.shape[1], len(setup.protocol.class_names))
        opt = torch.optim.Adam(probe.parameters(), lr=1e-3, weight_decay=1e-4)
        scale = x.shape[1] ** 0.5
        for _ in range(100):
            for idx in torch.randperm(len(x), generator=gen).split(256):
                loss = torch.nn.functional.cross_entropy(probe((x[idx] - mean) * scale), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return probe, mean, scale

    def evaluate(self, ctx):
        probe, mean, scale = ctx.state
        with torch.no_grad():
            pred = probe((torch.from_numpy(ctx.sent_features) - mean) * scale).argmax(1).numpy()
        in_kb = np.isin(pred, ctx.kb_labels)  # gating: the class must have a KB image
        return Outcome((pred == ctx.sent_labels) & in_kb, complex_symbols=None)


for _recipe, _description in DESCRIPTIONS.items():
    register_method(CodecMethod(_recipe, _description))
register_method(RawFeatures())
register_method(LinearProbe())


def codec_for(setup, recipe, cbr, train_channel, seed=0, progress=True):
    """Train (or load from the cache) the codec of a recipe for a CBR and training channel on
    the setup's codec-training split (with the setup's codec_options)."""
    from .pipeline import train_or_load_codec
    config = codec_config(setup, recipe, cbr, train_channel, seed)
    return train_or_load_codec(config, setup.features, setup.kept, progress)[0]


def codec_config(setup, recipe, cbr, train_channel, seed=0):
    """The CodecConfig ``codec_for`` trains."""
    from .codec import recipe_config
    cp = setup.codec_protocol
    config = recipe_config(recipe, setup.extractor.identity, cbr, train_channel, seed,
                           **setup.codec_options)
    config.training_data = {"dataset": cp.dataset, "protocol": cp.name,
                            "n_train": len(setup.kept["train"]),
                            "n_val_sent": len(setup.kept["val_sent"]),
                            "n_val_kb": len(setup.kept["val_kb"])}
    if "members" in cp.params:  # the general codec's pool: what it held on this machine
        config.training_data.update(pool=cp.params["members"], pool_missing=cp.params["missing"])
    return config


def parallel_trainings():
    """Codecs trained at once by ``pretrain_codecs``: $KBSEMCOM_THREADS (default: every core)
    over the threads each one trains on ($KBSEMCOM_TRAIN_THREADS, default 1)."""
    from .codec import training_thread_count
    cores = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    return max(1, cores // training_thread_count())


def training_cost(config):
    """A codec's training cost, relative: multiply-adds per training feature over the epoch
    cap (the MLP recipes' forward and backward through the channel; for the closed-form
    ones, their projection and a linear fit). Orders ``pretrain_codecs``' jobs."""
    from .codec import codec_class
    d, k, h = config.dim, 2 * config.n_symbols, config.hidden
    if codec_class(config.recipe).selects_epoch:
        return config.epochs * 3 * (2 * d * h + 2 * h * k)
    return config.epochs * d + d * k


_worker_data = {}


def _init_worker(train_features, train_labels, validation):
    _worker_data.update(train=train_features, labels=train_labels, validation=validation)


def _train_in_worker(config, path):
    from .pipeline import train_and_save_codec
    train_and_save_codec(config, path, _worker_data["train"], _worker_data["labels"],
                         _worker_data["validation"], progress=False)
    return str(path)


def pretrain_codecs(setup, keys, progress=True):
    """Train the codecs of ``keys`` [(recipe, cbr, train_channel)] that the cache lacks, up
    to ``parallel_trainings()`` at once, one process each, into the codec cache (where
    ``codec_for`` then finds them). Each process trains exactly as ``codec_for`` would (same
    config, data, seed and thread count), so the weights are the same bit for bit. With one
    codec to train, or one at a time allowed, nothing happens here: ``codec_for`` trains it.
    Returns the number trained."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context
    from .pipeline import codec_cache_path, validation_pair
    todo, seen = [], set()
    for recipe, cbr, tch in keys:
        config = codec_config(setup, recipe, cbr, tch)
        path = codec_cache_path(config, setup.kept)
        if path not in seen and not path.exists():
            seen.add(path)
            todo.append((config, path))
    workers = min(len(todo), parallel_trainings())
    if workers < 2:
        return 0
    # longest first, so that the last jobs are short and the processes finish together
    todo.sort(key=lambda job: -training_cost(job[0]))
    # spawn, not fork: the parent's OpenMP and OpenVINO thread pools do not survive a fork
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(setup.features["train"], setup.labels("train"),
                                       validation_pair(setup.features, setup.kept))) as pool:
        jobs = [pool.submit(_train_in_worker, config, path) for config, path in todo]
        try:
            for job in tqdm(as_completed(jobs), total=len(jobs), unit="codec", leave=False,
                            desc=f"train codecs, {workers} at once", disable=bars_off(progress)):
                job.result()
        except BaseException:  # an error or Ctrl-C: the codecs not yet started are not wanted
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return len(todo)


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
    pretrain_codecs(setup, list(dict.fromkeys((m.recipe, cbr, tch) for m, cbr, tch, *_ in points
                                              if isinstance(m, CodecMethod))), progress)
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
               "accuracy": out.accuracy(), "raw_1nn_reference": setup.raw_reference,
               "codec_dataset": setup.codec_protocol.dataset if m.uses_cbr else None,
               "kb_per_class": setup.kb_per_class()}
        rec.update(out.extra)
        rec.update(extra or {})
        records.append(rec)
    return records
