"""Named bundles: the knowledge base, codec and sent images of a link, built once in the user
cache, so that a flowgraph can name them and run from any folder with no command first.

A bundle is defined by its settings (data set, extractor, CBR, recipe, channel, seed, images
per class). Its folder ``<cache>/bundles/<name>/`` holds ``kb/``, ``codec.pt`` and
``bundle.json`` (the settings and the extractor that was actually used). Building it runs the
very steps of ``kbsemcom demo`` (``protocols.split_dataset``, then
:func:`pipeline.prepare_link`), so the default bundle holds
the demo's KB and codec; features and codecs come from the shared caches when they exist.

Constructing a :class:`Bundle` is cheap and touches nothing (GNU Radio Companion evaluates it
while a flowgraph is edited); :meth:`Bundle.ensure` builds what is missing, with progress bars.
"""
import functools
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from . import datasets
from .recipes import AUTO, GENERAL, resolve_recipe
from .protocols import ROLES, split_dataset

BUNDLE_FILE = "bundle.json"


@dataclass(frozen=True)
class Bundle:
    """KB + codec + sent images of one link setting (see the module docstring).

    Attributes after :meth:`ensure`: ``kb`` (KB folder), ``codec`` (codec file), ``extractor``
    (the spec the KB was built with: give it to the feature extractor), ``sent`` (the sent
    images, disjoint from KB and training images), ``class_names``.
    """
    dataset: str = "fashion-mnist"
    extractor_spec: str = "auto"
    cbr: str = "1/48"
    recipe: str = AUTO
    channel: str = "awgn"
    seed: int = 0
    kb_per_class: int = 100
    sent_per_class: int = 20
    train_per_class: int = 500
    val_per_class: int = 50

    @property
    def name(self):
        """A readable folder name, unique for the settings."""
        settings = json.dumps(asdict(self), sort_keys=True)
        base = Path(self.dataset).name if os.sep in self.dataset else self.dataset
        label = re.sub(r"[^A-Za-z0-9.]+", "-", f"{base}-{self.extractor_spec}-cbr{self.cbr}-"
                                                 f"{self.recipe}-{self.channel}").strip("-")
        return f"{label}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"

    @property
    def folder(self):
        return datasets.cache_dir() / "bundles" / self.name

    @property
    def kb(self):
        return str(self.folder / "kb")

    @property
    def codec(self):
        return str(self.folder / "codec.pt")

    def _info(self):
        try:
            return json.loads((self.folder / BUNDLE_FILE).read_text())
        except (OSError, ValueError):
            return None

    @property
    def extractor(self):
        """The concrete extractor spec the KB was built with ('auto' resolved)."""
        info = self._info()
        return info["resolved_extractor"] if info else self.extractor_spec

    @property
    def n_symbols(self):
        """Complex channel symbols per image at the bundle's CBR."""
        from .conventions import complex_symbols_for_cbr
        return complex_symbols_for_cbr(self.cbr)

    @property
    def class_names(self):
        return datasets.open_dataset(self.dataset).class_names

    @property
    def sent(self):
        """The sent images (per class, the first ``sent_per_class`` test images; the KB's
        follow them), classes taking turns, so that a live display shows every class from the
        start."""
        turn = {}
        return sorted(self.split().sent, key=lambda it: (_count(turn, it.label), it.label))

    def split(self):
        return _split(self)

    def content_key(self):
        """What changes when any of the bundle's images changes (added, removed, edited)."""
        split, h = self.split(), hashlib.sha256()
        for role in ROLES:
            for it in getattr(split, role):
                h.update(f"{role}:{it.fingerprint()}\0".encode())
        return h.hexdigest()[:16]

    def ready(self):
        """Whether the bundle is built, for the images the data set holds now."""
        info = self._info()
        return (info is not None and info.get("content") == self.content_key()
                and Path(self.codec).is_file() and (Path(self.kb) / "manifest.json").is_file())

    def ensure(self, progress=True):
        """Build the KB and codec unless the bundle is complete; returns self."""
        if self.ready():
            return self
        from . import extractors, pipeline
        print(f"kbsemcom: building bundle {self.name} in {self.folder} (once; later runs "
              "reuse it)", flush=True)
        split = self.split()
        general = resolve_recipe(self.recipe, split.params["has_training_split"]) == GENERAL
        counts = {role: len(getattr(split, role))  # the general codec trains on the pool
                  for role in ("kb", "sent") + (() if general else ("train",))}
        if not all(counts.values()):
            raise datasets.DatasetError(
                f"data set {self.dataset!r} has too few images for a bundle: "
                + ", ".join(f"{n} {role}" for role, n in counts.items())
                + f" images (per class it takes {self.kb_per_class} KB, {self.sent_per_class} "
                f"sent and {self.val_per_class} + {self.val_per_class} validation images, and "
                "trains on the rest); add images (one sub-folder per class) or lower 'KB "
                "images per class'")
        extractor = extractors.load_extractor(self.extractor_spec)
        link = pipeline.prepare_link(extractor, split, self.cbr, self.channel,
                                     self.seed, recipe=self.recipe, progress=progress)
        link.kb.save(self.kb)
        link.codec.save(self.codec, getattr(link.codec, "history", []))
        spec = extractors.spec_of(extractor)
        info = dict(asdict(self), content=self.content_key(), resolved_extractor=spec, extractor_identity=extractor.identity,
                    extractor_reason=extractor.reason, n_kb=len(link.kb),
                    n_sent=len(link.split.sent))
        tmp = self.folder / f"{BUNDLE_FILE}.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(self.folder / BUNDLE_FILE)  # last: a bundle without it is rebuilt
        print(f"kbsemcom: bundle ready: {len(link.kb)} KB images, codec "
              f"{link.codec.config.recipe} CBR {self.cbr}, extractor {spec}", flush=True)
        return self


def _count(counts, key):
    counts[key] = counts.get(key, 0) + 1
    return counts[key]


@functools.lru_cache(maxsize=8)
def _split(bundle):
    """The bundle's split, kept: GNU Radio Companion re-evaluates ``bundle.sent`` often. Empty
    roles are allowed here: :meth:`Bundle.ensure` refuses them with sizes that say why."""
    return split_dataset(datasets.open_dataset(bundle.dataset), bundle.sent_per_class,
                         bundle.kb_per_class, bundle.train_per_class, bundle.val_per_class,
                         require=())


def kb_bundle(dataset="fashion-mnist", extractor="auto", cbr="1/48", recipe=AUTO,
              channel="awgn", seed=0, kb_per_class=100, sent_per_class=20):
    """A knowledge base, a codec and sent images, built once in the user cache and named by
    their settings, so that a flowgraph runs from any folder with no command first.

    The first run builds what is missing exactly as 'kbsemcom demo' does (progress in the
    console); later runs load it in a moment, and it is rebuilt when its images change. Use its fields in other blocks:
      bundle.kb: the KB folder (KB Lookup)
      bundle.codec: the codec file (Semantic Encoder, Semantic Decoder, KB Lookup)
      bundle.extractor: the extractor the KB was built with (Feature Extractor)
      bundle.sent: the sent images, never in the KB or the codec's training (Image Source)

    Parameters:
      Data set: fashion-mnist (installed by the set-up), cifar10, caltech100 (these two need
        KBSEMCOM_DATA_DIR: a folder holding cifar10-jpeg.tar.gz / caltech101.tar.gz), or an
        image folder with one sub-folder per class (relative to the flowgraph's folder).
      Extractor: auto (CLIP ViT-B-32 if its weights are cached, else EfficientNet-Lite0),
        efficientnet-lite0, or open_clip:MODEL:TAG_OR_CHECKPOINT.
      CBR: channel bandwidth ratio; CBR x 3072 complex symbols per image (1/48 = 64).
      Recipe: auto (the default: kbsc on a data set with training images of its own, general
        on a plain image folder), kbsc (the paper's MLP codec), kbsc-kb (ours: a linear code
        that decodes against the KB), kbsc-ret (ours: MLP trained for retrieval), general
        (ours: for any KB, trained once on the pool of data sets, no retraining).
      Channel: the channel the codec is trained on (awgn or rayleigh).
      Seed: training seed.
      KB images per class, Sent images per class: how many of each class's images the KB
        holds and how many are sent; the codec trains on the others.

    The folder is <cache>/bundles/<name> (the cache: $KBSEMCOM_CACHE, else ~/.cache/kbsemcom or
    $XDG_CACHE_HOME/kbsemcom).
    A data set that cannot be found or an unknown extractor stops the flowgraph with one line
    that says how to fix it.
    """
    folder = Path(str(dataset)).expanduser()
    if str(dataset) not in datasets.DATASETS and folder.is_dir():
        dataset = folder.resolve()  # the same name must not mean two folders
    return Bundle(str(dataset), str(extractor), str(cbr), str(recipe), str(channel), int(seed),
                  int(kb_per_class), int(sent_per_class))


@dataclass(frozen=True)
class DeepJsccModel:
    """A deep-JSCC model (core.baselines.deepjscc) trained on a bundle's training images, for
    the deep-JSCC lane of a flowgraph. Constructing it is cheap; :meth:`ensure` trains it once
    (within the budget of ``epochs`` x ``train_per_class`` images per class) and caches it
    with the evaluation's deep-JSCC models. ``model``: the model file."""
    bundle: Bundle
    cbr: str = "1/48"
    channel: str = "awgn"
    epochs: int = 10
    train_per_class: int = 200

    def config(self):
        from .baselines.deepjscc import DeepJsccConfig
        return DeepJsccConfig(cbr=self.cbr, train_channel=self.channel, epochs=self.epochs)

    def items(self):
        """(training images: the first ``train_per_class`` per class of the bundle's
        training role, validation images: the first 20 per class of its validation sent
        images, as in the deep-JSCC table of docs/baselines.md)."""
        split, turn, val_turn = self.bundle.split(), {}, {}
        train = [it for it in split.train if _count(turn, it.label) <= self.train_per_class]
        val = [it for it in split.val_sent if _count(val_turn, it.label) <= 20]
        return train, val

    @property
    def model(self):
        from .baselines.deepjscc import cache_path
        return str(cache_path(self.config(), *self.items()))

    @property
    def n_symbols(self):
        return self.config().n_symbols

    def ready(self):
        return Path(self.model).is_file()

    def ensure(self, progress=True):
        """Train the model unless it is cached; returns self."""
        import time
        from .baselines import deepjscc
        config = self.config()  # a CBR deep JSCC cannot take stops here, in one line
        if self.ready():
            return self
        train, val = self.items()
        if not train or not val:
            raise datasets.DatasetError(
                f"data set {self.bundle.dataset!r} has {len(train)} training and {len(val)} "
                "validation images for the deep-JSCC model; it needs both (add images)")
        print(f"kbsemcom: training a deep-JSCC model (CBR {config.cbr}, {config.train_channel}, "
              f"{config.epochs} epochs over {len(train)} images; about 1-4 minutes on 2 CPU "
              "cores, once: later runs reuse it)", flush=True)
        t0 = time.monotonic()
        model, path, _ = deepjscc.train_or_load(config, train, val, progress)
        print(f"kbsemcom: deep-JSCC model ready in {time.monotonic() - t0:.0f} s: best "
              f"validation PSNR {max(h['val_psnr_db'] for h in model.history):.1f} dB, {path}",
              flush=True)
        return self


def deepjscc_model(bundle, cbr="1/48", channel="awgn", epochs=10, train_per_class=200):
    """A deep-JSCC model trained on a KB Bundle's training images, for a deep-JSCC lane next
    to the semantic link: Deep JSCC Encoder and Decoder take its field jscc.model.

    On the first run, when no such model is cached, it trains one before the flowgraph
    starts (a line in the console says so, then a progress bar per epoch; about 1-4 minutes
    on 2 shared CPU cores with the defaults, on a GPU when torch sees one); later runs load
    it at once. Training is bounded by Epochs and Training images per class, so it always
    ends. The model is cached with the ones 'kbsemcom evaluate --codecs deepjscc' trains.

    Parameters:
      Bundle: the KB Bundle whose training images (never sent, never in the KB) it learns.
      CBR: channel bandwidth ratio; CBR x 3072 complex symbols per image, a multiple of 1/96
        (1/48 = 64 symbols, the semantic link's default).
      Channel: the channel it is trained on (awgn or rayleigh).
      Epochs, Training images per class: the training budget; fewer is faster and blurrier.

    Images are converted to 32x32 RGB (Fashion-MNIST's 28x28 grey ones too). A CBR that is
    not a multiple of 1/96 stops the flowgraph with one line that says which to use.
    """
    return DeepJsccModel(bundle, str(cbr), str(channel), int(epochs), int(train_per_class))
