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
