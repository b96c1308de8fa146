"""Evaluation protocols: which images are transmitted, which form the receiver's KB, and which
train (and select) the codec. Every protocol is class-balanced per role where the data allow,
and the roles are disjoint: no image is both sent and in the KB, and the codec never sees an
evaluation image.

Protocols (``make_protocol(name, ...)``; sizes are per class and configurable):

``cifar100``  the paper's: CIFAR-100 test set, per class the first half (50) sent, the second
              half (50) in the KB; the train set (500 per class) split 80/10/10 into codec
              training (400), validation sent (50) and validation KB (50). Comes through
              torchvision's download (network needed once; a clear error offline).
``cifar10``   CIFAR-10 from $KBSEMCOM_DATA_DIR: per class 500 sent / 500 KB from the test images
              (first half sent); validation sent / KB pair (50 / 50) and ``train_per_class``
              training images (default 500) from the train images.
``caltech100`` Caltech-101 less BACKGROUND_Google and Faces_easy (100 classes): per class the
              first 10 images by file name sent, the next 21 in the KB, the rest for training,
              with a validation sent / KB pair (up to 5 / 5 per class) carved from that rest.
``fashion-mnist`` Debian's Fashion-MNIST, laid out like ``cifar10``.
any folder    one sub-folder per class; with train/ and test/ sub-folders it is laid out like
              ``cifar10``, otherwise like ``caltech100`` (sent, KB, validation, training in file
              name order per class).
"""
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import datasets

log = logging.getLogger("kbsemcom.protocols")

ROLES = ("sent", "kb", "train", "val_sent", "val_kb")


@dataclass
class Protocol:
    """The images of each role for one data set, plus how they were chosen."""
    name: str
    dataset: str
    class_names: list
    sent: list
    kb: list
    train: list
    val_sent: list
    val_kb: list
    params: dict = field(default_factory=dict)
    description: str = ""

    def role(self, name):
        return getattr(self, name)

    def sizes(self):
        return {r: len(self.role(r)) for r in ROLES}

    def check(self):
        """Raise DatasetError if two roles share an image or a needed role is empty."""
        seen = {}
        for r in ROLES:
            for it in self.role(r):
                if it.source in seen and seen[it.source] != r:
                    raise datasets.DatasetError(
                        f"protocol {self.name}: image {it.source} is both in {seen[it.source]}"
                        f" and {r}")
                seen[it.source] = r
        for r in ("sent", "kb"):
            if not self.role(r):
                raise datasets.DatasetError(f"protocol {self.name} has no {r} images; lower the "
                                            "per-class sizes or use a larger data set")
        return self

    def limit_kb(self, kb_per_class):
        """The same protocol with at most ``kb_per_class`` KB images per class (KB-size sweep;
        the first ones of each class are kept)."""
        kb = datasets.take_per_class(self.kb, kb_per_class)
        return Protocol(self.name, self.dataset, self.class_names, self.sent, kb, self.train,
                        self.val_sent, self.val_kb, dict(self.params, kb_per_class=kb_per_class),
                        self.description)


def _per_class_counts(items):
    counts = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    return counts


def _layout(dataset, name, protocol, source, pool, sent, kb, train, val, desc):
    """Per class: sent, then KB, from ``source``; the validation sent / KB pair, then
    training, from ``pool``."""
    return Protocol(
        protocol, name, list(dataset.class_names),
        sent=datasets.take_per_class(source, sent),
        kb=datasets.take_per_class(source, kb, sent),
        val_sent=datasets.take_per_class(pool, val),
        val_kb=datasets.take_per_class(pool, val, val),
        train=datasets.take_per_class(pool, train, 2 * val),
        params={"sent_per_class": sent, "kb_per_class": kb, "train_per_class": train,
                "val_per_class": val}, description=desc)


def _test_halves(dataset, name, protocol, sent, kb, train, val, desc):
    """Sent then KB from the test split per class; validation pair then training from train."""
    return _layout(dataset, name, protocol, dataset.items("test"), dataset.items("train"),
                   sent, kb, train, val, desc)


def _one_split(dataset, name, protocol, sent, kb, train, val, desc):
    """Per class in file-name order: sent, KB, then the rest; the validation pair is carved
    from the start of the rest and training takes what follows."""
    items = dataset.items("all")
    rest = datasets.take_per_class(items, 10 ** 9, sent + kb)
    return _layout(dataset, name, protocol, items, rest, sent, kb, train, val, desc)


def cifar100(root=None):
    """CIFAR-100 through torchvision's downloader (arrays kept as array-backed ImageItems)."""
    try:
        from torchvision.datasets import CIFAR100
    except ImportError as err:  # pragma: no cover - torchvision is a requirement
        raise datasets.DatasetError(f"torchvision is needed for CIFAR-100: {err}") from err
    root = Path(root or datasets.cache_dir() / "data" / "cifar100")
    splits = {}
    try:
        for split, train in (("train", True), ("test", False)):
            ds = CIFAR100(str(root), train=train, download=True)
            splits[split] = [datasets.ImageItem(f"cifar100:{split}:{i:05d}", int(lab),
                                                ds.classes[lab], pixels=ds.data[i])
                             for i, lab in enumerate(ds.targets)]
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise datasets.DatasetError(
            f"CIFAR-100 could not be downloaded to {root} ({type(err).__name__}: {err}). It "
            "needs network access to www.cs.toronto.edu once; offline, use --dataset cifar10 "
            "or caltech100 (the project's stand-ins), or put cifar-100-python.tar.gz in "
            f"{root}") from err
    return datasets.Dataset("cifar100", list(ds.classes), splits)


# name -> (loader, layout, defaults: sent, kb, train, val per class, description)
PROTOCOLS = {
    "cifar100": (cifar100, _test_halves, (50, 50, 400, 50),
                 "paper: CIFAR-100 test, per class first 50 sent / last 50 KB; train set "
                 "80/10/10 = codec training / validation sent / validation KB"),
    "cifar10": (datasets.cifar10, _test_halves, (500, 500, 500, 50),
                "CIFAR-10 test, per class first 500 sent / next 500 KB; codec trained on train "
                "images after a 50/50 validation sent/KB pair"),
    "caltech100": (datasets.caltech100, _one_split, (10, 21, 10 ** 6, 5),
                   "Caltech-101 less BACKGROUND_Google and Faces_easy; per class first 10 by "
                   "file name sent, next 21 KB, rest training (validation pair 5/5 carved "
                   "from it)"),
    "fashion-mnist": (datasets.fashion_mnist, _test_halves, (500, 500, 1000, 50),
                      "Fashion-MNIST test, per class first 500 sent / next 500 KB; codec "
                      "trained on train images after a 50/50 validation pair"),
}


def make_protocol(name, sent_per_class=None, kb_per_class=None, train_per_class=None,
                  val_per_class=None):
    """Build a protocol by name (see the module docstring) or from an image folder path.
    None sizes take the protocol's defaults."""
    if name in PROTOCOLS:
        loader, layout, defaults, desc = PROTOCOLS[name]
        dataset = loader()
        protocol = name
    elif Path(name).expanduser().is_dir():
        dataset = datasets.scan_image_folder(name)
        split = "test" in dataset.splits and "train" in dataset.splits
        layout = _test_halves if split else _one_split
        defaults = (50, 50, 500, 10) if split else (5, 10, 10 ** 6, 2)
        desc = f"image folder {name}" + (" (train/test)" if split else " (one split)")
        protocol = f"folder:{Path(name).expanduser().resolve().name}"
    else:
        raise datasets.DatasetError(
            f"unknown protocol or data set {name!r}: use one of {', '.join(PROTOCOLS)} or a "
            "folder with one sub-folder of images per class")
    sizes = [d if v is None else int(v) for v, d in
             zip((sent_per_class, kb_per_class, train_per_class, val_per_class), defaults)]
    if min(sizes) < 0 or sizes[0] == 0 or sizes[1] == 0:
        raise ValueError(f"per-class sizes must be >= 0 (sent and KB >= 1), got {sizes}")
    proto = layout(dataset, dataset.name, protocol, *sizes, desc).check()
    short = [c for c, n in _per_class_counts(proto.kb).items() if n < sizes[1]]
    if short:
        log.warning("%s: %d classes have fewer than %d KB images", protocol, len(short), sizes[1])
    return proto


def labels(items):
    """The label array of items."""
    return np.array([it.label for it in items], dtype=np.int64)
