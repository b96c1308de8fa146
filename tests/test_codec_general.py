"""The general codec (recipe ``general``): learned without labels on a pool of data sets,
applied to a KB of classes it never saw; its symbols depend on the image's feature alone.
Synthetic features (no extractor): fast tier. Its leave-one-data-set-out accuracy on real
data sets is a benchmark (benchmarks/leave_one_out.py), not a test."""
import numpy as np
import pytest
import torch

from gnuradio import kbsemcom
from gnuradio.kbsemcom.core import protocols
from gnuradio.kbsemcom.core.channel import apply_channel
from gnuradio.kbsemcom.core.codec import (GENERAL_EXPONENTS, SemanticCodec, recipe_config,
                                          retrieval_accuracy, train_codec, validation_accuracy)
from gnuradio.kbsemcom.core.recipes import AUTO, DEFAULT_RECIPE, GENERAL, resolve_recipe
from conftest import push_pdus

DIM = 256
EXTRACTOR = {"name": "synthetic", "dim": DIM}


def _world(seed=0):
    """A feature space shared by two data sets: features lie near a 24-d subspace (what a
    pretrained embedding gives), classes are random centres in it. The pool has classes
    0..9; the target data set 12 other classes, never seen."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, 24)))[0].T * np.linspace(2, 0.5, 24)[:, None]

    def classes(n_classes, per_class):
        centres = rng.standard_normal((n_classes, 24))
        lab = np.repeat(np.arange(n_classes), per_class)
        f = (centres[lab] + 0.6 * rng.standard_normal((len(lab), 24))) @ basis
        f += 0.05 * rng.standard_normal(f.shape)
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32), lab

    pool, pool_labels = classes(10, 60)
    val, val_labels = classes(10, 20)
    target, target_labels = classes(12, 30)
    half = np.arange(len(val)) % 2 == 0
    validation = {"sent_features": val[half], "sent_labels": val_labels[half],
                  "kb_features": val[~half], "kb_labels": val_labels[~half]}
    t_half = np.arange(len(target)) % 3 == 0
    return dict(pool=pool, pool_labels=pool_labels, validation=validation,
                sent=target[t_half], sent_labels=target_labels[t_half],
                kb=target[~t_half], kb_labels=target_labels[~t_half])


@pytest.fixture(scope="module")
def general():
    w = _world()
    codec, history = train_codec(recipe_config("general", EXTRACTOR, "1/48", "awgn"),
                                 w["pool"], w["validation"], progress=False)
    return dict(w, codec=codec, history=history)


@torch.no_grad()
def _accuracy(codec, w, snr, channel="awgn", seed=0):
    x = codec.encode_real(torch.from_numpy(w["sent"]))
    y = apply_channel(x, channel, snr, torch.Generator().manual_seed(seed))
    return retrieval_accuracy(codec.decode_real(y).numpy(), w["sent_labels"],
                              codec.kb_keys(w["kb"]), w["kb_labels"])


def test_unseen_classes_well_above_chance(general):
    """12 classes the codec never saw, chance 8.3%: the projection keeps their
    neighbourhoods through the channel, near the raw features' own 1-NN."""
    w, codec = general, general["codec"]
    raw = retrieval_accuracy(w["sent"], w["sent_labels"], w["kb"], w["kb_labels"])
    assert raw > 0.6
    for snr, floor in ((10.0, raw - 0.1), (0.0, 0.4), (-4.0, 0.3)):
        acc = np.mean([_accuracy(codec, w, snr, seed=s) for s in range(3)])
        assert acc > floor, f"{acc:.2f} at {snr} dB (raw 1-NN {raw:.2f}, chance 0.08)"
    assert np.mean([_accuracy(codec, w, 0.0, "rayleigh", s) for s in range(3)]) > 0.35


def test_no_class_codewords_and_the_choice_is_the_validation_best(general):
    codec = general["codec"]
    assert codec.config.recipe == GENERAL and codec.against_kb and codec.config.n_classes == 0
    assert not [k for k in codec.state_dict() if "class" in k]
    tried = {(h["exponent"], h["n_axes"], h["snr_aware"]): h["val_accuracy"]
             for h in general["history"]}
    assert {e for e, _, _ in tried} == set(GENERAL_EXPONENTS)
    chosen = (float(codec.exponent), int(codec.n_axes), bool(float(codec.snr_aware)))
    assert tried[chosen] == max(tried.values())
    assert validation_accuracy(codec, general["validation"], codec.config) == \
        pytest.approx(tried[chosen])


def test_symbols_ignore_labels_and_kb(general, tmp_path):
    """The transmitter sees the feature only: training labels (shuffled or absent) do not
    change the code, and the symbols of an image are the same whatever KB the receiver holds
    (the encoder has no KB input) and whatever label its metadata carries, through the GNU
    Radio encoder block."""
    w, codec = general, general["codec"]
    shuffled = np.random.default_rng(1).permutation(w["pool_labels"])
    other, _ = train_codec(recipe_config("general", EXTRACTOR, "1/48", "awgn"), w["pool"],
                           w["validation"], progress=False, train_labels=shuffled)
    np.testing.assert_array_equal(codec.encode(w["sent"]), other.encode(w["sent"]))
    path = codec.save(tmp_path / "general.pt")
    loaded = SemanticCodec.load(path)
    np.testing.assert_array_equal(loaded.encode(w["sent"]), codec.encode(w["sent"]))
    # the receiver's side changes with the KB; the sent symbols do not
    assert not np.array_equal(codec.kb_keys(w["kb"][:5]), codec.kb_keys(w["kb"][5:10]))
    enc = kbsemcom.semantic_encoder(str(path))
    f = w["sent"][:2]
    out = push_pdus(enc, [({"image_id": "a", "label": 3}, f[0]),
                          ({"image_id": "a", "label": 7, "class_name": "other"}, f[0]),
                          ({"image_id": "b"}, f[1])])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_allclose(out[0][1], codec.encode(f[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.mean(np.abs(out[2][1]) ** 2), 1.0, rtol=1e-4)


def test_auto_recipe_and_pool_names():
    assert resolve_recipe(AUTO, True) == DEFAULT_RECIPE
    assert resolve_recipe(AUTO, False) == GENERAL
    assert resolve_recipe("kbsc-kb", False) == "kbsc-kb"
    assert protocols.is_pool("pool") and protocols.is_pool("pool-without-cifar10")
    assert not protocols.is_pool("cifar10")
    with pytest.raises(Exception, match="unknown pool"):
        protocols.pool_protocol("pool-without-nothing")


@pytest.mark.slow  # opens every data set of the pool (scans CIFAR-10's 60,000 files)
def test_pool_without_a_data_set(fmnist):
    """Fashion-MNIST (Debian's) is always in the pool; leaving it out leaves what
    KBSEMCOM_DATA_DIR holds, or a clear error when nothing is left."""
    pool = protocols.pool_protocol("pool")
    assert "fashion-mnist" in pool.params["members"]
    assert not pool.sent and not pool.kb and len(pool.train) == len(pool.train.parts[0]) + sum(
        len(p) for p in pool.train.parts[1:])
    n_fm = len(pool.params["member_sizes"]["fashion-mnist"])
    assert n_fm == 3
    labels_fm = {it.label for it in pool.train.parts[0]}
    assert labels_fm == set(range(10)) and pool.class_names[0].startswith("fashion-mnist/")
    try:
        rest = protocols.pool_protocol("pool-without-fashion-mnist")
    except Exception as err:
        assert "has no data set" in str(err)
    else:
        assert "fashion-mnist" not in rest.params["members"]


def test_a_users_folder_joins_the_pool(image_folder, monkeypatch):
    """KBSEMCOM_POOL_DIRS adds a user's own image folders to the pool, labels kept apart."""
    monkeypatch.setenv("KBSEMCOM_POOL_DIRS", str(image_folder))
    pool = protocols.pool_protocol("pool-without-cifar10+caltech100", train_per_class=3,
                                   val_per_class=1)
    assert pool.params["members"] == ["fashion-mnist", "images"]
    fm, own = pool.train.parts
    assert len(fm) == 30 and len(own) == 6
    assert {it.label for it in own} == {10, 11} and own[0].class_name.startswith("images/")
    assert not {it.source for it in own} & {it.source for it in pool.val_sent + pool.val_kb}


def test_gnuradio_receiver_retrieves_what_the_simulation_does(general, tmp_path):
    """The general codec through the GNU Radio blocks (encoder, seeded channel, decoder,
    KB lookup with the codec): each image retrieves exactly the KB entry the numpy path
    (transmit, then a search of the codec's KB keys) retrieves."""
    from gnuradio.kbsemcom.core.datasets import ImageItem
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    w, codec = general, general["codec"]
    path = str(codec.save(tmp_path / "general.pt"))
    names = [f"c{i}" for i in range(12)]
    items = [ImageItem(f"kb/{i}", int(lab), names[lab], path=f"/kb/{i}.png")
             for i, lab in enumerate(w["kb_labels"])]
    kb = KnowledgeBase.from_items(w["kb"], items, names, EXTRACTOR)
    sent = w["sent"][:12]
    symbols = push_pdus(kbsemcom.semantic_encoder(path),
                        [({"image_id": str(i), "extractor": "synthetic"}, f)
                         for i, f in enumerate(sent)])
    received = push_pdus(kbsemcom.semantic_channel("awgn", 0.0, 5), symbols)
    decoded = push_pdus(kbsemcom.semantic_decoder(path), received)
    hits = push_pdus(kbsemcom.kb_lookup(kb, path), decoded)
    by_id = {meta["image_id"]: meta["retrieved_id"] for meta, _ in hits}
    from gnuradio.kbsemcom.core.channel import Channel
    link = Channel("awgn", 0.0, 5)
    y = np.stack([link(s) for s in codec.encode(sent)])
    _, nearest = codec.searchable_kb(kb).search(codec.decode(y), 1)
    assert [by_id[str(i)] for i in range(len(sent))] == [items[j].image_id for j in nearest[:, 0]]
