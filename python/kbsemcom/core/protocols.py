"""Evaluation protocols: which images are transmitted, which form the receiver's KB, and which
train (and select) the codec. Every protocol is class-balanced per role where the data allow,
and the roles are disjoint: no image is both sent and in the KB, and the codec never sees an
evaluation image.

Every app cuts a data set here: ``kbsemcom evaluate`` through :func:`make_protocol` (the named
protocols below), the demo, tx/rx, bundles, train-codec and the PHY benchmark through
:func:`split_dataset` with their own per-class sizes. Both give a checked :class:`Protocol`.

Protocols (``make_protocol(name, ...)``; sizes are per class and configurable; the data sets
and their default sizes are the registry ``datasets.DATASETS``):

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
``pool``      the general codec's training pool: the training and validation images of every
              data set of ``datasets.DATASETS`` that has ``pool`` sizes and can be opened here
              (Fashion-MNIST always; CIFAR-10 and Caltech-100 where KBSEMCOM_DATA_DIR holds
              them), labels kept apart per data set; ``pool-without-X`` leaves X out (the
              leave-one-data-set-out evaluation). Codec training only: no sent or KB images.
              $KBSEMCOM_POOL_DIRS adds image folders of one's own (one sub-folder per class;
              several separated by ':'), 200 training and 20 + 20 validation images per class.
any folder    one sub-folder per class; with train/ and test/ sub-folders it is laid out like
              ``cifar10``, otherwise like ``caltech100`` (sent, KB, validation, training in file
              name order per class).
"""
import logging
import os
from dataclasses import dataclass, field, replace
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

    def check(self, require=("sent", "kb")):
        """Raise DatasetError if two roles share an image or a role of ``require`` is empty."""
        seen = {}
        for r in ROLES:
            for it in self.role(r):
                if it.source in seen and seen[it.source] != r:
                    raise datasets.DatasetError(
                        f"protocol {self.name}: image {it.source} is both in {seen[it.source]}"
                        f" and {r}")
                seen[it.source] = r
        for r in require:
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


def split_dataset(dataset, sent_per_class, kb_per_class, train_per_class, val_per_class,
                  protocol=None, description="", require=("sent", "kb")):
    """The one split of a data set into roles, checked (:meth:`Protocol.check`).

    Per class, in the data set's order: with train and test splits, sent then KB from the
    test images and the validation sent / KB pair then training from the train images; with
    one split, sent, KB, the validation pair, then training. ``require``: the roles that must
    not be empty (``()`` for a codec trained alone, which needs neither sent nor KB images).
    """
    sizes = [int(v) for v in (sent_per_class, kb_per_class, train_per_class, val_per_class)]
    sent, kb, train, val = sizes
    if min(sizes) < 0 or any(n == 0 for n, r in ((sent, "sent"), (kb, "kb")) if r in require):
        raise datasets.DatasetError(f"per-class sizes (sent, KB, training, validation) must be "
                                    f">= 0, sent and KB >= 1; got {sizes}")
    if "test" in dataset.splits and "train" in dataset.splits:
        source, pool = dataset.items("test"), dataset.items("train")
    else:
        source = dataset.items("all")
        pool = datasets.take_per_class(source, 10 ** 9, sent + kb)
    proto = Protocol(
        protocol or dataset.name, dataset.name, list(dataset.class_names),
        sent=datasets.take_per_class(source, sent),
        kb=datasets.take_per_class(source, kb, sent),
        val_sent=datasets.take_per_class(pool, val),
        val_kb=datasets.take_per_class(pool, val, val),
        train=datasets.take_per_class(pool, train, 2 * val),
        params={"sent_per_class": sent, "kb_per_class": kb, "train_per_class": train,
                "val_per_class": val, "has_training_split": dataset.name in datasets.DATASETS
                or "train" in dataset.splits}, description=description)
    proto.check(require)
    short = [c for c, n in _per_class_counts(proto.kb).items() if n < kb]
    if short:
        log.warning("%s: %d classes have fewer than %d KB images", proto.name, len(short), kb)
    return proto


POOL = "pool"
POOL_WITHOUT = "pool-without-"
# image folders (os.pathsep-separated) added to the pool, each with FOLDER_POOL training /
# validation images per class: how a user adds images of their own
POOL_DIRS_ENV = "KBSEMCOM_POOL_DIRS"
FOLDER_POOL = (200, 20)


class PooledItems(list):
    """The images of one role from several data sets; ``parts`` keeps each data set's list,
    so that features are extracted and cached per data set (features.extract_features), and
    shared with every other run that cuts that data set the same way."""

    def __init__(self, parts):
        self.parts = [list(p) for p in parts]
        super().__init__(it for p in self.parts for it in p)


def is_pool(name):
    """Whether a protocol name names the general codec's pool (``pool``, ``pool-without-X``)."""
    return str(name) == POOL or str(name).startswith(POOL_WITHOUT)


def pool_protocol(name=POOL, train_per_class=None, val_per_class=None):
    """The general codec's training pool (see the module docstring): ``pool`` or
    ``pool-without-X`` (X a data set name; several joined by ``+``). Per data set, its
    ``DatasetEntry.pool`` training / validation images per class (or the given sizes), cut by
    :func:`split_dataset` as its own protocol cuts it, so that no pooled image is ever one of
    that data set's sent or KB images. Data sets that cannot be opened here are left out and
    named in ``params["missing"]``; labels are offset per data set, class names prefixed."""
    exclude = set(name[len(POOL_WITHOUT):].split("+")) if name != POOL else set()
    unknown = sorted(exclude - set(datasets.DATASETS))
    if not is_pool(name) or unknown or not all(exclude):
        raise datasets.DatasetError(
            f"unknown pool {name!r}: use {POOL} or {POOL_WITHOUT}X with X among "
            f"{', '.join(k for k, e in datasets.DATASETS.items() if e.pool)}")
    members, missing = [], {}
    for ds, entry in datasets.DATASETS.items():
        if ds in exclude or entry.pool is None:
            continue
        try:
            dataset = datasets.open_dataset(ds)
        except datasets.DatasetError as err:
            missing[ds] = str(err)
            continue
        train, val = entry.pool
        members.append(split_dataset(
            dataset, entry.sizes[0], entry.sizes[1],
            train if train_per_class is None else train_per_class,
            val if val_per_class is None else val_per_class, require=("train",)))
    for folder in filter(None, os.environ.get(POOL_DIRS_ENV, "").split(os.pathsep)):
        dataset = datasets.scan_image_folder(folder)  # a user's own images join the pool
        if dataset.name not in exclude:
            members.append(split_dataset(
                dataset, 0, 0, FOLDER_POOL[0] if train_per_class is None else train_per_class,
                FOLDER_POOL[1] if val_per_class is None else val_per_class,
                require=("train",)))
    if not members:
        raise datasets.DatasetError(
            f"the pool {name!r} has no data set: " + "; ".join(f"{k}: {v}" for k, v in
                                                                missing.items()))
    if missing:
        log.warning("%s: left out (not available here): %s", name, ", ".join(missing))
    roles, class_names, offset = {r: [] for r in ("train", "val_sent", "val_kb")}, [], 0
    for p in members:
        for r, parts in roles.items():
            parts.append([replace(it, label=it.label + offset,
                                  class_name=f"{p.dataset}/{it.class_name}") for it in p.role(r)])
        class_names += [f"{p.dataset}/{c}" for c in p.class_names]
        offset += len(p.class_names)
    sizes = {p.dataset: {r: len(p.role(r)) for r in roles} for p in members}
    return Protocol(name, name, class_names, [], [], PooledItems(roles["train"]),
                    PooledItems(roles["val_sent"]), PooledItems(roles["val_kb"]),
                    params={"members": [p.dataset for p in members], "missing": sorted(missing),
                            "member_sizes": sizes},
                    description="training pool of " + ", ".join(
                        f"{p.dataset} ({len(p.train)} training images)" for p in members)
                    ).check(require=("train",))


def make_protocol(name, sent_per_class=None, kb_per_class=None, train_per_class=None,
                  val_per_class=None):
    """The evaluation protocol of a named data set (``datasets.DATASETS``, see the module
    docstring), of the general codec's pool (``pool``, ``pool-without-X``: training roles
    only) or of an image folder path. None sizes take the protocol's defaults."""
    if is_pool(name):
        return pool_protocol(name, train_per_class, val_per_class)
    if name in datasets.DATASETS:
        entry = datasets.DATASETS[name]
        dataset = datasets.open_dataset(name)
        defaults, desc, protocol = entry.sizes, entry.description, name
    elif Path(name).expanduser().is_dir():
        dataset = datasets.scan_image_folder(name)
        split = "test" in dataset.splits and "train" in dataset.splits
        defaults = datasets.FOLDER_SIZES[split]
        desc = f"image folder {name}" + (" (train/test)" if split else " (one split)")
        protocol = f"folder:{Path(name).expanduser().resolve().name}"
    else:
        raise datasets.DatasetError(
            f"unknown protocol or data set {name!r}: use one of {', '.join(datasets.DATASETS)} "
            "or a folder with one sub-folder of images per class")
    sizes = [d if v is None else int(v) for v, d in
             zip((sent_per_class, kb_per_class, train_per_class, val_per_class), defaults)]
    return split_dataset(dataset, *sizes, protocol=protocol, description=desc)


def labels(items):
    """The label array of items."""
    return np.array([it.label for it in items], dtype=np.int64)
