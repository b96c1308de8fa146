"""KB mismatch (open set): the metrics against hand computations, a calibration that sees only
validation data, and a real flowgraph whose KB lacks some classes flagging their images
``no_match``."""
import numpy as np
import pytest

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core import openset
from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.core.kb import KnowledgeBase
from gnuradio.kbsemcom.core.results import make_record, summarize
from gnuradio.kbsemcom.flowgraphs import semantic_loopback
from conftest import labels, push_pdus, run_flowgraph

ABSENT = (5, 7, 9)  # Fashion-MNIST sandal, sneaker, ankle boot: left out of the receiver's KB


def test_auroc_equals_a_hand_computation():
    # in > out in 5 of the 6 pairs (0.4 < 0.5 is the one miss)
    assert openset.auroc([0.9, 0.8, 0.4], [0.5, 0.3]) == pytest.approx(5 / 6)
    # a tie counts half: pairs (1,2) 0, (1,0) 1, (2,2) 0.5, (2,0) 1 -> 2.5 / 4
    assert openset.auroc([1, 2], [2, 0]) == pytest.approx(0.625)
    assert openset.auroc([3, 4], [1, 2]) == 1.0 and openset.auroc([1, 2], [3, 4]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        openset.auroc([1.0], [])


def test_frr_and_threshold_equal_a_hand_computation():
    scores = np.arange(1, 21, dtype=float)  # 20 in-KB scores 1..20
    t = openset.threshold_for_frr(scores, 0.05)
    assert t == 2.0  # rejects score 1 only: 1 of 20 = 5%
    assert openset.rejection_rate(scores < t) == 0.05
    assert openset.rejection_rate(scores < openset.threshold_for_frr(scores, 0.10)) == 0.10
    assert openset.rejection_rate([]) == 0.0


def test_statistics_by_hand():
    d = np.array([[1.0, 3.0, 5.0], [2.0, 2.0, 8.0]])
    sq = np.array([4.0, 10.0])
    np.testing.assert_allclose(openset.statistic("nearest", d, sq), [-1, -2])
    np.testing.assert_allclose(openset.statistic("inner", d, sq), [3, 8])
    np.testing.assert_allclose(openset.statistic("margin", d, sq), [3, 3])
    # lr with v_in = 1, v_out = 2: log mean(e^0, e^-1) + 4 / 4 for the first row
    lr = openset.statistic("lr", np.array([[0.0, 2.0]]), np.array([4.0]), (1.0, 2.0))
    assert lr[0] == pytest.approx(1.0 + np.log((1.0 + np.exp(-1.0)) / 2.0))
    # knn: minus the mean of the K distances; knn_inner: plus the query's squared norm
    np.testing.assert_allclose(openset.statistic("knn", d, sq), [-3, -4])
    np.testing.assert_allclose(openset.statistic("knn_inner", d, sq), [1, 6])
    # a KB smaller than K pads with inf distances: the mean is over the real ones
    np.testing.assert_allclose(openset.statistic("knn", np.array([[1.0, 3.0, np.inf]]), [0.0]),
                               [-2.0])
    with pytest.raises(openset.OpenSetError, match="variances"):
        openset.statistic("lr", d, sq)
    with pytest.raises(openset.OpenSetError, match="unknown"):
        openset.statistic("bogus", d, sq)


def test_match_score_interpolates_between_snrs():
    levels = [0.0, 0.5, 1.0]
    cal = openset.Calibration("inner", 1, 0.05, "awgn", [0.0, 10.0], levels,
                              [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]], [20.0, 21.0, 22.0])
    assert cal.match_score([1.0], 0.0)[0] == pytest.approx(0.5)
    assert cal.match_score([6.0], 5.0)[0] == pytest.approx(0.5)  # halfway curve 5, 6, 7
    assert cal.match_score([11.5], 30.0)[0] == pytest.approx(0.75)  # clamped to 10 dB
    assert cal.match_score([21.0], None)[0] == pytest.approx(0.5)  # no channel: noiseless
    assert cal.match_score([-5.0], 0.0)[0] == 0.0 and cal.match_score([99.0], 0.0)[0] == 1.0
    assert list(cal.no_match([0.01, 0.05, 0.5])) == [True, False, False]


@pytest.fixture(scope="module")
def open_world(world):
    """The world's codec; a receiver KB without ABSENT's classes; a calibration measured on
    the validation pair only, whose KB leaves out classes of its own."""
    ext, split = world["extractor"], world["split"]
    feats = {role: extract_features(ext, getattr(split, role))
             for role in ("val_sent", "val_kb", "sent", "kb")}

    def kb_without(role, absent):
        f, items = feats[role]
        keep = [i for i, it in enumerate(items) if it.label not in absent]
        return KnowledgeBase.from_items(f[keep], [items[i] for i in keep],
                                        world["class_names"], ext.identity)

    val_absent = (0, 2)  # the validation pair's own held-out classes
    val_kb = kb_without("val_kb", val_absent)
    val_f, val_items = feats["val_sent"]
    val_in = ~np.isin(labels(val_items), val_absent)
    cal = openset.calibrate(world["codec"], val_kb, val_f[val_in], snrs=(0.0, 10.0),
                            repeats=3, target_frr=0.10)
    return dict(world, cal=cal, kb_open=kb_without("kb", ABSENT), feats=feats,
                val_kb=val_kb, val_in_f=val_f[val_in])


def test_calibration_uses_validation_data_only(open_world, tmp_path):
    cal = open_world["cal"]
    assert cal.source["n_in_kb"] == len(open_world["val_in_f"])
    # the same validation data give the same calibration, whatever the test KB is
    again = openset.calibrate(open_world["codec"], open_world["val_kb"], open_world["val_in_f"],
                              snrs=(0.0, 10.0), repeats=3, target_frr=0.10)
    assert again.quantiles == cal.quantiles and again.noiseless == cal.noiseless
    # on the validation images it was fitted to, the one threshold rejects about target_frr
    # of them at both SNRs (fresh noise draws)
    import torch
    search = open_world["codec"].searchable_kb(open_world["val_kb"])
    for snr in (0.0, 10.0):
        y = openset.received_vectors(open_world["codec"], open_world["val_in_f"], "awgn", snr,
                                     torch.Generator().manual_seed(99))
        score = cal.match_score(openset.search_statistic(search, y, cal.statistic)[0], snr)
        assert openset.rejection_rate(cal.no_match(score)) < 0.25
    # it round-trips through its file, and a file of something else is refused
    path = cal.save(tmp_path / "cal.json")
    assert openset.load_calibration(path) == cal
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(openset.OpenSetError, match="kbsemcom-openset"):
        openset.load_calibration(tmp_path / "bad.json")


def test_no_match_for_absent_classes_in_a_flowgraph(open_world, tmp_path):
    cal_path = open_world["cal"].save(tmp_path / "cal.json")
    items = open_world["split"].sent
    tb = semantic_loopback(items, open_world["extractor"], open_world["codec"],
                           open_world["kb_open"], "awgn", 10.0, seed=3,
                           results_path=str(tmp_path / "r.jsonl"), calibration=str(cal_path))
    records = run_flowgraph(tb, tb.sink, timeout=120)
    assert len(records) == len(items) and not any(r["lost"] for r in records)
    absent = np.array([r["label"] in ABSENT for r in records])
    flagged = np.array([r["no_match"] for r in records])
    assert all(0.0 <= r["match_score"] <= 1.0 for r in records)
    # an image whose class the KB lacks is flagged, and more often than one it holds
    assert flagged[absent].any()
    assert flagged[absent].mean() > flagged[~absent].mean()
    summary = tb.sink.summary()
    assert summary["n_scored"] == len(items) and summary["n_no_match"] == int(flagged.sum())


def test_uncalibrated_lookup_keeps_working(open_world):
    lookup = kbsemcom.kb_lookup(open_world["kb_open"], open_world["codec"])
    feature = open_world["feats"]["sent"][0][0]
    (meta, payload), = push_pdus(lookup, [({"image_id": "x", "label": 1, "snr_db": 10.0},
                                           feature)])
    assert meta["open_set"] == "uncalibrated" and meta["no_match"] is None
    assert meta["match_score"] is None and len(payload) == 1
    rec = make_record(meta)
    assert rec["no_match"] is None and summarize([rec])["n_scored"] == 0


def test_calibration_of_another_codec_is_refused(open_world, tmp_path):
    import dataclasses
    cal = dataclasses.replace(open_world["cal"], codec={"recipe": "kbsc-kb", "cbr": "1/12",
                                                        "extractor": "x"})
    with pytest.raises(openset.OpenSetError, match="calibrate again"):
        kbsemcom.kb_lookup(open_world["kb_open"], open_world["codec"], cal)


def test_leave_self_out_search_by_hand():
    """KB images as queries against the KB less themselves: on the line 0, 1, 3, 7 each
    point's nearest other point, and a repeated batch reuses the own positions."""
    feats = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
    kb = KnowledgeBase(feats, [{"image_id": str(i), "path": "", "label": i, "class_name": "c"}
                               for i in range(4)], ["c"] * 4,
                       {"name": "toy", "dim": 1}, index="Flat")
    view = openset.LeaveSelfOut(kb, [0, 1, 2, 3])
    dist, pos = view.search(np.concatenate([feats, feats]), 2)
    assert pos[:4].tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]] and pos[4:].tolist() == \
        pos[:4].tolist()
    np.testing.assert_allclose(dist[:4], [[1, 9], [1, 4], [4, 9], [16, 36]])
    # a query that is not a KB image (own -1) keeps its K nearest
    assert openset.LeaveSelfOut(kb, [-1]).search(feats[:1], 2)[1].tolist() == [[0, 1]]
    with pytest.raises(openset.OpenSetError, match="3 classes"):
        two_classes = [dict(e, label=e["label"] % 2) for e in kb.entries]
        openset.calibrate_kb(None, KnowledgeBase(feats, two_classes, ["a", "b"],
                                                 {"name": "toy", "dim": 1}, index="Flat"))


def test_centroid_statistic_by_hand():
    """max over KB classes of 2 <y, mu_c> - |mu_c|^2; a query that is a KB image leaves its
    class mean, and a class of that image alone drops out."""
    feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [9.0, 9.0]], np.float32)
    labels_ = [0, 0, 1, None]   # class means (1, 0), (0, 4); the unlabelled entry alone
    kb = KnowledgeBase(feats, [{"image_id": str(i), "path": "", "label": v, "class_name": "c"}
                               for i, v in enumerate(labels_)], ["a", "b"],
                       {"name": "toy", "dim": 2}, index="Flat")
    y = np.array([[1.0, 1.0], [0.0, 3.0]], np.float32)
    # y1: class 0: 2*1 - 1 = 1; class 1: 2*4 - 16 = -8; alone: 2*18 - 162 = -126 -> 1
    # y2: class 0: 0 - 1 = -1; class 1: 24 - 16 = 8 -> 8
    stat, pos = openset.search_statistic(kb, y, "centroid")
    np.testing.assert_allclose(stat, [1.0, 8.0])
    assert pos.tolist() == [0, 2]   # positions stay the nearest entries
    # KB entries 0 and 2 as their own queries: entry 0 leaves class 0 (mean (2, 0)):
    # 2*0 - 4 = -4 against class 1's 0 - 16 = -16 -> -4; entry 2 is class 1 alone (drops):
    # class 0: 2*0 - 1 = -1, unlabelled: 2*36 - 162 = -90 -> -1
    view = openset.LeaveSelfOut(kb, [0, 2])
    np.testing.assert_allclose(openset.search_statistic(view, feats[[0, 2]], "centroid")[0],
                               [-4.0, -1.0])
    with pytest.raises(openset.OpenSetError, match="needs the KB"):
        openset.statistic("centroid", np.zeros((1, 1)), [0.0])
    # the class means follow the KB: an added class-1 image at (0, 2) moves its mean to (0, 3)
    kb.add(np.array([[0.0, 2.0]], np.float32),
           [{"image_id": "new", "path": "", "label": 1, "class_name": "b"}])
    np.testing.assert_allclose(openset.search_statistic(kb, y[1:], "centroid")[0], [9.0])
    # a calibration of the statistic scores through the KB (what kb_lookup calls): quantiles
    # 0, 5, 10 of in-KB statistics at every SNR. (0, 1.6): 2 * 4.8 - 9 = 0.6 -> score 0.06,
    # kept; (0, 1.5): 0 -> score 0, below the 5% threshold; both nearest the new entry
    cal = openset.Calibration("centroid", 1, 0.05, "awgn", [0.0], [0.0, 0.5, 1.0],
                              [[0.0, 5.0, 10.0]])
    score, no_match, pos = cal.score_vectors(kb, np.array([[0.0, 1.6], [0.0, 1.5]]), 0.0)
    np.testing.assert_allclose(score, [0.06, 0.0], atol=1e-6)
    assert no_match.tolist() == [False, True] and pos.tolist() == [4, 4]


def test_kb_self_calibration_in_the_manifest_serves_kb_lookup(open_world, tmp_path):
    """``kb calibrate``'s core: a calibration fitted on the receiver's KB alone (its own
    images as queries, no validation data) is stored in the manifest, comes back after a
    reload, is what kb_lookup uses by default, and flags the absent classes' images more
    often than the present ones'; 'none' switches it off."""
    kb = open_world["kb_open"]
    cal, choice = openset.calibrate_kb(open_world["codec"], kb, "awgn", target_frr=0.1,
                                       snrs=(0.0, 10.0), repeats=2, seed=0)
    assert cal.source["kind"] == "kb self-calibration" and cal.source["n_queries"] == len(kb)
    assert choice["statistic"] == cal.statistic and 0.5 <= choice["auroc"] <= 1.0
    # on its own queries the one threshold rejects about target_frr of them at both SNRs
    import torch
    whole = open_world["codec"].searchable_kb(kb)
    own = openset.LeaveSelfOut(whole, np.arange(len(kb)))
    for snr in (0.0, 10.0):
        y = openset.received_vectors(open_world["codec"], kb.features(), "awgn", snr,
                                     torch.Generator().manual_seed(5))
        stat, _ = openset.search_statistic(own, y, cal.statistic, cal.k, cal.variances_at(snr))
        assert openset.rejection_rate(cal.no_match(cal.match_score(stat, snr))) < 0.25
    key = openset.store_in_kb(kb, cal)
    kb.save(tmp_path / "kb")
    again = KnowledgeBase.load(tmp_path / "kb")
    assert list(again.open_set) == [key]
    assert openset.calibration_from_kb(again, open_world["codec"]) == cal
    # a KB without one for this codec: no calibration
    assert openset.calibration_from_kb(again, None) is None
    tb = semantic_loopback(open_world["split"].sent, open_world["extractor"],
                           open_world["codec"], str(tmp_path / "kb"), "awgn", 10.0, seed=3,
                           results_path=str(tmp_path / "r.jsonl"))
    records = run_flowgraph(tb, tb.sink, timeout=120)
    assert records and all(r["match_score"] is not None for r in records)
    absent = np.array([r["label"] in ABSENT for r in records])
    flagged = np.array([r["no_match"] for r in records])
    assert flagged[absent].mean() > flagged[~absent].mean()
    lookup = kbsemcom.kb_lookup(str(tmp_path / "kb"), open_world["codec"], "none")
    assert lookup.calibration is None


@pytest.mark.parametrize("calibrate_on,role", [
    ("kb", "receiver KB, own images"), ("kb-validation", "receiver KB, validation images")])
def test_benchmark_runs_small(effnet, tmp_path, calibrate_on, role):
    """benchmarks/openset_table.py end to end on Fashion-MNIST at its --quick sizes: the
    table has every column, the numbers are rates, and each row names its data set."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "os"
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "openset_table.py"), "--datasets",
         "fashion-mnist", "--quick", "--snrs=0,10", "--out", str(out), "--json",
         "--save-calibration", str(out / "cal"), "--calibrate-on", calibrate_on],
        capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["snr_db"] for r in rows] == [0.0, 10.0]
    for r in rows:
        assert r["dataset"] == "fashion-mnist" and r["statistic"] in openset.STATISTICS
        assert all(0.0 <= r[k] <= 1.0 for k in ("auroc", "plain_auroc", "frr", "plain_frr",
                                                 "accuracy_in_kb", "raw_noiseless_auroc"))
        assert r["n_sent_in"] == r["n_sent_out"] == 100  # 5 of 10 classes x 20
    assert "wall time" in (out / "openset.md").read_text() and (out / "openset.png").exists()
    cal = openset.load_calibration(next((out / "cal").glob("*.json")))
    assert cal.source["role"] == role


def test_centroid_lr_statistic_by_hand():
    """The Gaussian class likelihood ratio with the noise and the fading: per value
    in-KB N(h mu_c, h^2 w + N0/2) against N(h m, h^2 b + N0/2), on a 2-value (one-symbol) KB."""
    feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]], np.float32)
    kb = KnowledgeBase(feats, [{"image_id": str(i), "path": "", "label": v, "class_name": "c"}
                               for i, v in enumerate([0, 0, 1, 1])], ["a", "b"],
                       {"name": "toy", "dim": 2}, index="Flat")
    # class means (1, 0), (0, 3); within-class variance (2/2, 2/2) = (1, 1) (4 entries - 2
    # classes); all entries: mean (0.5, 1.5), variance (0.75, 2.75)
    y = np.array([[2.0, 0.0]])

    def by_hand(h, noise):
        v_in = h * h * 1.0 + noise
        v_out = h * h * np.array([0.75, 2.75]) + noise
        best = max(-0.5 * np.sum((y[0] - h * mu) ** 2 / v_in + np.log(v_in))
                   for mu in (np.array([1.0, 0.0]), np.array([0.0, 3.0])))
        return best + 0.5 * np.sum((y[0] - h * np.array([0.5, 1.5])) ** 2 / v_out
                                   + np.log(v_out))

    # AWGN at 0 dB: N0 = 1, noise 0.5 per value, h = 1
    got = openset.search_statistic(kb, y, "centroid_lr", channel="awgn", snr_db=0.0)[0]
    assert got[0] == pytest.approx(by_hand(1.0, 0.5))
    # Rayleigh with a known fade |h| = 2 on the symbol: y = 2 (1, 0) matches class 0 exactly
    got = openset.search_statistic(kb, y, "centroid_lr", channel="rayleigh", snr_db=0.0,
                                   fading=np.array([[2.0]]))[0]
    assert got[0] == pytest.approx(by_hand(2.0, 0.5))
    assert got[0] == pytest.approx(-np.log(4.5) + 0.5 * (1 / 3.5 + 9 / 11.5 + np.log(3.5)
                                                        + np.log(11.5)))
    # Rayleigh without the fading: E|h| = sqrt(pi)/2, Var|h| / 2 added to the noise
    g = np.sqrt(np.pi) / 2
    got = openset.search_statistic(kb, y, "centroid_lr", channel="rayleigh", snr_db=0.0)[0]
    assert got[0] == pytest.approx(by_hand(g, 0.5 + (1 - g * g) / 2))
    with pytest.raises(openset.OpenSetError, match="fading of 2 symbols"):
        openset.search_statistic(kb, y, "centroid_lr", channel="rayleigh", snr_db=0.0,
                                 fading=np.ones((1, 2)))


def test_knowing_the_fading_separates_in_kb_from_absent_better():
    """Over per-symbol Rayleigh at -4 dB, centroid_lr with the fading the receiver knows
    ranks in-KB above absent images better than without it, and better than the plain
    nearest distance (synthetic unit-power codewords: 8 classes, 4 in the KB)."""
    import torch
    from gnuradio.kbsemcom.core.channel import apply_channel, power_normalize
    rng = np.random.default_rng(0)
    n, per = 32, 40
    centres = rng.normal(size=(8, 2 * n))
    lab = np.repeat(np.arange(8), per)

    def codewords(count):
        x = np.repeat(centres, count, axis=0) + 0.7 * rng.normal(size=(8 * count, 2 * n))
        return power_normalize(torch.from_numpy(x.astype(np.float32))).numpy()

    kb_x, sent_x = codewords(per), codewords(per)
    keep = lab < 4
    kb = KnowledgeBase(kb_x[keep], [{"image_id": str(i), "path": "", "label": int(v),
                                     "class_name": "c"} for i, v in enumerate(lab[keep])],
                       [str(c) for c in range(8)], {"name": "toy", "dim": 2 * n},
                       index="Flat")
    y, f = apply_channel(torch.from_numpy(sent_x), "rayleigh", -4.0,
                         torch.Generator().manual_seed(1), return_fading=True)
    y, f = y.numpy(), f.numpy()
    inside = lab < 4
    aurocs = {}
    for name, fading in (("known", f), ("unknown", None)):
        s = openset.search_statistic(kb, y, "centroid_lr", channel="rayleigh", snr_db=-4.0,
                                     fading=fading)[0]
        aurocs[name] = openset.auroc(s[inside], s[~inside])
    near = openset.search_statistic(kb, y, "nearest")[0]
    aurocs["nearest"] = openset.auroc(near[inside], near[~inside])
    assert aurocs["known"] > aurocs["unknown"] > aurocs["nearest"], aurocs


def test_a_calibration_with_the_fading_known_needs_it():
    """centroid_lr calibrated over Rayleigh with |h| known refuses a vector without it (a
    silent fallback would move its false rejections); one calibrated without it takes any."""
    feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]], np.float32)
    kb = KnowledgeBase(feats, [{"image_id": str(i), "path": "", "label": v, "class_name": "c"}
                               for i, v in enumerate([0, 0, 1, 1])], ["a", "b"],
                       {"name": "toy", "dim": 2}, index="Flat")
    curve = [[-50.0, 0.0, 50.0]]
    known = openset.Calibration("centroid_lr", 1, 0.05, "rayleigh", [0.0], [0.0, 0.5, 1.0],
                                curve, fading_known=True)
    y = np.array([[2.0, 0.0]])
    with pytest.raises(openset.OpenSetError, match="csi"):
        known.score_vectors(kb, y, 0.0)
    with_h = known.score_vectors(kb, y, 0.0, np.array([[2.0]]))[0]
    blind = openset.Calibration("centroid_lr", 1, 0.05, "rayleigh", [0.0], [0.0, 0.5, 1.0],
                                curve, fading_known=False)
    # without fading_known the csi is ignored: the same score with or without it
    assert blind.score_vectors(kb, y, 0.0)[0] == blind.score_vectors(kb, y, 0.0,
                                                                     np.array([[2.0]]))[0]
    assert with_h[0] != blind.score_vectors(kb, y, 0.0)[0][0]


def test_kb_lookup_without_the_csi_a_calibration_needs_keeps_the_retrieval():
    """A kb_lookup whose calibration was measured with the fading known, given a vector
    without csi: the retrieval stands, the record says why it has no score."""
    feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 4.0]], np.float32)
    kb = KnowledgeBase(feats, [{"image_id": str(i), "path": "", "label": v, "class_name": "c"}
                               for i, v in enumerate([0, 0, 1, 1])], ["a", "b"],
                       {"name": "toy", "dim": 2}, index="Flat")
    cal = openset.Calibration("centroid_lr", 1, 0.05, "rayleigh", [0.0], [0.0, 0.5, 1.0],
                              [[-50.0, 0.0, 50.0]], fading_known=True)
    lookup = kbsemcom.kb_lookup(kb, "", cal)
    (meta, _), (meta_h, _) = push_pdus(lookup, [
        ({"image_id": "x", "label": 0, "snr_db": 0.0}, np.array([2.0, 0.0], np.float32)),
        ({"image_id": "y", "label": 0, "snr_db": 0.0, "csi": [2.0]},
         np.array([2.0, 0.0], np.float32))])
    assert meta["retrieved_label"] == 0 and not meta.get("lost")
    assert meta["match_score"] is None and meta["open_set"].startswith("unscored") \
        and "csi" in meta["open_set"]
    assert meta_h["open_set"] == "calibrated" and 0.0 <= meta_h["match_score"] <= 1.0
