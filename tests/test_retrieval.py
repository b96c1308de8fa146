"""Class-level MAP retrieval (core/retrieval.py) and the general-map recipe that uses it:
the search on a hand-computed case, the fallbacks, the codec on classes it never saw, and the
KB Lookup block doing in a flowgraph what the numpy path does. Synthetic features: fast tier.
Its leave-one-data-set-out accuracy is a benchmark (benchmarks/leave_one_out.py)."""
import numpy as np
import pytest
import torch

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core.channel import Channel, apply_channel
from gnuradio.kbsemcom.core.codec import (GENERAL_MAP_SPREADS, SemanticCodec, recipe_config,
                                          retrieval_accuracy, train_codec)
from gnuradio.kbsemcom.core.retrieval import (class_map_search, estimate_noise_power,
                                              noise_power)
from conftest import push_pdus
from test_codec_general import EXTRACTOR, _world


def test_class_map_on_a_hand_computed_case():
    """One query at the origin; keys: class 0 one entry at distance^2 1, class 1 two entries at
    distance^2 1.21 and 1.44. With N0/2 = 1 (N0 = 2): class 0 sums exp(-0.5) = 0.607, class 1
    exp(-0.605) + exp(-0.72) = 1.033, so class 1 wins and its nearest entry (position 1)
    comes back, although the nearest entry is position 0; its log posterior is
    log(1.033 / 1.640)."""
    keys = np.array([[1.0, 0.0], [0.0, 1.1], [1.2, 0.0]])
    labels = [0, 1, 1]
    q = np.zeros((1, 2))
    pos, logp = class_map_search(keys, labels, q, n0=2.0)
    assert pos.tolist() == [1]
    a, b = np.exp(-0.5), np.exp(-0.5 * 1.21) + np.exp(-0.5 * 1.44)
    assert logp[0] == pytest.approx(np.log(b / (a + b)))
    # a sharper metric (small noise) makes it the nearest entry's class again
    assert class_map_search(keys, labels, q, n0=0.02)[0].tolist() == [0]
    # spread widens the kernel like noise does; scale weighs the values (key units)
    assert class_map_search(keys, labels, q, n0=0.02, spread=0.99)[0].tolist() == [1]
    assert class_map_search(keys, labels, q, n0=2.0, scale=[4.0, 0.25])[0].tolist() == [1]


def test_fallbacks_and_fading():
    keys = np.array([[1.0, 0.0], [0.0, 1.1], [1.2, 0.0]])
    q = np.zeros((1, 2))
    # no labels: the nearest entry under the metric, whatever the noise
    assert class_map_search(keys, [None] * 3, q, n0=2.0)[0].tolist() == [0]
    assert class_map_search(np.zeros((0, 2)), [], q, n0=1.0)[0].tolist() == [-1]
    # fading: y = h x; dividing nothing, the metric compares y with h * key
    y = np.array([[0.5, 0.0]])
    assert class_map_search(keys[[0, 1]], [0, 1], y, n0=1e-3,
                            fading=np.array([[0.5, 0.5]]))[0].tolist() == [0]
    # the noise power from a known SNR, or from the received power of unit-power codewords
    assert noise_power(0.0) == pytest.approx(1.0) and noise_power(None) < 1e-5
    x = apply_channel(torch.nn.functional.normalize(torch.randn(200, 256), dim=-1) * 128 ** 0.5,
                      "awgn", -4.0, torch.Generator().manual_seed(0))
    assert np.mean(estimate_noise_power(x.numpy())) == pytest.approx(noise_power(-4.0), rel=0.1)


@pytest.fixture(scope="module")
def general_map():
    w = _world()
    codec, history = train_codec(recipe_config("general-map", EXTRACTOR, "1/48", "awgn"),
                                 w["pool"], w["validation"], progress=False)
    return dict(w, codec=codec, history=history)


def _map_accuracy(codec, w, snr, channel="awgn", seed=0):
    from gnuradio.kbsemcom.core.datasets import ImageItem
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    items = [ImageItem(f"kb/{i}", int(lab), f"c{lab}") for i, lab in enumerate(w["kb_labels"])]
    kb = codec.searchable_kb(KnowledgeBase.from_items(w["kb"], items,
                                                      [f"c{i}" for i in range(12)], EXTRACTOR))
    with torch.no_grad():
        x = codec.encode_real(torch.from_numpy(w["sent"]))
        y, h = apply_channel(x, channel, snr, torch.Generator().manual_seed(seed),
                             return_fading=True)
        pos = codec.map_search(kb, codec.decode_real(y).numpy(), noise_power(snr),
                               h.numpy() if channel == "rayleigh" else None)
    return np.mean(w["kb_labels"][pos] == w["sent_labels"])


def test_general_map_on_unseen_classes(general_map):
    """12 classes the codec never saw (chance 8.3%): the MAP search stays near the raw
    features' 1-NN when the noise is low and well above chance at -4 dB, over AWGN and
    over Rayleigh with the fading known per symbol."""
    w, codec = general_map, general_map["codec"]
    raw = retrieval_accuracy(w["sent"], w["sent_labels"], w["kb"], w["kb_labels"])
    assert codec.class_map and not float(codec.snr_aware)
    for snr, floor in ((10.0, raw - 0.1), (-4.0, 0.3)):
        acc = np.mean([_map_accuracy(codec, w, snr, seed=s) for s in range(3)])
        assert acc > floor, f"{acc:.2f} at {snr} dB (raw 1-NN {raw:.2f}, chance 0.08)"
    assert np.mean([_map_accuracy(codec, w, 0.0, "rayleigh", s) for s in range(3)]) > 0.35
    tried = {(h["exponent"], h["spread"]): h["val_accuracy"] for h in general_map["history"]}
    assert {s for _, s in tried} == set(GENERAL_MAP_SPREADS)
    assert tried[(float(codec.exponent), float(codec.spread))] == max(tried.values())


def test_general_map_symbols_ignore_labels(general_map, tmp_path):
    """Labels (shuffled) change nothing at the transmitter; the file round-trips."""
    w, codec = general_map, general_map["codec"]
    shuffled = np.random.default_rng(1).permutation(w["pool_labels"])
    other, _ = train_codec(recipe_config("general-map", EXTRACTOR, "1/48", "awgn"), w["pool"],
                           w["validation"], progress=False, train_labels=shuffled)
    np.testing.assert_array_equal(codec.encode(w["sent"]), other.encode(w["sent"]))
    loaded = SemanticCodec.load(codec.save(tmp_path / "gm.pt"))
    np.testing.assert_array_equal(loaded.encode(w["sent"]), codec.encode(w["sent"]))
    assert float(loaded.spread) == float(codec.spread)


def _labelled_kb(w):
    """The world's KB with its 12 class names and image paths, and its entries."""
    from gnuradio.kbsemcom.core.datasets import ImageItem
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    names = [f"c{i}" for i in range(12)]
    items = [ImageItem(f"kb/{i}", int(lab), names[lab], path=f"/kb/{i}.png")
             for i, lab in enumerate(w["kb_labels"])]
    return items, KnowledgeBase.from_items(w["kb"], items, names, EXTRACTOR)


def test_kb_lookup_class_map_matches_the_numpy_path(general_map, tmp_path):
    """Encoder, seeded channel, decoder and KB Lookup (search 'auto': the codec's class MAP,
    noise power from the metadata's snr_db) retrieve exactly the entries of map_search; a
    codec without a MAP metric refuses search 'class-map' before the flowgraph starts."""
    w, codec = general_map, general_map["codec"]
    path = str(codec.save(tmp_path / "gm.pt"))
    items, kb = _labelled_kb(w)
    sent = w["sent"][:12]
    symbols = push_pdus(kbsemcom.semantic_encoder(path),
                        [({"image_id": str(i), "snr_db": -2.0}, f) for i, f in enumerate(sent)])
    received = push_pdus(kbsemcom.semantic_channel("awgn", -2.0, 5), symbols)
    decoded = push_pdus(kbsemcom.semantic_decoder(path), received)
    hits = push_pdus(kbsemcom.kb_lookup(kb, path), decoded)
    by_id = {meta["image_id"]: meta["retrieved_id"] for meta, _ in hits}
    link = Channel("awgn", -2.0, 5)
    y = np.stack([link(s) for s in codec.encode(sent)])
    pos = codec.map_search(codec.searchable_kb(kb), codec.decode(y), noise_power(-2.0))
    assert [by_id[str(i)] for i in range(len(sent))] == [items[j].image_id for j in pos]
    general, _ = train_codec(recipe_config("general", EXTRACTOR, "1/48", "awgn"), w["pool"],
                             w["validation"], progress=False)
    with pytest.raises(ValueError, match="class-map"):
        kbsemcom.kb_lookup(kb, general, search="class-map")


def test_kb_lookup_uses_the_fading_it_is_given(tmp_path):
    """Over Rayleigh, Coherent Channel's csi and snr_db reach KB Lookup through the decoder and
    the MAP search uses them: the flowgraph retrieves what map_search with the same draws'
    fading does. Without snr_db the lookup estimates the noise power and still answers."""
    w = _world()
    codec, _ = train_codec(recipe_config("general-map", EXTRACTOR, "1/48", "rayleigh"),
                           w["pool"], w["validation"], progress=False)
    path = str(codec.save(tmp_path / "gm-rayleigh.pt"))
    items, kb = _labelled_kb(w)
    sent = w["sent"][:12]
    symbols = push_pdus(kbsemcom.semantic_encoder(path),
                        [({"image_id": str(i)}, f) for i, f in enumerate(sent)])
    received = push_pdus(kbsemcom.coherent_channel("rayleigh", 0.0, 3), symbols)
    decoded = push_pdus(kbsemcom.semantic_decoder(path), received)
    hits = push_pdus(kbsemcom.kb_lookup(kb, path), decoded)
    by_id = {meta["image_id"]: meta["retrieved_id"] for meta, _ in hits}
    link = Channel("rayleigh", 0.0, 3)
    pairs = [link.transmit(s) for s in codec.encode(sent)]
    y, h = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    pos = codec.map_search(codec.searchable_kb(kb), codec.decode(y), noise_power(0.0), h)
    assert [by_id[str(i)] for i in range(len(sent))] == [items[j].image_id for j in pos]
    lookup = kbsemcom.kb_lookup(kb, path, search="class-map")
    out, _ = lookup.process({"image_id": "x"}, codec.decode(y[0]))
    assert out["retrieved_id"] in {it.image_id for it in items} and out["distance"] >= 0
