"""KB feature extraction on Ray Data: the same features as the single-process path, a dead
worker restarted without loss, a resumed run that skips finished shards (on one worker of two
threads), and two Ray nodes on one machine (one CPU each) that split the work."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.core.kb_ray import extract_features_ray

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

SPEC = "efficientnet-lite0"


@pytest.fixture(scope="module")
def job(effnet, fmnist):
    items = fmnist.items("test")[:128]
    feats, kept = extract_features(effnet, items, use_cache=False)
    return items, feats, kept


def _kill_one_worker(parts, stop):
    """SIGKILL the first Ray worker that reports itself, once it has finished a shard."""
    while not stop.is_set():
        pids = sorted(parts.glob("worker-*.pid"))
        if pids and list(parts.glob("shard-*.npz")):
            os.kill(int(pids[0].stem.split("-")[1]), signal.SIGKILL)
            return int(pids[0].stem.split("-")[1])
        time.sleep(0.05)


def test_ray_gives_the_single_process_features_through_a_worker_death_and_resumes(
        job, tmp_path):
    items, feats, kept = job
    parts = tmp_path / "parts"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=lambda: killed.append(_kill_one_worker(parts, stop)))
    killer.start()
    try:
        got, got_kept, report = extract_features_ray(SPEC, items, parts, workers=2, shard=32,
                                                     progress=False)
    finally:
        stop.set()
        killer.join()
    assert killed and killed[0], "no worker was killed: the test proved nothing"
    assert [it.image_id for it in got_kept] == [it.image_id for it in kept]
    np.testing.assert_allclose(got, feats, atol=1e-5)
    assert report["shards"] == 4 and report["resumed"] == 0
    # a run that died: the finished shards stay, the next run does only the rest (here on
    # one worker with 2 threads, the one-worker-per-machine layout)
    (parts / "shard-000002.npz").unlink()
    again, _, report = extract_features_ray(SPEC, items, parts, workers=1, threads=2,
                                            shard=32, progress=False)
    assert report["resumed"] == 3 and sum(report["per_node"].values()) == 1
    np.testing.assert_allclose(again, feats, atol=1e-5)


def test_two_ray_nodes_with_one_cpu_each_split_the_work(job, tmp_path):
    from ray.cluster_utils import Cluster
    items, feats, _ = job
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        got, _, report = extract_features_ray(SPEC, items, tmp_path / "parts",
                                              address=cluster.address, workers=2, shard=32,
                                              progress=False)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(report["per_node"]) == 2 and min(report["per_node"].values()) >= 1, report
    np.testing.assert_allclose(got, feats, atol=1e-5)
