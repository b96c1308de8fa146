"""The preparation steps the apps share: split a data set into sent / KB / training images,
build (or reuse) the KB, train (or reuse) the codec. Everything is cached by content.
"""
import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np

from . import datasets
from .codec import CodecConfig, SemanticCodec, train_codec
from .features import extract_features
from .kb import KnowledgeBase

log = logging.getLogger("kbsemcom.pipeline")


@dataclass
class Split:
    """Images per role. The sets are disjoint; the codec never sees sent or KB images."""
    sent: list
    kb: list
    train: list
    val_sent: list
    val_kb: list


def demo_split(dataset, sent_per_class, kb_per_class, train_per_class, val_per_class=50):
    """Per class: sent and KB images from the test split (first KB, then sent), training and
    validation (a sent/KB pair) from the train split. A data set with one split ('all') is
    cut per class into sent, KB, validation sent, validation KB, then training."""
    if "test" in dataset.splits and "train" in dataset.splits:
        test, train = dataset.items("test"), dataset.items("train")
        kb = datasets.take_per_class(test, kb_per_class)
        sent = datasets.take_per_class(test, sent_per_class, kb_per_class)
        val_sent = datasets.take_per_class(train, val_per_class)
        val_kb = datasets.take_per_class(train, val_per_class, val_per_class)
        train_items = datasets.take_per_class(train, train_per_class, 2 * val_per_class)
    else:
        allitems = dataset.items("all")
        offsets = np.cumsum([0, sent_per_class, kb_per_class, val_per_class, val_per_class])
        sent, kb, val_sent, val_kb = (
            datasets.take_per_class(allitems, n, int(o)) for n, o in
            zip((sent_per_class, kb_per_class, val_per_class, val_per_class), offsets))
        train_items = datasets.take_per_class(allitems, train_per_class, int(offsets[-1]))
    return Split(sent, kb, train_items, val_sent, val_kb)


def labels(items):
    return np.array([it.label for it in items], dtype=np.int64)


def build_kb(extractor, items, class_names, progress_desc="KB features"):
    """A KnowledgeBase of items' features (unreadable images are skipped with a warning)."""
    feats, kept = extract_features(extractor, items, desc=progress_desc)
    if not kept:
        raise datasets.DatasetError("no readable image for the knowledge base")
    return KnowledgeBase.from_items(feats, kept, class_names, extractor.identity)


def _digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def prepare_codec(extractor, split, dataset_name, cbr, channel, seed, epochs=100,
                  recipe="kbsc", lr=1e-4, use_cache=True):
    """Train the codec for a CBR and channel on the split's training images, or load it from
    the cache when the same data, extractor and settings were trained before.
    Returns (codec, cache path, whether it came from the cache)."""
    train_feats, train_kept = extract_features(extractor, split.train, desc="training features")
    vs_feats, vs_kept = extract_features(extractor, split.val_sent, desc="validation features")
    vk_feats, vk_kept = extract_features(extractor, split.val_kb, desc="validation KB features")
    config = CodecConfig(extractor=extractor.identity, cbr=cbr, recipe=recipe,
                         train_channel=channel, epochs=epochs, lr=lr, seed=seed,
                         training_data={"dataset": dataset_name, "n_train": len(train_kept),
                                        "n_val_sent": len(vs_kept), "n_val_kb": len(vk_kept)})
    key = _digest({"config": config.to_dict(),
                   "train": [it.fingerprint() for it in train_kept],
                   "val": [it.fingerprint() for it in vs_kept + vk_kept]})
    path = datasets.cache_dir() / "codecs" / f"codec-{key}.pt"
    if use_cache and path.exists():
        return SemanticCodec.load(path), path, True
    validation = {"sent_features": vs_feats, "sent_labels": labels(vs_kept),
                  "kb_features": vk_feats, "kb_labels": labels(vk_kept)}
    codec, history = train_codec(config, train_feats, validation)
    codec.save(path, history)
    return codec, path, False
