"""Feature extraction over image lists, with a cache and per-image error handling.

A cache entry is keyed by the extractor identity and every image's fingerprint (path, size,
mtime or array id), so it is rebuilt when an image or the extractor changes.
"""
import hashlib
import json
import logging
import os

from concurrent.futures import ThreadPoolExecutor

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


def _cache_path(extractor, items):
    return cache_dir() / "features" / \
        f"{extractor.name.replace('/', '_').replace(':', '_')}-{_cache_key(extractor, items)}.npz"


def extract_features(extractor, items, use_cache=True, desc="features", chunk=64):
    """Features for items: returns (features [m, dim] float32, kept items).

    Images that cannot be decoded are skipped with a warning (they are not in ``kept``).
    A list with ``parts`` (protocols.PooledItems: several data sets) is extracted and cached
    part by part, so each data set's features are shared with the runs that use it alone.
    """
    parts = getattr(items, "parts", None)
    if parts is not None and len(parts) > 1:
        done = [extract_features(extractor, p, use_cache, f"{desc} {i + 1}/{len(parts)}", chunk)
                for i, p in enumerate(parts)]
        return (np.concatenate([f for f, _ in done]).astype(np.float32, copy=False),
                [it for _, kept in done for it in kept])
    path = _cache_path(extractor, items)
    if use_cache and path.exists():
        data = np.load(path)
        keep = set(data["kept"].tolist())
        return data["features"], [it for i, it in enumerate(items) if i in keep]
    feats, kept_idx = [], []
    starts = range(0, len(items), chunk)
    # decoding and preprocessing the next chunk (PIL releases the GIL) overlaps the network's
    # inference on this one
    with tqdm(total=len(items), desc=desc, unit="img", leave=False) as bar, \
            ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_load_chunk, extractor, items, starts[0], chunk) if starts else None
        for n, start in enumerate(starts):
            batch, idx = pending.result()
            if n + 1 < len(starts):
                pending = pool.submit(_load_chunk, extractor, items, starts[n + 1], chunk)
            if idx:
                feats.append(extractor.infer(batch))
                kept_idx.extend(idx)
            bar.update(min(chunk, len(items) - start))
    features = np.concatenate(feats) if feats else np.zeros((0, extractor.dim), np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")  # per process: no shared writer
        np.savez(tmp, features=features, kept=np.asarray(kept_idx, dtype=np.int64))
        tmp.rename(path)
    return features, [items[i] for i in kept_idx]


def _load_chunk(extractor, items, start, chunk):
    """Decode and preprocess items[start:start + chunk]: (input tensor, kept indices);
    unreadable images are skipped with a warning."""
    images, idx = [], []
    for i in range(start, min(start + chunk, len(items))):
        try:
            images.append(items[i].load())
            idx.append(i)
        except ImageLoadError as err:
            log.warning("skipping image %s: %s", items[i].source, err)
    return (extractor.prepare(images) if images else None), idx
