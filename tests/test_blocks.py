"""Each block in a real GNU Radio flowgraph with a deadline, and bad input ending as an
explicit lost record, never a hang."""
import time

import numpy as np
import pmt
import pytest

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core import datasets
from gnuradio.kbsemcom.core.channel import Channel
from gnuradio.kbsemcom.core.codec import retrieval_accuracy
from gnuradio.kbsemcom.core.features import extract_features
from gnuradio.kbsemcom.flowgraphs import semantic_loopback
from conftest import labels, push_pdus, run_flowgraph


def test_loopback_flowgraph_matches_the_simulation_exactly(world, tmp_path):
    """Same codec, same seeded channel: the flowgraph retrieves what the simulation does."""
    sent = world["split"].sent
    tb = semantic_loopback(sent, world["extractor"], world["codec"], world["kb"], "awgn", 0.0,
                           seed=5, results_path=str(tmp_path / "r.jsonl"))
    records = run_flowgraph(tb, tb.sink, timeout=120)
    assert [r["seq"] for r in records] == list(range(len(sent)))
    assert not any(r["lost"] for r in records)
    feats, kept = extract_features(world["extractor"], sent)
    decoded = world["codec"].transmit(feats, "awgn", 0.0, seed=5)
    _, nearest = world["kb"].search(decoded, 1)
    expected = [world["kb"].entries[i]["image_id"] for i in nearest[:, 0]]
    assert [r["retrieved_id"] for r in records] == expected
    kb_labels = np.array([e["label"] for e in world["kb"].entries])
    acc = retrieval_accuracy(decoded, labels(kept), world["kb"].features(), kb_labels)
    assert np.mean([r["correct"] for r in records]) == acc
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == len(sent)


def test_source_ends_the_flowgraph_by_itself(world):
    """image_source signals done, so tb.run() returns once every image went through."""
    tb = semantic_loopback(world["split"].sent[:5], world["extractor"], world["codec"],
                           world["kb"], "none")
    import threading
    runner = threading.Thread(target=tb.run, daemon=True)
    runner.start()
    runner.join(120)
    assert not runner.is_alive(), "tb.run() did not return after the source finished"
    assert tb.sink.count() == 5


def test_corrupt_and_odd_images_end_as_results_or_lost_records(world, image_folder):
    items = datasets.scan_image_folder(image_folder).items()
    tb = semantic_loopback(items, world["extractor"], world["codec"], world["kb"], "awgn", 10)
    records = run_flowgraph(tb, tb.sink, timeout=120)
    by_id = {r["image_id"]: r for r in records}
    assert len(by_id) == len(items)
    broken = by_id["Trouser/broken.jpg"]
    assert broken["lost"] and broken["stage"] == "feature_extractor"
    assert "corrupt or not an image" in broken["reason"] and not broken["correct"]
    others = [r for r in records if r["image_id"] != "Trouser/broken.jpg"]
    assert not any(r["lost"] for r in others)  # grayscale, RGBA and RGB all went through


def test_wrong_length_symbol_pdu_becomes_a_lost_record(world):
    dec = kbsemcom.semantic_decoder(world["codec"])
    good = world["codec"].encode(np.ones(1280, np.float32) / np.sqrt(1280))
    out = push_pdus(dec, [({"image_id": "short"}, np.zeros(50, np.complex64)),
                          ({"image_id": "ok"}, good)])
    (meta_bad, payload_bad), (meta_ok, payload_ok) = out
    assert meta_bad["lost"] and "expected 64 complex symbols" in meta_bad["reason"]
    assert payload_bad.size == 0
    assert not meta_ok.get("lost") and payload_ok.shape == (1280,)


def test_a_message_that_is_not_a_pdu_does_not_stop_the_block(world):
    dec = kbsemcom.semantic_decoder(world["codec"])
    good = world["codec"].encode(np.ones(1280, np.float32) / np.sqrt(1280))
    with pytest.raises(AssertionError, match="1 PDUs never came out"):
        push_pdus(dec, [(None, pmt.intern("garbage")), ({"image_id": "ok"}, good)], timeout=3)


def test_kb_lookup_refuses_features_of_another_extractor(world, tiny_clip, fmnist):
    from gnuradio.kbsemcom.core import pipeline
    other_kb = pipeline.build_kb(tiny_clip, world["split"].kb[:10], fmnist.class_names)
    look = kbsemcom.kb_lookup(other_kb)
    (meta, _), = push_pdus(look, [({"image_id": "a", "extractor": "efficientnet-lite0"},
                                   np.zeros(1280, np.float32))])
    assert meta["lost"] and "efficientnet-lite0" in meta["reason"]


def test_encoder_and_channel_blocks(world):
    enc = kbsemcom.semantic_encoder(world["codec"])
    feats = np.random.default_rng(0).standard_normal((3, 1280)).astype(np.float32)
    out = push_pdus(enc, [({"image_id": str(i)}, f) for i, f in enumerate(feats)])
    for (meta, symbols), f in zip(out, feats):
        assert meta["cbr"] == "1/48" and meta["n_symbols"] == 64
        np.testing.assert_allclose(symbols, world["codec"].encode(f), rtol=1e-5, atol=1e-6)
    chan = kbsemcom.semantic_channel("awgn", 5.0, 2)
    received = push_pdus(chan, [({"image_id": "0"}, out[0][1])])[0][1]
    np.testing.assert_allclose(received, Channel("awgn", 5.0, 2)(out[0][1]), atol=1e-6)


def test_image_source_and_extractor_blocks(world, fmnist):
    """image_source -> feature_extractor in one flowgraph: each image's feature is the
    extractor's own, under the source's metadata (the source alone: test_image_source.py)."""
    import threading
    from gnuradio import blocks, gr
    from gnuradio.kbsemcom.pdus import parse_pdu
    src_items = fmnist.items("test")[:3]
    src = kbsemcom.image_source(items=src_items)
    fx = kbsemcom.feature_extractor(world["extractor"])
    store = blocks.message_debug()
    tb = gr.top_block()
    tb.msg_connect((src, "out"), (fx, "in"))
    tb.msg_connect((fx, "out"), (store, "store"))
    runner = threading.Thread(target=tb.run, daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the flowgraph did not end after the source's last image"
    out = [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]
    assert [meta["image_id"] for meta, _ in out] == [it.image_id for it in src_items]
    direct = world["extractor"].embed([it.load() for it in src_items])
    for (meta, feature), ref, it in zip(out, direct, src_items):
        assert meta["extractor"] == "efficientnet-lite0" and meta["label"] == it.label
        np.testing.assert_allclose(feature, ref, atol=1e-5)


def test_feature_extractor_batches_what_waits_and_keeps_order(world, fmnist):
    """PDUs already queued at the extractor's input are embedded in one call (up to Max
    batch), each still under its own metadata and in order; a corrupt one is lost alone."""
    import pmt
    from gnuradio import blocks, gr
    from gnuradio.kbsemcom.pdus import make_pdu, parse_pdu
    items = fmnist.items("test")[:11]
    fx = kbsemcom.feature_extractor(world["extractor"], max_batch=8)
    store = blocks.message_debug()
    tb = gr.top_block()
    tb.msg_connect((fx, "out"), (store, "store"))
    pdus = [({"image_id": it.image_id, "seq": i}, np.frombuffer(it.read_bytes(), np.uint8))
            for i, it in enumerate(items)]
    pdus.insert(5, ({"image_id": "corrupt", "seq": 99}, np.arange(40, dtype=np.uint8)))
    for meta, data in pdus:  # queued before the flowgraph starts: all wait at once
        fx.to_basic_block()._post(pmt.intern("in"), make_pdu(meta, data))
    tb.start()
    deadline = time.monotonic() + 60
    while store.num_messages() < len(pdus) and time.monotonic() < deadline:
        time.sleep(0.02)
    tb.stop()
    tb.wait()
    out = [parse_pdu(store.get_message(i)) for i in range(store.num_messages())]
    assert [m["image_id"] for m, _ in out] == [m["image_id"] for m, _ in pdus]
    assert fx.profile["handled"] == 12 and fx.profile["calls"] == 2  # 8 + 4
    assert out[5][0]["lost"] and out[5][0]["stage"] == "feature_extractor"
    good = [o for o in out if not o[0].get("lost")]
    direct = world["extractor"].embed([it.load() for it in items])
    np.testing.assert_allclose(np.stack([f for _, f in good]), direct, atol=1e-5)
