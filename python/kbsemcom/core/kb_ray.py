"""KB feature extraction on a Ray cluster (Ray Data), resumable shard by shard.

The images are cut into shards of ``SHARD`` images (a multiple of the single-process path's
batch of 64, so each worker feeds the extractor the very batches ``extract_features`` does and
the features come out the same). Ray Data runs one extractor per worker (an actor pool of
``workers`` actors, ``threads`` CPUs each) over the shards; each finished shard is written at once,
atomically, into ``parts`` (a folder every node can reach: a shared file system on a real
cluster). A worker that dies is restarted by Ray and its shard retried; a run that dies as a
whole resumes where it stopped, because finished shards are skipped.

Cluster start (see docs/kb.md): ``ray start --head --num-cpus N`` on one machine, ``ray start
--address HEAD:6379 --num-cpus N`` on each other, then ``kbsemcom build-kb --ray-address
HEAD:6379``. Without an address a local Ray with ``workers`` x ``threads`` CPUs is started
(polling less than Ray's defaults, QUIET_SYSTEM_CONFIG) and stopped.
"""
import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import numpy as np

from .errors import UserError

SHARD = 256
# a local Ray polls less (Ray's own defaults poll resources every 100 ms, memory every
# 250 ms, report task events and metrics every second): measured with an idle Ray Data actor
# pool on this project's 2-core VM, the Ray tree used 0.18 CPU s per wall second with the
# defaults, 0.12 with these (docs/kb.md). Off: task events and metrics (the state API and
# dashboard lose their data) and the memory monitor (Ray no longer kills a worker that nears
# the machine's memory).
QUIET_SYSTEM_CONFIG = {
    "metrics_report_interval_ms": 60_000, "enable_metrics_collection": False,
    "event_stats": False, "task_events_report_interval_ms": 0,
    "raylet_report_resources_period_milliseconds": 1_000,
    "gcs_pull_resource_loads_period_milliseconds": 5_000,
    "memory_monitor_refresh_ms": 0, "health_check_period_ms": 30_000,
    "debug_dump_period_milliseconds": 0, "raylet_check_gc_period_milliseconds": 10_000}
log = logging.getLogger(__name__)


class RayError(UserError, RuntimeError):
    """Ray is missing, or the cluster cannot be reached."""


class _ShardExtractor:
    """A Ray Data actor: one extractor, loaded once, turning shards into feature files."""

    def __init__(self, spec, items_ref, parts, shard, threads=1):
        import ray
        from . import ov_extractor
        os.environ["KBSEMCOM_THREADS"] = str(threads)  # the CPUs Ray gave this worker
        # without torch when the converted network is cached (the driver made sure of it)
        self.extractor = ov_extractor.load_light(spec)
        if self.extractor is None:
            from . import extractors
            extractors.set_threads()
            self.extractor = extractors.load_extractor(spec)
        refs = ray.get(items_ref) if isinstance(items_ref, ray.ObjectRef) else items_ref
        self.items = refs
        self.parts = Path(parts)
        self.shard = shard
        self.node = ray.get_runtime_context().get_node_id()
        (self.parts / f"worker-{os.getpid()}.pid").write_text(f"{socket.gethostname()}\n")

    def __call__(self, batch):
        from .features import extract_features
        nodes, counts = [], []
        for shard in batch["shard"]:
            shard = int(shard)
            items = self.items[shard * self.shard:(shard + 1) * self.shard]
            feats, kept = extract_features(self.extractor, items, use_cache=False,
                                           desc=f"shard {shard}")
            keep = {id(it) for it in kept}
            kept_idx = np.array([i for i, it in enumerate(items) if id(it) in keep], np.int64)
            tmp = self.parts / f".shard-{shard:06d}.tmp{os.getpid()}.npz"
            np.savez(tmp, features=feats, kept=kept_idx)
            os.replace(tmp, self.parts / f"shard-{shard:06d}.npz")
            nodes.append(self.node)
            counts.append(len(kept_idx))
        return {"shard": np.asarray(batch["shard"]), "node": np.array(nodes),
                "kept": np.array(counts, np.int64)}


def _cache_network(spec):
    """Convert the extractor's network once here when it has a light form that is not cached
    yet, so that no worker imports torch (core/ov_extractor.py)."""
    from . import ov_extractor
    path = ov_extractor.light_path(spec)
    if path is not None and not path.exists():
        from . import extractors
        extractors.load_extractor(spec)  # writes the converted network to the cache


def parts_folder(root, spec, items):
    """The checkpoint folder of one (extractor, image list) job under ``root``."""
    h = hashlib.sha256(spec.encode())
    for it in items:
        h.update(it.fingerprint().encode() + b"\0")
    return Path(root) / f"ray-{h.hexdigest()[:16]}"


def init_local(num_cpus, quiet=True):
    """Start a Ray on this machine with ``num_cpus`` CPUs, polling less when ``quiet``
    (QUIET_SYSTEM_CONFIG)."""
    import ray
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING,
             _system_config=QUIET_SYSTEM_CONFIG if quiet else {})


def extract_features_ray(spec, items, parts, address=None, workers=2, progress=None,
                         shard=SHARD, threads=1):
    """Features of ``items`` extracted on Ray: (features [m, dim], kept items, report).

    spec: the extractor spec each worker loads (``extractors.load_extractor``).
    parts: checkpoint folder (``parts_folder``); finished shards there are not redone.
    address: a running cluster ('HOST:PORT' or 'auto'), or None for a local Ray of
      ``workers`` x ``threads`` CPUs. shard: images per shard (a multiple of 64 for bit-equal
      features). threads: CPUs, and extractor threads, per worker (one worker per node with
      threads = the node's CPUs spares Ray a process per CPU).
    report: shards in all, shards found done from an earlier run, and shards per Ray node.
    """
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise RayError(f"Ray is not installed ({err}); pip install -r requirements.txt") \
            from None
    parts = Path(parts)
    parts.mkdir(parents=True, exist_ok=True)
    job = {"extractor": spec, "images": len(items), "shard": shard}
    if (parts / "job.json").exists() and json.loads((parts / "job.json").read_text()) != job:
        raise RayError(f"{parts} holds shards of another job; remove it to start afresh")
    (parts / "job.json").write_text(json.dumps(job))
    n_shards = (len(items) + shard - 1) // shard
    todo = [s for s in range(n_shards) if not (parts / f"shard-{s:06d}.npz").exists()]
    report = {"shards": n_shards, "resumed": n_shards - len(todo), "per_node": {}}
    started = False
    if todo:
        _cache_network(spec)
        try:
            if not ray.is_initialized():
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.WARNING)
                else:
                    init_local(workers * threads)
                started = True
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise RayError(f"cannot reach the Ray cluster at {address!r} ({err}); start it "
                           "with 'ray start --head' and give its address (HOST:6379)") \
                from None
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = progress is not False and not os.environ.get(
                "TQDM_DISABLE")
            ds = ray.data.from_items([{"shard": s} for s in todo],
                                     override_num_blocks=len(todo))
            out = ds.map_batches(
                _ShardExtractor, batch_size=1, num_cpus=threads,
                # one shard at a time per actor: Ray Data's default queues several on the
                # first actor up while the others still load their extractor
                compute=ray.data.ActorPoolStrategy(size=workers,
                                                   max_tasks_in_flight_per_actor=1),
                fn_constructor_kwargs={"spec": spec, "items_ref": ray.put(items),
                                       "parts": str(parts), "shard": shard,
                                       "threads": threads},
                # a dead worker is restarted and its shard retried, without limit
                max_restarts=-1, max_task_retries=-1)
            for row in out.iter_rows():
                node = str(row["node"])
                report["per_node"][node] = report["per_node"].get(node, 0) + 1
        finally:
            if started:
                ray.shutdown()
    feats, kept = [], []
    for s in range(n_shards):
        data = np.load(parts / f"shard-{s:06d}.npz")
        feats.append(data["features"])
        kept += [items[s * shard + int(i)] for i in data["kept"]]
    dim = feats[0].shape[1] if feats else 0
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    return features.astype(np.float32, copy=False), kept, report
