"""KB at scale: index choice (factory strings, default by size, recorded in the manifest),
live additions and removals (in memory, on disk with `kbsemcom kb`, in a running receiver
through kb_lookup's 'kb' port), and atomic persistence under a kill mid-write."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import faiss
import numpy as np
import pmt
import pytest
from gnuradio import blocks, gr

from conftest import kbsemcom_command
from gnuradio import kbsemcom
from gnuradio.kbsemcom.core import kb as kbmod
from gnuradio.kbsemcom.core.kb import (KBEntryError, KBIndexError, KBMismatchError,
                                       KnowledgeBase)
from gnuradio.kbsemcom.pdus import make_pdu


def test_default_index_by_size():
    assert kbmod.default_index(4_000, 1280) == "Flat"
    assert kbmod.default_index(100_000, 1280) == "PCA96,IVF1024,PQ48x4fsr,Refine(Flat)"
    assert kbmod.default_index(1_000_000, 1280) == "PCA96,IVF4096,PQ48x4fsr,Refine(SQ8)"
    assert kbmod.default_index(40_000, 128) == "Flat"  # kbsc-kb symbol space
    assert kbmod.default_index(1_000_000, 128) == "IVF4096,Flat"
    assert kbmod.default_search("PCA96,IVF1024,PQ48x4fsr,Refine(Flat)") == \
        "nprobe=32,k_factor_rf=128"  # 1/32 of the lists behind a projection
    assert kbmod.default_search("PCA96,IVF4096,PQ48x4fsr,Refine(SQ8)") == \
        "nprobe=128,k_factor_rf=256"  # more candidates re-ranked on one-byte vectors
    assert kbmod.default_search("IVF4096,Flat") == f"nprobe={kbmod.DEFAULT_NPROBE}"


@pytest.mark.parametrize("spec,search", [("Flat", None), ("IVF8,Flat", "nprobe=8"),
                                         ("HNSW16", None), ("PCA64,IVF4,Flat,Refine(Flat)", None),
                                         ("IVF4,SQ8", "nprobe=4"),
                                         ("PCA64,IVF4,PQ64x4fsr,Refine(Flat)", "nprobe=4")])
def test_every_index_round_trips_and_finds_its_own_features(world, tmp_path, spec, search):
    feats = world["kb"].features()
    kb = KnowledgeBase(feats, world["kb"].entries, world["class_names"],
                       world["kb"].extractor, index=spec, search=search)
    kb.save(tmp_path / "kb")
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["index"] == spec and manifest["search"] == kb.search_params
    loaded = KnowledgeBase.load(tmp_path / "kb")
    assert loaded.index_spec == spec and len(loaded) == 200
    _, pos = loaded.search(feats, 1)
    exact = (pos[:, 0] == np.arange(200)).mean()
    assert exact >= (1.0 if spec == "Flat" else 0.9), exact  # SQ8 may tie near-duplicates


def test_a_projected_index_ranks_unit_features_by_inner_product(world, tmp_path):
    """Unit-length features under a PCA index (core/kb.py, "Metric"): inner product over an
    uncentred projection, distances still squared L2 (numpy's for the hit), the metric kept
    through save and load, and a vector of another length refused with its length named."""
    feats = world["kb"].features()
    kb = KnowledgeBase(feats, world["kb"].entries, world["class_names"],
                       world["kb"].extractor, index="PCA64,IVF8,SQ8,Refine(Flat)",
                       search="nprobe=8,k_factor_rf=64")
    assert kb.metric == "ip" and abs(kb.entry_norm - 1) < 1e-3
    refine = faiss.downcast_index(kb.index.index)  # IDMap2 > Refine > PreTransform > PCA
    pca = faiss.downcast_VectorTransform(
        faiss.downcast_index(refine.base_index).chain.at(0))
    assert not faiss.vector_to_array(pca.mean).any()  # the projection is uncentred
    rng = np.random.default_rng(0)
    queries = (0.7 * feats[:60] + 0.05 * rng.standard_normal((60, feats.shape[1]))
               ).astype(np.float32)  # short and noisy, like decoded features
    exact = ((queries[:, None] - feats[None]) ** 2).sum(-1)
    dist, pos = kb.search(queries, 1)
    assert (pos[:, 0] == exact.argmin(1)).mean() >= 0.95
    np.testing.assert_allclose(dist[:, 0], exact[np.arange(60), pos[:, 0]], rtol=1e-4,
                               atol=1e-5)
    kb.save(tmp_path / "kb")
    assert json.loads((tmp_path / "kb" / "manifest.json").read_text())["metric"] == "ip"
    loaded = KnowledgeBase.load(tmp_path / "kb")
    assert loaded.metric == "ip" and (loaded.search(queries, 1)[1] == pos).all()
    entry = dict(world["kb"].entries[0], image_id="twice-as-long")
    with pytest.raises(KBMismatchError, match="length 2"):
        loaded.add(2 * feats[:1], [entry])
    lengths = np.linspace(0.5, 2, len(feats), dtype=np.float32)[:, None]
    assert KnowledgeBase(feats * lengths, world["kb"].entries, world["class_names"],
                         world["kb"].extractor, index="PCA64,IVF8,SQ8,Refine(Flat)"
                         ).metric == "l2"


@pytest.mark.slow
@pytest.mark.parametrize("size", [100_000, 1_000_000])
def test_the_large_kb_defaults_build_with_build_kb_and_search_in_kb_lookup(fmnist, tmp_path,
                                                                          size):
    """The default feature-space factory of a large KB (core/kb.py), at small size (its
    inverted lists scaled down to what 300 images can train): `build-kb --index` builds it
    and records it, and kb_lookup in a flowgraph finds each KB image from its own feature."""
    import re
    spec = re.sub(r"IVF\d+", "IVF8", kbmod.default_index(size, 1280))
    out = tmp_path / "kb"
    run = subprocess.run(kbsemcom_command() + [
        "build-kb", "--dataset", "fashion-mnist", "--per-class", "30", "--index", spec,
        "--out", str(out)], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TQDM_DISABLE="1"))
    assert run.returncode == 0, run.stderr
    kb = KnowledgeBase.load(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["index"] == spec == kb.index_spec and len(kb) == 300
    assert manifest["search"] == kbmod.default_search(spec)
    feats = kb.features()
    picks = list(range(0, 300, 15))
    got = _run_lookup(kbsemcom.kb_lookup(str(out)),
                      [("in", {"image_id": f"q{i}"}, feats[i]) for i in picks])
    hits = [m["retrieved_id"] == kb.entries[i]["image_id"] for m, i in zip(got, picks)]
    assert len(got) == len(picks) and np.mean(hits) >= 0.9, hits


@pytest.mark.parametrize("spec", ["Flat", "PCA64,IVF8,SQ8,Refine(Flat)"])
def test_search_one_answers_as_a_batch_search_and_keeps_the_callers_threads(world, spec):
    """kb.search_one (the receiver's single-query path, timed by benchmarks/kb_scale.py)
    returns what FAISS's batch search returns, and leaves the caller's OpenMP setting."""
    import faiss
    feats = world["kb"].features()
    kb = KnowledgeBase(feats, world["kb"].entries, [], world["kb"].extractor, index=spec,
                       search="nprobe=8" if "IVF" in spec else None)
    queries = feats[::20] + 0.01 * np.random.default_rng(0).standard_normal(
        (10, feats.shape[1])).astype(np.float32)
    faiss.omp_set_num_threads(2)
    want_d, want_i = kb.index.search(queries, 3)
    one = kbmod.search_one(kb.index)
    for q, wd, wi in zip(queries, want_d, want_i):
        d, i = one(q, 3)
        assert d.shape == i.shape == (1, 3) and (i[0] == wi).all()
        np.testing.assert_allclose(d[0], wd, rtol=1e-5)
    assert faiss.omp_get_max_threads() == 2
    assert kb.retrieve(queries[3])["kb_index"] == want_i[3, 0]


def test_a_bad_index_string_is_one_clear_error(world):
    feats = world["kb"].features()
    with pytest.raises(KBIndexError, match="could not parse"):
        KnowledgeBase(feats, world["kb"].entries, [], world["kb"].extractor, index="Bogus")
    with pytest.raises(KBIndexError, match="only 200 vectors"):
        KnowledgeBase(feats, world["kb"].entries, [], world["kb"].extractor, index="IVF4096,Flat")


@pytest.mark.parametrize("spec", ["Flat", "IVF8,Flat", "HNSW16",
                                  "PCA64,IVF8,PQ64x4fsr,Refine(Flat)"])
def test_add_and_remove_without_rebuild(world, tmp_path, spec):
    feats, entries = world["kb"].features(), world["kb"].entries
    kb = KnowledgeBase(feats[:150], entries[:150], world["class_names"], world["kb"].extractor,
                       index=spec, search="nprobe=8" if "IVF" in spec else None)
    trained = kb.index.ntotal
    kb.add(feats[150:], entries[150:])
    assert len(kb) == 200 and kb.index.ntotal == trained + 50
    assert kb.retrieve(feats[170])["image_id"] == entries[170]["image_id"]
    kb.remove([entries[170]["image_id"], entries[3]["image_id"]])
    assert len(kb) == 198
    assert kb.retrieve(feats[170])["image_id"] != entries[170]["image_id"]
    kb.save(tmp_path / "kb")
    back = KnowledgeBase.load(tmp_path / "kb")
    got = [back.retrieve(feats[i])["image_id"] for i in (0, 3, 170, 199)]
    assert got[0] == entries[0]["image_id"] and got[3] == entries[199]["image_id"]
    assert entries[3]["image_id"] not in got and entries[170]["image_id"] not in got
    back.add(feats[170:171], entries[170:171])  # back again, under a new kb_id
    assert back.retrieve(feats[170])["image_id"] == entries[170]["image_id"]
    with pytest.raises(KBEntryError, match="already holds"):
        back.add(feats[:1], entries[:1])
    with pytest.raises(KBEntryError, match="no image 'nope'"):
        back.remove(["nope"])


def _run_lookup(look, steps, timeout=30):
    """Run kb_lookup in a real flowgraph: steps are ('in', meta, payload) queries, whose
    result is awaited, or ('kb', meta, payload) changes, awaited until the KB size moves."""
    class Feeder(gr.basic_block):
        def __init__(self):
            gr.basic_block.__init__(self, "feeder", None, None)
            self.message_port_register_out(pmt.intern("in"))
            self.message_port_register_out(pmt.intern("kb"))

    tb = gr.top_block()
    feeder, store = Feeder(), blocks.message_debug()
    tb.msg_connect((feeder, "in"), (look, "in"))
    tb.msg_connect((feeder, "kb"), (look, "kb"))
    tb.msg_connect((look, "out"), (store, "store"))
    tb.start()
    try:
        for port, meta, payload in steps:
            before, size = store.num_messages(), len(look.kb)
            feeder.message_port_pub(pmt.intern(port), make_pdu(meta, payload))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (
                    store.num_messages() == before if port == "in" else
                    len(look.kb) == size and meta["op"] != "bogus"):
                time.sleep(0.01)
    finally:
        tb.stop()
        tb.wait()
    from gnuradio.kbsemcom.pdus import parse_pdu
    return [parse_pdu(store.get_message(i))[0] for i in range(store.num_messages())]


def test_a_running_receiver_takes_adds_and_removes_on_its_kb_port(world, tmp_path):
    feats, entries = world["kb"].features(), world["kb"].entries
    KnowledgeBase(feats[:199], entries[:199], world["class_names"],
                  world["kb"].extractor).save(tmp_path / "kb")
    look = kbsemcom.kb_lookup(str(tmp_path / "kb"))
    new, gone = entries[199], entries[5]
    query = lambda i: ("in", {"image_id": f"q{i}"}, feats[i])  # noqa: E731
    out = _run_lookup(look, [
        query(199), ("kb", dict(new, op="add"), feats[199]), query(199),
        query(5), ("kb", {"op": "remove", "image_id": gone["image_id"]},
                   np.zeros(0, np.float32)), query(5),
        ("kb", {"op": "bogus"}, np.zeros(0, np.float32)), query(0)])
    ids = [m["retrieved_id"] for m in out]
    assert ids[0] != new["image_id"] and ids[1] == new["image_id"]
    assert ids[2] == gone["image_id"] and ids[3] != gone["image_id"]
    assert ids[4] == entries[0]["image_id"]  # a bad change is ignored, the graph runs on
    # the folder is unchanged until 'kbsemcom kb' changes it; 'reload' reads it again
    assert len(KnowledgeBase.load(tmp_path / "kb")) == 199
    look.change({"op": "reload"})
    assert len(look.kb) == 199


@pytest.mark.slow
def test_kb_add_and_remove_commands_change_the_kb_on_disk(world, fmnist, tmp_path):
    kb = tmp_path / "kb"
    world["kb"].save(kb)
    cmd = kbsemcom_command()
    env = dict(os.environ, TQDM_DISABLE="1")
    add = subprocess.run(cmd + ["kb", "add", "--kb", str(kb), "--dataset", "fashion-mnist",
                                "--split", "train", "--per-class", "1", "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert add.returncode == 0, add.stderr
    info = json.loads(add.stdout)
    assert info["added"] == 10 and info["size"] == 210 and info["generation"] == 1
    new_id = fmnist.items("train")[0].image_id
    loaded = KnowledgeBase.load(kb)
    assert new_id in {e["image_id"] for e in loaded.entries}
    rm = subprocess.run(cmd + ["kb", "remove", "--kb", str(kb), new_id, "--json"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert rm.returncode == 0 and json.loads(rm.stdout)["size"] == 209, rm.stderr
    bad = subprocess.run(cmd + ["kb", "remove", "--kb", str(kb), new_id],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "holds no image" in bad.stderr


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    folder = sys.argv[1]
    kb = KnowledgeBase.load(folder)
    rng = np.random.default_rng(len(kb))
    while True:
        n = len(kb)
        kb.add(rng.standard_normal((1, kb.dim)).astype(np.float32),
               [{"image_id": f"w{n}", "path": "", "label": 0, "class_name": "c"}])
        print(len(kb), flush=True)
        kb.save(folder)
""")


@pytest.mark.slow
def test_a_kill_mid_write_leaves_the_old_or_the_new_kb(tmp_path):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((3000, 1280)).astype(np.float32)  # a 15 MB index per write
    entries = [{"image_id": f"e{i}", "path": "", "label": 0, "class_name": "c"}
               for i in range(len(feats))]
    folder = tmp_path / "kb"
    KnowledgeBase(feats, entries, ["c"], {"name": "test", "dim": 1280}).save(folder)
    mid_write = 0
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)],
                                stdout=subprocess.PIPE, text=True)
        first = int(proc.stdout.readline())  # loaded and writing
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        last = max([first] + [int(x) for x in proc.stdout.read().split()])
        mid_write += any(".tmp-" in f.name for f in folder.iterdir())
        kb = KnowledgeBase.load(folder)  # never a broken KB
        assert last - 1 <= len(kb) <= last
        assert kb.index.ntotal == len(kb)
        assert kb.retrieve(feats[7])["image_id"] == "e7"
        if mid_write >= 2 and attempt >= 3:
            break
    assert mid_write, "no kill landed during a write: the test proved nothing"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kb_scale_benchmark_runs_and_compares_both_metrics(tmp_path):
    """benchmarks/kb_scale_features.py then kb_scale.py, at a small size: one chunk of real
    features (held-out queries, the rest drawn from the fitted model), the same projected
    index under L2 and under the inner product, each row with its metric and recall."""
    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    env = dict(os.environ, KBSEMCOM_THREADS="1", TQDM_DISABLE="1")
    feats = subprocess.run([sys.executable, str(bench / "kb_scale_features.py"), "--limit",
                            "1"], capture_output=True, text=True, timeout=600, env=env)
    assert feats.returncode == 0, feats.stderr[-2000:]
    run = subprocess.run([sys.executable, str(bench / "kb_scale.py"), "--sizes", "6000",
                          "--epochs", "1", "--queries", "100", "--val-queries", "100",
                          "--index", "PCA96,IVF32,PQ48x4fsr,Refine(Flat)", "--metric", "l2",
                          "--index", "PCA96,IVF32,PQ48x4fsr,Refine(Flat)", "--metric", "auto",
                          "--search", "nprobe=8,k_factor_rf=32", "--json"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
    assert [(r["size"], r["metric"]) for r in rows] == [(6000, "l2"), (6000, "ip")]
    assert all(0 < r["recall_at_1"] <= 1 and r["p50_cpu_ms"] > 0 for r in rows), rows
