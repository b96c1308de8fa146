"""Real features for benchmarks/kb_scale.py: every image of the data sets here, extracted in
chunks through the feature cache (core.features), so an interrupted run resumes where it
stopped and kb_scale.py reads the same chunks back.

    nice .venv/bin/python benchmarks/kb_scale_features.py [--extractor efficientnet-lite0]
        [--limit 0]
"""
import argparse
import logging

import numpy as np

from gnuradio.kbsemcom.core import datasets, extractors
from gnuradio.kbsemcom.core.features import extract_features

# Order: a test split of each data set first (all classes early), the big train splits last,
# so a partial run still spans every data set.
SOURCES = [("cifar10", "test"), ("fashion-mnist", "test"), ("caltech100", "all"),
           ("cifar10", "train"), ("fashion-mnist", "train")]
CHUNK = 2000


def real_chunks(extractor, limit=0, extract=True):
    """Yield (data set name, features [m, dim], labels [m]) chunk by chunk. Labels are made
    global across data sets (offset by the classes before). ``extract=False`` yields only the
    chunks already in the cache."""
    offset, total = 0, 0
    for name, split in SOURCES:
        try:
            ds = datasets.open_dataset(name)
        except datasets.DatasetError as err:
            logging.warning("skipping %s: %s", name, err)
            continue
        items = ds.items(split)
        for start in range(0, len(items), CHUNK):
            if limit and total >= limit:
                return
            part = items[start:start + CHUNK]
            if not extract and not _cached(extractor, part):
                continue
            feats, kept = extract_features(extractor, part, desc=f"{name} {split} {start}")
            labels = np.array([offset + it.label for it in kept], np.int64)
            total += len(kept)
            yield name, feats, labels
        offset += len(ds.class_names)


def _cached(extractor, items):
    from gnuradio.kbsemcom.core import features
    key = features._cache_key(extractor, items)
    name = extractor.name.replace('/', '_').replace(':', '_')
    return (datasets.cache_dir() / "features" / f"{name}-{key}.npz").exists()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--limit", type=int, default=0, help="stop after this many images (0: all)")
    args = p.parse_args()
    extractors.set_threads()
    ex = extractors.load_extractor(args.extractor)
    n = 0
    for name, feats, _ in real_chunks(ex, args.limit):
        n += len(feats)
        print(f"{name}: {n} features so far", flush=True)


if __name__ == "__main__":
    main()
