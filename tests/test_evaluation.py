"""The evaluation engine: protocol splits, the feature cache, the metric, the method registry
and ``kbsemcom evaluate --quick`` end to end on real images."""
import json
import os

import numpy as np
import pytest

from gnuradio.kbsemcom.core import datasets, evaluation, protocols, report
from gnuradio.kbsemcom.core.features import extract_features


def _per_class(items):
    counts = {}
    for it in items:
        counts[it.label] = counts.get(it.label, 0) + 1
    return counts


def _fmnist_or_skip():
    try:
        return datasets.fashion_mnist()
    except datasets.DatasetError as err:
        pytest.skip(str(err))


def test_protocol_split_disjoint_and_balanced(fmnist):
    p = protocols.make_protocol("fashion-mnist", sent_per_class=7, kb_per_class=9,
                                train_per_class=11, val_per_class=3)
    sources = {r: {it.source for it in p.role(r)} for r in protocols.ROLES}
    for a in protocols.ROLES:
        for b in protocols.ROLES:
            if a < b:
                assert not sources[a] & sources[b], f"{a} and {b} share images"
    assert _per_class(p.sent) == {c: 7 for c in range(10)}
    assert _per_class(p.kb) == {c: 9 for c in range(10)}
    assert _per_class(p.train) == {c: 11 for c in range(10)}
    # the paper's rule: sent and KB from the test split, codec data from the train split
    assert all(it.image_id.startswith("test/") for it in p.sent + p.kb)
    assert all(it.image_id.startswith("train/") for it in p.train + p.val_sent + p.val_kb)
    small = p.limit_kb(4)
    assert _per_class(small.kb) == {c: 4 for c in range(10)} and small.sent == p.sent


def test_every_app_split_is_the_protocol_split(fmnist):
    """The demo, tx/rx, bundles and the PHY benchmark cut a data set with split_dataset, the
    very layout of evaluate's protocols: the same sizes give the same images per role, sent
    first, then the KB; train-codec's split (no sent, no KB) takes the same training images."""
    p = protocols.make_protocol("fashion-mnist", 4, 6, 8, 2)
    q = protocols.split_dataset(fmnist, 4, 6, 8, 2)
    for r in protocols.ROLES:
        assert [it.source for it in q.role(r)] == [it.source for it in p.role(r)], r
    test0 = [it.image_id for it in fmnist.items("test") if it.label == 0]
    assert [it.image_id for it in q.sent if it.label == 0] == test0[:4]
    assert [it.image_id for it in q.kb if it.label == 0] == test0[4:10]
    only_codec = protocols.split_dataset(fmnist, 0, 0, 8, 2, require=())
    assert not only_codec.sent and not only_codec.kb
    assert [it.source for it in only_codec.train] == [it.source for it in q.train]
    with pytest.raises(datasets.DatasetError, match="sent and KB >= 1"):
        protocols.split_dataset(fmnist, 0, 6, 8, 2)
    with pytest.raises(datasets.DatasetError, match="must be >= 0"):
        protocols.split_dataset(fmnist, 4, 6, -1, 2)


def test_baselines_do_not_import_the_engine():
    """The baselines build on the method API (core.methods) only; the engine imports them,
    never the other way round (read from their source: no import of evaluation)."""
    import ast
    from pathlib import Path
    from gnuradio.kbsemcom.core import baselines
    imported = set()  # "..methods" for `from .. import methods`, "..channel.Channel", ...
    for path in Path(baselines.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                imported |= {base + ("" if base.endswith(".") else ".") + a.name
                             for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
    assert "..methods" in imported
    assert not [name for name in imported if "evaluation" in name], imported
    assert {"digital", "digital-bound"} <= set(evaluation.method_names())


def test_protocol_overlap_is_refused(fmnist):
    p = protocols.make_protocol("fashion-mnist", 3, 3, 3, 1)
    p.kb = p.kb + p.sent[:1]
    with pytest.raises(datasets.DatasetError, match="both in"):
        p.check()


def test_caltech_protocol(shared_data):
    p = protocols.make_protocol("caltech100")
    assert len(p.class_names) == 100
    assert not {"BACKGROUND_Google", "Faces_easy"} & set(p.class_names)
    assert set(_per_class(p.sent).values()) == {10} and set(_per_class(p.kb).values()) == {21}
    by_class = {}
    for it in datasets.caltech100().items():
        by_class.setdefault(it.class_name, []).append(it.path)
    first = by_class[p.class_names[0]]
    assert [it.path for it in p.sent if it.label == 0] == sorted(first)[:10]
    assert [it.path for it in p.kb if it.label == 0] == sorted(first)[10:31]
    assert not {it.source for it in p.train} & {it.source for it in p.sent + p.kb}


def test_folder_protocol_and_unknown(image_folder):
    p = protocols.make_protocol(str(image_folder), sent_per_class=2, kb_per_class=3,
                                val_per_class=1)
    assert p.name == "folder:images"
    assert set(_per_class(p.sent).values()) == {2}
    with pytest.raises(datasets.DatasetError, match="unknown protocol"):
        protocols.make_protocol("no-such-data-set")


def test_feature_cache_invalidation(image_folder, effnet, tiny_clip):
    from PIL import Image
    items = datasets.scan_image_folder(image_folder).items()
    items = [it for it in items if it.path.endswith(".png")][:6]
    cache = datasets.cache_dir() / "features"
    before = set(cache.glob("*.npz")) if cache.exists() else set()
    f1, _ = extract_features(effnet, items)
    made = set(cache.glob("*.npz")) - before
    assert len(made) == 1
    f2, _ = extract_features(effnet, items)  # reused: no new entry, same numbers
    assert set(cache.glob("*.npz")) - before == made and np.array_equal(f1, f2)
    # a changed image -> recomputed, only that image's feature changes
    path = items[2].path
    Image.new("RGB", (28, 28), (250, 10, 10)).save(path)
    st = os.stat(path)
    os.utime(path, (st.st_atime, st.st_mtime + 5))
    f3, _ = extract_features(effnet, items)
    assert len(set(cache.glob("*.npz")) - before) == 2
    assert not np.allclose(f3[2], f1[2]) and np.allclose(np.delete(f3, 2, 0), np.delete(f1, 2, 0),
                                                         atol=1e-5)
    # another extractor -> another entry with its own dimension
    f4, _ = extract_features(tiny_clip, items)
    assert len(set(cache.glob("*.npz")) - before) == 3 and f4.shape[1] == tiny_clip.dim


def test_metric_lost_counts_as_wrong():
    out = evaluation.Outcome(correct=[True, True, True, False], lost=[False, True, False, False])
    assert out.accuracy() == pytest.approx(0.5)
    assert evaluation.Outcome(correct=[True, True]).accuracy() == 1.0
    with pytest.raises(ValueError):
        evaluation.Outcome(correct=[True], lost=[True, False])


def _tiny_setup(effnet):
    p = protocols.make_protocol("fashion-mnist", sent_per_class=4, kb_per_class=6,
                                train_per_class=0, val_per_class=0)
    return evaluation.build_setup(p, effnet, progress=False)


def test_registry_engine_and_lost_records(fmnist, effnet, tmp_path):
    setup = _tiny_setup(effnet)
    assert 0.1 < setup.raw_reference <= 1.0

    def half_lost(ctx):
        """Every image right, but the first half lost."""
        n = len(ctx.sent_labels)
        return evaluation.Outcome(np.ones(n, bool), np.arange(n) < n // 2, complex_symbols=64)

    evaluation.register_method("test-half-lost", half_lost, replace=True)
    with pytest.raises(ValueError, match="already registered"):
        evaluation.register_method("test-half-lost", half_lost)
    assert {"kbsc", "kbsc-kb", "kbsc-ret", "raw", "test-half-lost"} <= set(evaluation.method_names())
    recs = evaluation.run_evaluation(setup, ["test-half-lost", "raw"], ["1/48"], [0.0],
                                     ["awgn"], seeds=[0, 1], progress=False)
    lost = [r for r in recs if r["codec"] == "test-half-lost"]
    assert len(lost) == 2 and all(r["accuracy"] == 0.5 and r["n_lost"] == 20 for r in lost)
    raw = [r for r in recs if r["codec"] == "raw"]
    assert all(r["complex_symbols"] == 640 and r["cbr"] == "5/24" for r in raw)
    # same seed, same SNR -> same noise -> same result; the noiseless channel is the raw reference
    again = evaluation.run_evaluation(setup, ["raw"], ["1/48"], [0.0], ["awgn", "none"],
                                      seeds=[0], progress=False)
    assert again[0]["accuracy"] == raw[0]["accuracy"]
    assert again[1]["snr_db"] is None and again[1]["accuracy"] == pytest.approx(setup.raw_reference)
    files = report.write_outputs(recs, tmp_path)
    assert any(str(f).endswith(".png") for f in files)
    with pytest.raises(ValueError, match="unknown method"):
        evaluation.get_method("no-such-method")
    evaluation.METHODS.pop("test-half-lost")


@pytest.mark.slow  # the whole quick evaluation with the real extractor
def test_quick_mode_end_to_end(fmnist, tmp_path):
    """`kbsemcom evaluate --quick` on real Fashion-MNIST images (smaller than the quick mode
    on CIFAR-10 in the per-class counts, the channel list and a 25-epoch training cap)."""
    from gnuradio.kbsemcom.apps.cli import main
    out = tmp_path / "eval"
    rc = main(["evaluate", "--quick", "--dataset", "fashion-mnist", "--extractor",
               "efficientnet-lite0", "--sent-per-class", "20", "--kb-per-class", "20",
               "--train-per-class", "100", "--val-per-class", "10", "--channels", "awgn",
               "--epochs", "25", "--raw", "--codecs", "kbsc,kbsc-kb,probe", "--out", str(out),
               "--json"])
    assert rc == 0
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    keys = set(evaluation.RECORD_KEYS)
    assert all(keys <= set(r) for r in recs)
    probe = {r["accuracy"] for r in recs if r["codec"] == "probe"}  # no channel: one figure
    assert len(probe) == 1 and 0.4 < probe.pop() <= 1.0
    codec_recs = [r for r in recs if r["codec"] not in ("raw", "probe")]
    assert {r["cbr"] for r in codec_recs} == {"1/48", "1/12", "1/3"}
    assert {r["snr_db"] for r in recs} == {-7.0, -4.0, 0.0, 10.0}
    assert all(r["n_sent"] == 200 and r["n_kb"] == 200 for r in recs)
    ceiling = recs[0]["raw_1nn_reference"]
    assert 0.4 < ceiling <= 1.0
    # neither recipe collapses to chance (10%); ours is near the raw 1-NN reference at 10 dB
    ours = "kbsc-kb"
    for codec in ("kbsc", ours):
        best = max(r["accuracy"] for r in recs if r["codec"] == codec and r["snr_db"] == 10)
        assert best > 0.25, f"{codec} collapsed towards chance: {best}"
    ret = [r for r in recs if r["codec"] == ours and r["snr_db"] == 10]
    assert min(r["accuracy"] for r in ret) > ceiling - 0.1
    assert (out / "results.csv").exists() and (out / "results.md").read_text().count("|") > 20
    assert list(out.glob("accuracy_vs_snr_*.png")) and list(out.glob("accuracy_vs_cbr_*.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["points"] == len(recs) and summary["machine"]


def test_parallel_codec_training_equals_sequential(effnet, monkeypatch, tmp_path):
    """evaluate trains the missing codecs one process per core (pretrain_codecs); each must be
    bit for bit the codec that codec_for trains in this process."""
    import torch
    p = protocols.make_protocol("fashion-mnist", sent_per_class=2, kb_per_class=4,
                                train_per_class=20, val_per_class=4)
    setup = evaluation.build_setup(p, effnet, progress=False, codec_options={"epochs": 3})
    keys = [("kbsc", "1/48", "awgn"), ("kbsc-kb", "1/48", "awgn"), ("kbsc", "1/24", "rayleigh")]
    monkeypatch.setenv("KBSEMCOM_THREADS", "2")
    monkeypatch.setenv("KBSEMCOM_CACHE", str(tmp_path / "parallel"))
    assert evaluation.parallel_trainings() == 2
    assert evaluation.pretrain_codecs(setup, keys + keys[:1], progress=False) == 3
    assert evaluation.pretrain_codecs(setup, keys, progress=False) == 0  # all in the cache now
    parallel = [evaluation.codec_for(setup, *k, progress=False) for k in keys]
    monkeypatch.setenv("KBSEMCOM_CACHE", str(tmp_path / "sequential"))
    monkeypatch.setenv("KBSEMCOM_THREADS", "1")
    assert evaluation.pretrain_codecs(setup, keys, progress=False) == 0  # one at a time: here
    for k, par in zip(keys, parallel):
        seq = evaluation.codec_for(setup, *k, progress=False)
        assert seq.history == par.history
        for name, t in seq.state_dict().items():
            assert torch.equal(t, par.state_dict()[name]), (k, name)
