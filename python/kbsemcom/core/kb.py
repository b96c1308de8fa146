"""The receiver's knowledge base: a FAISS index of image features plus a manifest.

On disk a KB is a folder with ``index.faiss`` (IndexFlatL2 over L2-normalised features) and
``manifest.json``: the extractor identity and feature dimension, the build time, the class
names and one entry per image (id, path, label, class name), in index order.
"""
import copy
import json
import time
from pathlib import Path

import faiss
import numpy as np

from .errors import UserError
from .extractors import same_extractor

MANIFEST = "manifest.json"
INDEX = "index.faiss"


class KBMismatchError(UserError, ValueError):
    """A KB whose extractor or feature dimension differs from the codec's or the query's."""


class KBMissingError(UserError, FileNotFoundError):
    """A KB folder that does not exist or lacks its index or manifest."""


class KnowledgeBase:
    """Features of the receiver's images, searchable by nearest neighbour (L2)."""

    def __init__(self, features, entries, class_names, extractor, built_at=None):
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != len(entries):
            raise ValueError(f"{features.shape[0] if features.ndim == 2 else '?'} features for "
                             f"{len(entries)} KB entries")
        if features.shape[1] != int(extractor["dim"]):
            raise KBMismatchError(f"features are {features.shape[1]}-d but extractor "
                                  f"{extractor['name']} gives {extractor['dim']}-d")
        self.index = faiss.IndexFlatL2(features.shape[1])
        self.index.add(features)
        self.entries = list(entries)
        self.class_names = list(class_names)
        self.extractor = dict(extractor)
        self.built_at = built_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    @classmethod
    def from_items(cls, features, items, class_names, extractor):
        entries = [{"image_id": it.image_id, "path": it.source, "label": int(it.label),
                    "class_name": it.class_name} for it in items]
        return cls(features, entries, class_names, extractor)

    @property
    def dim(self):
        return self.index.d

    def __len__(self):
        return self.index.ntotal

    def features(self):
        return self.index.reconstruct_n(0, self.index.ntotal)

    def projected(self, keys):
        """This KB searched by other vectors, one per entry in index order (the same
        entries, manifest and extractor): how a codec that decodes against the KB sees it."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or len(keys) != len(self):
            raise ValueError(f"{len(keys)} keys for a KB of {len(self)} entries")
        view = copy.copy(self)
        view.index = faiss.IndexFlatL2(keys.shape[1])
        view.index.add(keys)
        return view

    def search(self, queries, k=1):
        """Nearest KB entries: (distances [m, k] squared L2, indices [m, k])."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise KBMismatchError(f"query features are {queries.shape[1]}-d but the KB holds "
                                  f"{self.dim}-d features of {self.extractor['name']}")
        return self.index.search(queries, k)

    def check_extractor(self, identity, what="the codec"):
        """Raise KBMismatchError unless ``identity`` is this KB's extractor."""
        if not same_extractor(self.extractor, identity):
            raise KBMismatchError(
                f"the KB was built with {self.extractor['name']} ({self.extractor['dim']}-d) "
                f"but {what} uses {identity.get('name')} ({identity.get('dim')}-d); rebuild the "
                f"KB with the same extractor (kbsemcom build-kb --extractor "
                f"{identity.get('name')}) or use a matching codec")

    def save(self, folder):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / INDEX))
        manifest = {"format": "kbsemcom-kb/1", "extractor": self.extractor, "dim": self.dim,
                    "built_at": self.built_at, "size": len(self),
                    "class_names": self.class_names, "entries": self.entries}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return folder

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        if not (folder / MANIFEST).exists() or not (folder / INDEX).exists():
            raise KBMissingError(f"{folder} is not a knowledge base (needs {INDEX} and "
                                    f"{MANIFEST}); build one with 'kbsemcom build-kb'")
        manifest = json.loads((folder / MANIFEST).read_text())
        index = faiss.read_index(str(folder / INDEX))
        if index.d != int(manifest["dim"]) or index.ntotal != len(manifest["entries"]):
            raise KBMismatchError(f"{folder}: index ({index.ntotal} x {index.d}) does not match "
                                  f"its manifest ({len(manifest['entries'])} x "
                                  f"{manifest['dim']}); rebuild the KB")
        kb = cls.__new__(cls)
        kb.index = index
        kb.entries = manifest["entries"]
        kb.class_names = manifest["class_names"]
        kb.extractor = manifest["extractor"]
        kb.built_at = manifest["built_at"]
        return kb

    def retrieve(self, feature):
        """The nearest entry for one feature, as a dict (entry fields + kb_index, distance)."""
        distances, indices = self.search(feature, 1)
        idx = int(indices[0, 0])
        return dict(self.entries[idx], kb_index=idx, distance=float(distances[0, 0]))
