"""Feature extraction over image lists, with a cache and per-image error handling.

A cache entry is keyed by the extractor identity and every image's fingerprint (path, size,
mtime or array id), so it is rebuilt when an image or the extractor changes.
"""
import hashlib
import json
import logging
import os

import numpy as np
from tqdm import tqdm

from .datasets import ImageLoadError, cache_dir

log = logging.getLogger("kbsemcom.features")


def _cache_key(extractor, items):
    h = hashlib.sha256(json.dumps(extractor.identity, sort_keys=True).encode())
    for it in items:
        h.update(it.fingerprint().encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def extract_features(extractor, items, use_cache=True, desc="features", chunk=64):
    """Features for items: returns (features [m, dim] float32, kept items).

    Images that cannot be decoded are skipped with a warning (they are not in ``kept``).
    """
    path = cache_dir() / "features" / f"{extractor.name.replace('/', '_').replace(':', '_')}" \
        f"-{_cache_key(extractor, items)}.npz"
    if use_cache and path.exists():
        data = np.load(path)
        keep = set(data["kept"].tolist())
        return data["features"], [it for i, it in enumerate(items) if i in keep]
    feats, kept_idx = [], []
    with tqdm(total=len(items), desc=desc, unit="img", leave=False) as bar:
        for start in range(0, len(items), chunk):
            images, idx = [], []
            for i in range(start, min(start + chunk, len(items))):
                try:
                    images.append(items[i].load())
                    idx.append(i)
                except ImageLoadError as err:
                    log.warning("skipping image %s: %s", items[i].source, err)
            if images:
                feats.append(extractor.embed(images))
                kept_idx.extend(idx)
            bar.update(min(chunk, len(items) - start))
    features = np.concatenate(feats) if feats else np.zeros((0, extractor.dim), np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")  # per process: no shared writer
        np.savez(tmp, features=features, kept=np.asarray(kept_idx, dtype=np.int64))
        tmp.rename(path)
    return features, [items[i] for i in kept_idx]
