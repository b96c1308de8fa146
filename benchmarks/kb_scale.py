#!/usr/bin/env python3
"""KB at scale: search latency, throughput, recall and semantic accuracy of the default index
at each KB size, against exact search, the way the receiver searches (one query at a time).

Entries: every real feature in the cache (benchmarks/kb_scale_features.py extracts them; all
data sets here hold about 140,000 images) except the held-out queries; above that, entries
drawn from a model fitted to the real KB features: per class, a Gaussian in the top
``--model-rank`` principal axes of the real features (class mean, per-axis standard deviation);
plus isotropic noise with the real features' residual variance off those axes, then scaled to
unit length like the real ones; or, on the next axes up to ``--model-axes``, the real
features' spread per axis (one Gaussian for all classes), isotropic noise past them, scaled to
unit length
like the real ones (``--model-residual spectrum``). Class shares follow the real classes. The
default, ``--model-residual isotropic``, puts isotropic noise right after the top
``--model-rank`` axes instead: at 10,000 entries its recall under an IVF over a 128-d
projection was the closer of the two to a KB of real features (docs/kb.md).
``--max-real 0`` draws every entry from the model, to compare it with a KB of real features.
Queries: held-out real images (``--queries`` of them, drawn across data sets), sent through
the paper's codec (kbsc, CBR 1/48, trained on real KB features) over AWGN at 0 dB; the
decoded features search the KB. Semantic accuracy = share whose top-1 entry has the query's
class; recall@1 = share whose top-1 entry is exact search's top-1. A second held-out set,
``--val-queries`` validation queries, is measured beside them and printed apart: choose an
index or search on the validation columns, report the test columns.

    nice .venv/bin/python benchmarks/kb_scale_features.py      # real features, resumable
    nice .venv/bin/python benchmarks/kb_scale.py --sizes 10000,100000,1000000

Prints a Markdown table (or --json lines) with the machine, threads, seed and the index each
size gets by default (core/kb.py default_index); --index overrides it for every size.
Latency is given twice: CPU time of the searching thread (what the search costs; a single
query runs on the calling thread with FAISS at one thread) and wall-clock time (what it took
on this machine at that moment, with its load average printed: on a shared machine the wall
clock measures the neighbours too). Build time is wall clock: training plus adding.
"""
import argparse
import json
import os
import platform
import resource
import sys
import time

import faiss
import numpy as np

from gnuradio.kbsemcom.core import extractors
from gnuradio.kbsemcom.core.codec import recipe_config, train_codec
from gnuradio.kbsemcom.core.kb import (build_index, choose_metric, default_index,
                                       default_search, index_bytes, search_one, set_search)

import kb_scale_features

CHUNK = 50_000


def load_real(extractor_spec):
    ex = extractors.load_extractor(extractor_spec)
    feats, labels, names = [], [], []
    for name, f, lab in kb_scale_features.real_chunks(ex, extract=False):
        feats.append(f)
        labels.append(lab)
        names.append(name)
    if not feats:
        raise SystemExit("no real features in the cache: run benchmarks/kb_scale_features.py")
    return np.concatenate(feats), np.concatenate(labels), sorted(set(names)), ex


class FittedModel:
    """Per-class Gaussian in the top principal axes plus a residual (module docstring).

    residual 'spectrum': the next ``axes - rank`` principal axes get the real features'
    spread on each axis (one Gaussian for all classes), the space past them isotropic noise
    with the variance left; 'isotropic': isotropic noise off the top ``rank`` axes with the
    real features' residual variance (the model of the 2-3 December runs, which spreads the
    residual evenly over all 1280 dimensions where real features concentrate it)."""

    def __init__(self, feats, labels, rank, residual="spectrum", axes=512):
        self.mean = feats.mean(0)
        x = feats - self.mean
        _, s, vt = np.linalg.svd(x[:min(len(x), 20_000)], full_matrices=False)
        keep = rank if residual == "isotropic" else min(max(axes, rank), len(vt))
        self.rank = rank
        self.axes = vt[:keep].astype(np.float32)
        coords = x @ self.axes.T
        resid = x - coords @ self.axes
        self.resid_std = float(np.sqrt((resid ** 2).mean()))
        self.rest_std = coords[:, rank:].std(0).astype(np.float32)
        self.classes, counts = np.unique(labels, return_counts=True)
        self.share = counts / counts.sum()
        self.cmean = np.stack([coords[labels == c, :rank].mean(0) for c in self.classes])
        self.cstd = np.stack([coords[labels == c, :rank].std(0) + 1e-6 for c in self.classes])

    def draw(self, n, seed):
        rng = np.random.default_rng(seed)
        which = rng.choice(len(self.classes), n, p=self.share)
        coords = rng.standard_normal((n, len(self.axes)), dtype=np.float32)
        coords[:, :self.rank] = self.cmean[which] + self.cstd[which] * coords[:, :self.rank]
        coords[:, self.rank:] *= self.rest_std
        x = self.mean + coords @ self.axes
        x += self.resid_std * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), self.classes[which]


def kb_chunks(real, real_labels, model, size, seed):
    """The KB of ``size`` entries chunk by chunk (same chunks every call): real first."""
    if len(real):
        yield real[:size], real_labels[:size]
    left, i = size - min(size, len(real)), 0
    while left > 0:
        n = min(CHUNK, left)
        yield model.draw(n, seed * 1_000_003 + i)
        left, i = left - n, i + 1


def exact_top1(chunks, queries):
    """Exact nearest entry of each query over the KB's chunks (brute force, chunk by chunk)."""
    best_d = np.full(len(queries), np.inf, np.float32)
    best_i = np.zeros(len(queries), np.int64)
    best_lab = np.zeros(len(queries), np.int64)
    start = 0
    for x, lab in chunks:
        d, i = faiss.knn(queries, x, 1)
        better = d[:, 0] < best_d
        best_d[better], best_i[better] = d[better, 0], start + i[better, 0]
        best_lab[better] = lab[i[better, 0]]
        start += len(x)
    return best_i, best_lab


def measure(size, specs, searches, real, real_labels, model, queries, q_labels, seed,
            threads, keys=None, n_val=0, metrics=None):
    """Rows for every (index, search) at one KB size: the KB's chunks and exact search are
    computed once and shared by the indexes. ``keys`` maps feature chunks to the searched
    space (kbsc-kb: the codec's symbols), None for the features themselves. The first
    ``n_val`` queries are validation queries (to choose an index and its search on), the
    rest test queries (the reported figures); each row gives both. ``metrics``: per spec "l2",
    "ip" or "auto" (core/kb.py choose_metric, what build-kb uses; the default)."""
    def chunks():
        for x, lab in kb_chunks(real, real_labels, model, size, seed):
            yield (x if keys is None else keys(x)), lab
    train = next(iter(kb_chunks(real, real_labels, model, size, seed)))[0]
    if len(train) < min(size, 262_144):
        extra = model.draw(min(size, 262_144) - len(train), seed + 99)[0]
        train = np.concatenate([train, extra])
    if keys is not None:
        train = keys(train)
    train = train[:262_144]
    ex_i, ex_lab = exact_top1(chunks(), queries)
    rows = []
    for spec, spec_searches, metric in zip(specs, searches, metrics or ["auto"] * len(specs)):
        t0 = time.perf_counter()
        spec_metric = choose_metric(spec, train) if metric == "auto" else metric
        index = build_index(spec, train.shape[1], train, seed, metric=spec_metric)
        labels, start = [], 0
        for x, lab in chunks():
            index.add_with_ids(x, np.arange(start, start + len(x), dtype=np.int64))
            labels.append(lab)
            start += len(x)
        build_s = time.perf_counter() - t0
        labels = np.concatenate(labels)
        mem = index_bytes(index)
        for search in spec_searches:
            set_search(index, search)
            timed = _time_queries(index, queries, threads, n_val)
            row = dict(timed["test"], size=size, real_entries=int(min(size, len(real))),
                       index=spec, metric=spec_metric, search=search, index_mb=mem / 1e6, build_s=build_s)
            for part, sl in (("test", slice(n_val, None)), ("val", slice(0, n_val))):
                hits = timed[part].pop("hits")
                got = dict(recall_at_1=float((hits == ex_i[sl]).mean()),
                           accuracy=float((labels[hits] == q_labels[sl]).mean()),
                           accuracy_exact=float((ex_lab[sl] == q_labels[sl]).mean()))
                if part == "test":
                    row.update(got)
                    row.pop("hits")
                elif n_val:
                    row.update({f"val_{k}": v for k, v in {**timed["val"], **got}.items()})
            row.update(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
                       load_avg=os.getloadavg()[0])
            rows.append(row)
            yield row
            build_s = None
        del index


def _time_queries(index, queries, threads, n_val=0):
    """Single-query latency and hits the way the receiver searches (kb.search_one: FAISS at
    one thread, preallocated outputs), then batch throughput; {"test": ..., "val": ...}, the
    validation set being the first ``n_val`` queries (timed in the same loop)."""
    one = search_one(index)
    for q in queries[:50]:  # warm-up
        one(q)
    lat, cpu = [], []
    hits = np.zeros(len(queries), np.int64)
    for k, q in enumerate(queries):
        t, c = time.perf_counter(), time.thread_time()
        _, i = one(q)
        cpu.append(time.thread_time() - c)
        lat.append(time.perf_counter() - t)
        hits[k] = i[0, 0]
    faiss.omp_set_num_threads(threads)
    t, c = time.perf_counter(), time.process_time()
    index.search(queries[n_val:], 1)
    batch_qps = (len(queries) - n_val) / (time.perf_counter() - t)
    batch_cpu_qps = (len(queries) - n_val) / max(time.process_time() - c, 1e-9)
    lat, cpu = np.array(lat) * 1e3, np.array(cpu) * 1e3

    def stats(sl):
        return {"p50_cpu_ms": float(np.percentile(cpu[sl], 50)),
                "p99_cpu_ms": float(np.percentile(cpu[sl], 99)),
                "p50_ms": float(np.percentile(lat[sl], 50)),
                "p99_ms": float(np.percentile(lat[sl], 99)), "hits": hits[sl]}
    return {"test": dict(stats(slice(n_val, None)), batch_qps=batch_qps,
                         batch_cpu_qps=batch_cpu_qps),
            "val": stats(slice(0, n_val)) if n_val else {"hits": hits[:0]}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--index", action="append", default=None,
                   help="factory string; repeat to compare several on the same KBs (default: "
                        "core/kb.py default_index for each size)")
    p.add_argument("--search", action="append", default=None,
                   help="search parameters, several separated by ';' (each measured on the "
                        "same index); 'default' is the index's own (the default). Give it once "
                        "for every --index or once per --index")
    p.add_argument("--recipe", default="kbsc", choices=["kbsc", "kbsc-kb"],
                   help="the codec: kbsc searches decoded features, kbsc-kb searches its "
                        "128-value symbol space (the KB's codewords)")
    p.add_argument("--metric", action="append", choices=["auto", "l2", "ip"], default=None,
                   help="ranking of the index, once for every --index or once per --index: "
                        "auto (the default) is build-kb's choice (core/kb.py choose_metric: "
                        "inner product over an uncentred projection for vectors of one "
                        "length), l2 the plain L2 index of the runs before it")
    p.add_argument("--extractor", default="efficientnet-lite0")
    p.add_argument("--queries", type=int, default=1000, help="held-out real test queries")
    p.add_argument("--val-queries", type=int, default=1000,
                   help="further held-out real queries to choose indexes and searches on "
                        "(reported apart as 'val'; 0: none)")
    p.add_argument("--snr-db", type=float, default=0.0)
    p.add_argument("--cbr", default="1/48")
    p.add_argument("--epochs", type=int, default=20, help="codec training epochs")
    p.add_argument("--model-rank", type=int, default=64,
                   help="principal axes with a Gaussian per class in the fitted model")
    p.add_argument("--model-residual", default="isotropic", choices=["isotropic", "spectrum"],
                   help="the fitted model past those axes (FittedModel)")
    p.add_argument("--model-axes", type=int, default=512,
                   help="principal axes with the real spread per axis (residual 'spectrum')")
    p.add_argument("--max-real", type=int, default=None,
                   help="real features used as KB entries at most (0: every entry drawn from "
                        "the fitted model; to compare the model with real features)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    extractors.set_threads()
    threads = int(os.environ.get("KBSEMCOM_THREADS", os.cpu_count() or 1))
    faiss.omp_set_num_threads(threads)
    feats, labels, sets, ex = load_real(args.extractor)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(feats))
    n_q = args.val_queries + args.queries  # test queries as before, validation after them
    q_idx = np.concatenate([order[args.queries:n_q], order[:args.queries]])
    kb_idx = order[n_q:]
    real, real_labels = feats[kb_idx], labels[kb_idx]
    # the codec: trained on real KB features (never on the queries), picked on a slice of them
    n_val = min(1000, len(real) // 5)
    val = {"sent_features": real[:n_val // 2], "sent_labels": real_labels[:n_val // 2],
           "kb_features": real[n_val // 2:n_val], "kb_labels": real_labels[n_val // 2:n_val]}
    config = recipe_config(args.recipe, ex.identity, args.cbr, seed=args.seed,
                           epochs=args.epochs)
    codec, _ = train_codec(config, real[n_val:], val, progress=False,
                           train_labels=real_labels[n_val:])
    queries = codec.transmit(feats[q_idx], "awgn", args.snr_db, seed=args.seed)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    keys = (lambda x: np.ascontiguousarray(codec.kb_keys(x), np.float32)) \
        if codec.against_kb else None
    q_labels = labels[q_idx]
    model = FittedModel(real, real_labels, args.model_rank, args.model_residual,
                        args.model_axes)
    if args.max_real is not None:  # the model is fitted to all of them, the KB uses fewer
        real, real_labels = real[:args.max_real], real_labels[:args.max_real]
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        specs = args.index or [default_index(size, queries.shape[1])]
        given = args.search or ["default"]
        if len(given) not in (1, len(specs)):
            raise SystemExit("give --search once, or once per --index")
        given = given * len(specs) if len(given) == 1 else given
        searches = [[default_search(spec) if s == "default" else s for s in g.split(";")]
                    for spec, g in zip(specs, given)]
        metrics = args.metric or ["auto"]
        if len(metrics) not in (1, len(specs)):
            raise SystemExit("give --metric once, or once per --index")
        metrics = metrics * len(specs) if len(metrics) == 1 else metrics
        for row in measure(size, specs, searches, real, real_labels, model, queries, q_labels,
                           args.seed, threads, keys, args.val_queries, metrics):
            rows.append(row)
            print(json.dumps(row), flush=True, file=None if args.json else sys.stderr)
    machine = (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, faiss "
               f"{faiss.__version__} {threads} threads, load avg {os.getloadavg()[0]:.1f}")
    if args.json:
        return
    spread = f" ({args.model_axes} axes)" if args.model_residual == "spectrum" else ""
    print(f"KB scale: {len(feats)} real {ex.name} features ({', '.join(sets)}), "
          f"{len(real)} as KB entries, {args.queries} held-out real test queries "
          f"(+ {args.val_queries} validation queries) through "
          f"{args.recipe} CBR {args.cbr} AWGN {args.snr_db:g} dB, searching "
          f"{queries.shape[1]}-d vectors; fitted model rank {args.model_rank}, residual "
          f"{args.model_residual}{spread}; seed "
          f"{args.seed}; {machine}\n")
    print("| entries | real | index, metric (search) | p50 / p99 CPU ms | p50 / p99 wall ms | "
          "batch q/s (per CPU s) | recall@1 | accuracy % | exact acc. % | validation: p50 CPU ms, recall@1 | "
          "index MB | build s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        build = "" if r["build_s"] is None else f"{r['build_s']:.1f}"
        val = (f"{r['val_p50_cpu_ms']:.3f}, {r['val_recall_at_1']:.3f}"
               if "val_recall_at_1" in r else "-")
        print(f"| {r['size']:,} | {r['real_entries']:,} | `{r['index']}` {r['metric']} "
              f"({r['search'] or '-'})"
              f" | {r['p50_cpu_ms']:.3f} / {r['p99_cpu_ms']:.3f} | {r['p50_ms']:.3f} / "
              f"{r['p99_ms']:.3f} | {r['batch_qps']:,.0f} ({r['batch_cpu_qps']:,.0f}) | "
              f"{r['recall_at_1']:.3f} | {100 * r['accuracy']:.1f} | "
              f"{100 * r['accuracy_exact']:.1f} | {val} | {r['index_mb']:.0f} | {build} | "
              f"{r['peak_rss_mb']:,.0f} |")


if __name__ == "__main__":
    main()
