"""The receiver's knowledge base: a FAISS index of image features plus a manifest.

On disk a KB is a folder with ``manifest.json`` and the index file it names
(``index-<generation>.faiss``; ``index.faiss`` in KBs of format 1). The manifest holds the
extractor identity and feature dimension, the build time, the index choice, the class names
and one entry per image (kb_id, image id, path, label, class name), in index order.

Index choice (the one place it is decided)
------------------------------------------
The index is a FAISS *factory string* (``faiss.index_factory``), recorded in the manifest as
``index``, with its search parameters as ``search`` (``faiss.ParameterSpace`` syntax):

* up to ``EXACT_MAX_VALUES`` stored values (4,000 x 1280 features, 40,000 x 128 symbols):
  ``Flat``, exact L2 search (0.4 ms per query at 5,000 x 1280 on this project's 2-core
  machines; it grows linearly, 33 ms at 100,000);
* above, for vectors wider than 128: ``PCA96,IVF<nlist>,PQ48x4fsr,Refine(<store>)``: an
  inverted file over a 96-d principal-axes projection, coded in 4-bit fast-scan product
  quantizer codes of its residuals (24 bytes a vector, scanned in SIMD registers), proposes
  ``k_factor_rf`` candidates per hit, which are re-ranked by the full-dimensional distance,
  so recall against exact search stays high while a query scans ``nprobe / nlist`` of a
  small code. ``<store>`` is ``Flat`` (float32) while the full vectors fit in
  ``REFINE_FLAT_MAX_BYTES``, else ``SQ8`` (one byte per value: 1M x 1280 in 1.3 GB). Measured
  (benchmarks/kb_scale.py, docs/kb.md, 2 cores): at 100k real features p50 0.21 ms at
  recall@1 0.984, at 1M p50 0.66 ms at 0.959, index 1.33 GB;
* above, for vectors of at most 128 values (kbsc-kb's symbol space at CBR 1/48):
  ``IVF<nlist>,Flat``.

Metric. Searches rank by L2 distance, and ``search`` always returns squared L2 distances. An
index with a principal-axes projection (``PCA...``) over vectors of one common length (every
extractor's features are unit length; kbsc-kb's codewords have unit power per symbol) ranks
by inner product instead (``metric`` "ip" in the manifest), over an *uncentred* projection:
for vectors of one length L2 order is inner-product order, and the projection's inner
product misses only the part of it off the top axes, where an L2 distance between
projections also carries each entry's own energy off those axes, an entry-dependent error:
at 100k real features the same index recalled 0.966 of exact search's nearest entries under
L2 (64 lists, 128 candidates) and 0.981 under the inner product (24 lists, 32 candidates;
benchmarks/kb_scale.py, docs/kb.md). Vectors of another length added later are refused with
a clear error.

``nlist`` is the power of two nearest to ``4 sqrt(n)`` (1,024 at 100k, 4,096 at 1M), FAISS's
usual rule. Any other factory string can be given (``kbsemcom build-kb --index``); the
index stores each entry's stable ``kb_id`` (an IVF itself, any other inside an
``IndexIDMap2``), which survives live additions and removals.

Live changes and crash safety
-----------------------------
``add`` and ``remove`` change a loaded KB in memory without a rebuild (a trained index keeps
its training); ``save`` persists it atomically: the new index goes to a new file, then the
manifest naming it replaces the old one with ``os.replace`` (the commit point), so a crash at
any moment leaves the old KB or the new one. Indexes that cannot delete (HNSW, Refine) keep
removed entries as tombstones (``removed_ids`` in the manifest) that searches skip.
"""
import copy
import json
import math
import os
import re
import time
from pathlib import Path

import faiss
import numpy as np

from .errors import UserError
from .extractors import same_extractor

MANIFEST = "manifest.json"
LEGACY_INDEX = "index.faiss"
FORMAT = "kbsemcom-kb/2"

EXACT_MAX_VALUES = 4_000 * 1280       # exact search up to n x dim values (40,000 x 128)
UNPROJECTED_MAX_DIM = 128             # narrower vectors are searched as they are
REDUCED_DIM = 96                      # principal axes kept for the IVF's coarse search
DEFAULT_NPROBE = 64                   # inverted lists a query scans (IVF without projection)
PROJECTED_LIST_SHARE = 32             # a projected IVF scans 1/32 of its lists (128 at 1M)
DEFAULT_K_FACTOR_RF = 128             # candidates per hit re-ranked on float32 vectors,
K_FACTOR_RF_SQ8 = 256                 # and on one-byte ones (noisier, a quarter the bytes)
REFINE_FLAT_MAX_BYTES = 1 << 30       # re-rank on float32 vectors up to 1 GiB, else SQ8
TRAIN_PER_LIST = 64                   # k-means sample: 64 points per inverted list
TOMBSTONE_WARN = 10_000               # past this many tombstones a rebuild pays
NORM_TOLERANCE = 1e-3                 # relative spread of lengths still "one common length"


class KBMismatchError(UserError, ValueError):
    """A KB whose extractor or feature dimension differs from the codec's or the query's."""


class KBMissingError(UserError, FileNotFoundError):
    """A KB folder that does not exist or lacks its index or manifest."""


class KBIndexError(UserError, ValueError):
    """A FAISS factory string or search parameter that FAISS cannot build or set."""


class KBEntryError(UserError, ValueError):
    """An add or remove that names an image the KB already has, or lacks."""


def default_index(n, dim):
    """The FAISS factory string used for ``n`` vectors of ``dim`` values (module docstring)."""
    if n * dim <= EXACT_MAX_VALUES:
        return "Flat"
    nlist = 1 << round(math.log2(4 * math.sqrt(n)))
    if dim <= UNPROJECTED_MAX_DIM:
        return f"IVF{nlist},Flat"
    store = "Flat" if n * dim * 4 <= REFINE_FLAT_MAX_BYTES else "SQ8"
    return f"PCA{REDUCED_DIM},IVF{nlist},PQ{REDUCED_DIM // 2}x4fsr,Refine({store})"


def default_search(factory):
    """Search parameters for a factory string: nprobe lists of an IVF (1/PROJECTED_LIST_SHARE
    of them behind a projection, else DEFAULT_NPROBE), k_factor_rf candidates per hit
    re-ranked by a Refine, efSearch 64 in an HNSW (measured: benchmarks/kb_scale.py,
    docs/kb.md)."""
    params = []
    if (ivf := re.search(r"IVF(\d+)", factory)) is not None:
        nlist = int(ivf.group(1))
        nprobe = (min(nlist, max(16, nlist // PROJECTED_LIST_SHARE))
                  if factory.startswith("PCA") else DEFAULT_NPROBE)
        params.append(f"nprobe={nprobe}")
    if "HNSW" in factory:
        params.append("efSearch=64")
    if (refine := re.search(r"Refine\((\w+)", factory)) is not None:
        k = K_FACTOR_RF_SQ8 if refine.group(1) == "SQ8" else DEFAULT_K_FACTOR_RF
        params.append(f"k_factor_rf={k}")
    return ",".join(params)


def choose_metric(factory, vectors):
    """"ip" for an index with a principal-axes projection over vectors of one common length,
    else "l2" (module docstring, "Metric")."""
    if "PCA" not in factory or len(vectors) == 0:
        return "l2"
    return "ip" if common_norm(vectors) is not None else "l2"


def common_norm(vectors):
    """The length all ``vectors`` share (within NORM_TOLERANCE), else None."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float32), axis=1)
    mid = float(np.median(norms))
    return mid if mid > 0 and not _off_length(norms, mid).any() else None


def _off_length(norms, length):
    """Which of these lengths differ from ``length`` by more than NORM_TOLERANCE."""
    return np.abs(norms - length) > NORM_TOLERANCE * length


def build_index(factory, dim, train=None, seed=0, metric="l2"):
    """An empty, trained IndexIDMap2 over ``faiss.index_factory(dim, factory)``. ``train``
    (vectors [m, dim]) is needed by indexes that learn (IVF, PCA, PQ, SQ); a sample of
    ``TRAIN_PER_LIST`` per inverted list is drawn from it (seeded). ``metric`` "ip" ranks by
    inner product, with every PCA step uncentred (module docstring, "Metric")."""
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    try:
        inner = faiss.index_factory(int(dim), factory, faiss_metric)
    except RuntimeError as err:
        raise KBIndexError(f"FAISS cannot build index {factory!r} for {dim}-d vectors "
                           f"({_faiss_reason(err)}); give a factory string "
                           "such as Flat, IVF1024,Flat, HNSW32 or PCA128,IVF1024,Flat,"
                           "Refine(Flat)") from None
    if not inner.is_trained:
        if train is None or len(train) == 0:
            raise KBIndexError(f"index {factory!r} must be trained: build it from features")
        train = np.ascontiguousarray(train, dtype=np.float32)
        ivf = _ivf(inner)
        if ivf is not None and len(train) < ivf.nlist:
            raise KBIndexError(f"index {factory!r} has {ivf.nlist} lists but only "
                               f"{len(train)} vectors to train on; use fewer lists "
                               f"(IVF{max(1, len(train) // 39)}) or Flat")
        cap = max(TRAIN_PER_LIST * (ivf.nlist if ivf is not None else 0), 65_536)
        if len(train) > cap:
            pick = np.sort(np.random.default_rng(seed).choice(len(train), cap, replace=False))
            train = train[pick]
        if metric == "ip":
            _train_uncentred_pca(inner, train)
        inner.train(train)
    if (ivf := _ivf(inner)) is not None:
        # removal and reconstruction by id both need the id -> list map
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    try:  # an IVF stores ids itself (and an IDMap over it breaks on removal: no renumbering)
        inner.add_with_ids(np.zeros((0, inner.d), np.float32), np.zeros(0, np.int64))
        return inner
    except RuntimeError:
        return faiss.IndexIDMap2(inner)


def _train_uncentred_pca(index, train):
    """Train each PCA step of ``index`` as an uncentred one: on ``train`` and its mirror image
    (-train), whose mean is zero and whose covariance is ``train``'s second moment, so the
    axes keep the direction of the mean and the step subtracts nothing. Inner products of
    uncentred projections approximate the full ones; centring would add an entry-dependent
    term (module docstring, "Metric")."""
    if isinstance(index, faiss.IndexRefine):
        index = faiss.downcast_index(index.base_index)
    if not isinstance(index, faiss.IndexPreTransform):
        return
    x = train
    for i in range(index.chain.size()):
        step = faiss.downcast_VectorTransform(index.chain.at(i))
        if isinstance(step, faiss.PCAMatrix) and not step.is_trained:
            step.train(np.concatenate([x, -x]))
            faiss.copy_array_to_vector(np.zeros(step.d_in, np.float32), step.mean)
            faiss.copy_array_to_vector(np.zeros(step.d_out, np.float32), step.b)
        elif not step.is_trained:
            return  # later steps train with the index itself
        x = step.apply(x)


def _faiss_reason(err):
    """The reason in a FAISS RuntimeError, without its C++ location."""
    return str(err).strip().splitlines()[-1].split(": ")[-1]


def _ivf(index):
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def set_search(index, params):
    """Apply search parameters (ParameterSpace syntax, e.g. 'nprobe=16,k_factor_rf=16')."""
    if not params:
        return
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except RuntimeError as err:
        raise KBIndexError(f"search parameters {params!r} do not fit this index "
                           f"({_faiss_reason(err)})") from None


def search_one(index):
    """A function searching ``index`` for one query vector the way the receiver does
    (``KnowledgeBase.search``, and so kb_lookup), which benchmarks/kb_scale.py times: FAISS at
    one OpenMP thread in the calling thread (one query gains nothing from OpenMP, and its
    spinning threads cost milliseconds on a loaded machine). Returns (distances [1, k],
    ids [1, k]). Calling FAISS's C++ search directly with preallocated outputs saved nothing
    measurable over the Python wrapper (20 us either way on a trivial search, docs/kb.md)."""
    def one(query, k=1):
        x = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return index.search(x, k)
        finally:
            faiss.omp_set_num_threads(before)
    return one


def index_bytes(index):
    """Size of the serialised index, a close measure of its memory."""
    return int(faiss.serialize_index(index).nbytes)


class KnowledgeBase:
    """Features of the receiver's images, searchable by nearest neighbour (L2).

    ``index``: the FAISS index spec (factory string) or None for ``default_index``;
    ``search``: its search parameters or None for ``default_search``; ``metric``: "l2", "ip"
    or None for ``choose_metric`` (module docstring, "Metric").
    """

    def __init__(self, features, entries, class_names, extractor, built_at=None, index=None,
                 search=None, metric=None):
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != len(entries):
            raise ValueError(f"{features.shape[0] if features.ndim == 2 else '?'} features for "
                             f"{len(entries)} KB entries")
        if features.shape[1] != int(extractor["dim"]):
            raise KBMismatchError(f"features are {features.shape[1]}-d but extractor "
                                  f"{extractor['name']} gives {extractor['dim']}-d")
        self.index_spec = index or default_index(*features.shape)
        self.search_params = default_search(self.index_spec) if search is None else search
        self._set_metric(metric or choose_metric(self.index_spec, features), features)
        self.index = build_index(self.index_spec, features.shape[1], features,
                                 metric=self.metric)
        set_search(self.index, self.search_params)
        ids = np.arange(len(entries), dtype=np.int64)
        self.index.add_with_ids(features, ids)
        self.entries = [dict(e, kb_id=int(i)) for e, i in zip(entries, ids)]
        self._ids = ids
        self.tombstones = set()
        self.class_names = list(class_names)
        self.extractor = dict(extractor)
        self.built_at = built_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.generation = 0
        # open-set calibrations of this KB ('kbsemcom kb calibrate'), keyed by codec
        self.open_set = {}

    @classmethod
    def from_items(cls, features, items, class_names, extractor, index=None, search=None):
        return cls(features, entries_of(items), class_names, extractor, index=index,
                   search=search)

    def _set_metric(self, metric, vectors):
        """Record the metric and, for "ip", the entries' common length (checked)."""
        self.metric, self.entry_norm = metric, None
        if metric == "ip":
            self.entry_norm = common_norm(vectors)
            if self.entry_norm is None:
                raise KBIndexError("an inner-product KB needs vectors of one common length; "
                                   "these differ: use metric 'l2'")
        elif metric != "l2":
            raise KBIndexError(f"unknown metric {metric!r}: use 'l2' or 'ip'")

    @property
    def dim(self):
        return self.index.d

    def __len__(self):
        return len(self.entries)

    def features(self):
        """The stored vectors in entry order (exact for Flat / Refine(Flat) indexes,
        approximate for compressed ones)."""
        if not len(self):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(self._ids)

    def projected(self, keys):
        """This KB searched by other vectors, one per entry in entry order (the same
        entries, manifest and extractor): how a codec that decodes against the KB sees it.
        The keys get an exact index when the KB is exact, else the default for their size
        and width (kbsc-kb's 128-value symbol space: an IVF over the symbols)."""
        keys = np.ascontiguousarray(keys, dtype=np.float32)
        if keys.ndim != 2 or len(keys) != len(self):
            raise ValueError(f"{len(keys)} keys for a KB of {len(self)} entries")
        view = copy.copy(self)
        view.entries = list(self.entries)
        view.tombstones = set()
        view.index_spec = "Flat" if self.index_spec == "Flat" else default_index(*keys.shape)
        view.search_params = default_search(view.index_spec)
        view._set_metric(choose_metric(view.index_spec, keys), keys)
        view.index = build_index(view.index_spec, keys.shape[1], keys, metric=view.metric)
        set_search(view.index, view.search_params)
        view.index.add_with_ids(keys, self._ids)
        return view

    def search(self, queries, k=1):
        """Nearest KB entries: (distances [m, k] squared L2, positions in ``entries`` [m, k];
        -1 where the KB has fewer than k entries)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise KBMismatchError(f"query features are {queries.shape[1]}-d but the KB holds "
                                  f"{self.dim}-d features of {self.extractor['name']}")
        extra = len(self.tombstones)
        if len(queries) == 1:  # the receiver's case: one thread, no wrapper (search_one)
            dist, ids = search_one(self.index)(queries, k + extra)
        else:
            dist, ids = self.index.search(queries, k + extra)
        if extra:
            dist, ids = _skip(dist, ids, self.tombstones, k)
        if self.metric == "ip":  # inner products -> squared L2, exact for one common length
            dist = (np.einsum("ij,ij->i", queries, queries)[:, None] + self.entry_norm ** 2
                    - 2 * dist)
            dist[ids < 0] = np.inf
        if len(self._ids) and self._ids[-1] == len(self._ids) - 1:
            return dist, ids  # ids 0..n-1 in order: an id is its position
        pos = np.searchsorted(self._ids, ids)
        return dist, np.where(ids >= 0, pos, -1)

    def check_extractor(self, identity, what="the codec"):
        """Raise KBMismatchError unless ``identity`` is this KB's extractor."""
        if not same_extractor(self.extractor, identity):
            raise KBMismatchError(
                f"the KB was built with {self.extractor['name']} ({self.extractor['dim']}-d) "
                f"but {what} uses {identity.get('name')} ({identity.get('dim')}-d); rebuild the "
                f"KB with the same extractor (kbsemcom build-kb --extractor "
                f"{identity.get('name')}) or use a matching codec")

    # -- live changes ------------------------------------------------------------------
    def add(self, features, entries):
        """Append entries (dicts with image_id, path, label, class_name) and their features
        [m, dim]; returns their kb_ids. An image id the KB already holds is refused."""
        features = np.ascontiguousarray(np.atleast_2d(features), dtype=np.float32)
        entries = list(entries)
        if features.shape != (len(entries), self.dim):
            raise KBMismatchError(f"{features.shape[0]} x {features.shape[1]} features for "
                                  f"{len(entries)} new entries of a {self.dim}-d KB")
        if self.metric == "ip" and len(features):
            norms = np.linalg.norm(features, axis=1)
            bad = _off_length(norms, self.entry_norm)
            if bad.any():
                raise KBMismatchError(
                    f"this KB ranks by inner product, which needs every vector at length "
                    f"{self.entry_norm:.4g} (the extractor's features are unit length); "
                    f"{int(bad.sum())} new vector(s) have length {norms[bad][0]:.4g}: add "
                    "features from the KB's own extractor, or rebuild the KB")
        have = {e["image_id"] for e in self.entries}
        new_ids = [e["image_id"] for e in entries]
        dup = sorted((have & set(new_ids)) | {i for i in new_ids if new_ids.count(i) > 1})
        if dup:
            raise KBEntryError(f"the KB already holds image {dup[0]!r}"
                               f"{f' and {len(dup) - 1} more' if len(dup) > 1 else ''}; "
                               "remove it first to replace it")
        start = self.next_id()
        ids = np.arange(start, start + len(entries), dtype=np.int64)
        self.index.add_with_ids(features, ids)
        for e in entries:
            if e.get("class_name") and e["class_name"] not in self.class_names:
                self.class_names.append(e["class_name"])
        self.entries += [dict(e, kb_id=int(i)) for e, i in zip(entries, ids)]
        self._ids = np.concatenate([self._ids, ids])
        return ids.tolist()

    def remove(self, image_ids):
        """Remove the entries of these image ids; returns how many. Unknown ids are refused."""
        image_ids = [image_ids] if isinstance(image_ids, str) else list(image_ids)
        drop = {e["image_id"]: e["kb_id"] for e in self.entries if e["image_id"] in
                set(image_ids)}
        missing = [i for i in image_ids if i not in drop]
        if missing:
            raise KBEntryError(f"the KB holds no image {missing[0]!r}"
                               f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}"
                               "; `kbsemcom kb list` shows its image ids")
        ids = np.array(sorted(drop.values()), dtype=np.int64)
        try:
            self.index.remove_ids(ids)
        except RuntimeError:  # HNSW, Refine: no deletion in FAISS; searches skip them
            self.tombstones |= set(ids.tolist())
        keep = ~np.isin(self._ids, ids)
        self.entries = [e for e, k in zip(self.entries, keep) if k]
        self._ids = self._ids[keep]
        return len(ids)

    def next_id(self):
        last = [int(self._ids[-1])] if len(self._ids) else []
        return max(last + [max(self.tombstones, default=-1)]) + 1

    # -- persistence -------------------------------------------------------------------
    def manifest(self, index_file):
        return {"format": FORMAT, "extractor": self.extractor, "dim": self.dim,
                "built_at": self.built_at, "size": len(self), "index": self.index_spec,
                "search": self.search_params, "metric": self.metric,
                **({"entry_norm": self.entry_norm} if self.metric == "ip" else {}),
                "index_file": index_file,
                "generation": self.generation, "removed_ids": sorted(self.tombstones),
                "class_names": self.class_names, "entries": self.entries,
                **({"open_set": self.open_set} if getattr(self, "open_set", None) else {})}

    def save(self, folder):
        """Write the KB atomically (module docstring): a crash leaves the old or new KB."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        old = _read_manifest(folder)
        self.generation = max(self.generation, old.get("generation", -1) + 1 if old else 0)
        index_file = f"index-{self.generation}.faiss"
        tmp = folder / f".{index_file}.tmp-{os.getpid()}"
        faiss.write_index(self.index, str(tmp))
        _fsync(tmp)
        os.replace(tmp, folder / index_file)
        _write_atomic(folder / MANIFEST, json.dumps(self.manifest(index_file), indent=1))
        # keep the previous index too: a reader that read the old manifest may still open it
        keep = {index_file, (old or {}).get("index_file", LEGACY_INDEX)}
        for f in folder.iterdir():
            if (f.name.startswith("index") and f.suffix == ".faiss" and f.name not in keep) or \
                    (f.name.startswith(".index-") and ".tmp-" in f.name):
                f.unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder):
        folder = Path(folder)
        manifest = _read_manifest(folder)
        index_file = (manifest or {}).get("index_file", LEGACY_INDEX)
        if manifest is None or not (folder / index_file).exists():
            raise KBMissingError(f"{folder} is not a knowledge base (needs {MANIFEST} and the "
                                 f"index it names); build one with 'kbsemcom build-kb'")
        index = faiss.read_index(str(folder / index_file))
        entries = manifest["entries"]
        tombstones = set(manifest.get("removed_ids", []))
        if index.d != int(manifest["dim"]) or index.ntotal != len(entries) + len(tombstones):
            raise KBMismatchError(f"{folder}: index ({index.ntotal} x {index.d}) does not match "
                                  f"its manifest ({len(entries)} x "
                                  f"{manifest['dim']}); rebuild the KB")
        kb = cls.__new__(cls)
        if "kb_id" not in (entries[0] if entries else {"kb_id": 0}):  # format 1: a bare Flat
            flat = index
            index = build_index("Flat", flat.d)
            index.add_with_ids(flat.reconstruct_n(0, flat.ntotal),
                               np.arange(flat.ntotal, dtype=np.int64))
            entries = [dict(e, kb_id=i) for i, e in enumerate(entries)]
        kb.index = index
        kb.index_spec = manifest.get("index", "Flat")
        kb.search_params = manifest.get("search", default_search(kb.index_spec))
        kb.metric, kb.entry_norm = manifest.get("metric", "l2"), manifest.get("entry_norm")
        if (index.metric_type == faiss.METRIC_INNER_PRODUCT) != (kb.metric == "ip"):
            raise KBMismatchError(f"{folder}: its manifest says metric {kb.metric!r} but its "
                                  "index ranks otherwise; rebuild the KB")
        set_search(kb.index, kb.search_params)
        kb.entries = entries
        kb._ids = np.array([e["kb_id"] for e in entries], dtype=np.int64)
        kb.tombstones = tombstones
        kb.class_names = manifest["class_names"]
        kb.extractor = manifest["extractor"]
        kb.built_at = manifest["built_at"]
        kb.generation = manifest.get("generation", 0)
        kb.open_set = manifest.get("open_set", {})
        return kb

    def retrieve(self, feature):
        """The nearest entry for one feature, as a dict (entry fields + kb_index, distance)."""
        distances, positions = self.search(feature, 1)
        pos = int(positions[0, 0])
        if pos < 0:
            raise KBEntryError("the KB is empty: add images with `kbsemcom kb add`")
        return dict(self.entries[pos], kb_index=pos, distance=float(distances[0, 0]))


def entries_of(items):
    """Manifest entries of data-set items."""
    return [{"image_id": it.image_id, "path": it.source, "label": int(it.label),
             "class_name": it.class_name} for it in items]


def _skip(dist, ids, tombstones, k):
    """The first k hits of each row that are not tombstones."""
    out_d = np.full((len(ids), k), np.inf, np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        live = [j for j, i in enumerate(ids[r]) if i >= 0 and int(i) not in tombstones][:k]
        out_d[r, :len(live)], out_i[r, :len(live)] = dist[r, live], ids[r, live]
    return out_d, out_i


def _read_manifest(folder):
    try:
        return json.loads((Path(folder) / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except (NotADirectoryError, json.JSONDecodeError) as err:
        raise KBMissingError(f"{folder}: unreadable {MANIFEST} ({err}); rebuild the KB") \
            from None


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_atomic(path, text):
    """Write a file so that readers see the old content or the new, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
