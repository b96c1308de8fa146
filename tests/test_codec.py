"""The semantic codec: training works (no collapse), save/load round trip, clear errors."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from gnuradio.kbsemcom.core import codec as codec_mod
from gnuradio.kbsemcom.core.codec import CodecError, SemanticCodec, retrieval_accuracy
from gnuradio.kbsemcom.core.recipes import DEFAULT_RECIPE, DESCRIPTIONS
from gnuradio.kbsemcom.core.features import extract_features
from conftest import labels


def sent_and_kb(world):
    ext = world["extractor"]
    sent_f, sent = extract_features(ext, world["split"].sent)
    kb = world["kb"]
    return sent_f, labels(sent), kb.features(), np.array([e["label"] for e in kb.entries])


def test_trained_codec_beats_chance_and_does_not_collapse(world):
    codec = world["codec"]
    sent_f, sent_l, kb_f, kb_l = sent_and_kb(world)
    acc = retrieval_accuracy(codec.transmit(sent_f, "awgn", 10.0, seed=0), sent_l, kb_f, kb_l)
    assert acc > 0.4, f"accuracy {acc:.2f} is near chance (0.10): the codec collapsed"
    # the decoded features must still vary with the input, not be one constant vector
    decoded = codec.decode(codec.encode(sent_f))
    assert decoded.std(axis=0).mean() > 0.1 * sent_f.std(axis=0).mean()


def test_encoder_output_is_unit_power_complex(world):
    sent_f, *_ = sent_and_kb(world)
    s = world["codec"].encode(sent_f)
    assert s.dtype == np.complex64 and s.shape == (len(sent_f), 64)
    np.testing.assert_allclose(np.mean(np.abs(s) ** 2, axis=1), 1.0, rtol=1e-4)


def test_save_load_round_trip_is_identical(world, tmp_path):
    codec = world["codec"]
    path = codec.save(tmp_path / "codec.pt")
    loaded = SemanticCodec.load(path)
    sent_f, *_ = sent_and_kb(world)
    np.testing.assert_array_equal(loaded.encode(sent_f), codec.encode(sent_f))
    np.testing.assert_array_equal(loaded.transmit(sent_f, "rayleigh", 0, 3),
                                  codec.transmit(sent_f, "rayleigh", 0, 3))
    meta = loaded.config.to_dict()
    assert meta["cbr"] == "1/48" and meta["n_symbols"] == 64 and meta["dim"] == 1280
    assert meta["extractor"]["name"] == "efficientnet-lite0"
    assert meta["train_channel"] == "awgn" and meta["seed"] == 0
    assert meta["training_data"]["dataset"] == "fashion-mnist"


def test_load_refuses_files_that_are_not_codecs(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(CodecError, match="not a kbsemcom-codec"):
        SemanticCodec.load(bad)
    # arbitrary pickled objects are refused by weights_only loading
    torch.save({"x": Fraction(1, 3)}, tmp_path / "pickle.pt")
    with pytest.raises(CodecError, match="not a readable codec"):
        SemanticCodec.load(tmp_path / "pickle.pt")
    with pytest.raises(CodecError, match="does not exist"):
        SemanticCodec.load(tmp_path / "missing.pt")


def test_wrong_sizes_are_clear_errors(world):
    codec = world["codec"]
    with pytest.raises(CodecError, match="1280-d"):
        codec.encode(np.zeros(512, np.float32))
    with pytest.raises(CodecError, match="expected 64 complex symbols"):
        codec.decode(np.zeros(50, np.complex64))


def test_one_class_per_recipe_and_read_only_defaults(tmp_path):
    """SemanticCodec(config) and SemanticCodec.load build the recipe's own class; the recipe
    defaults cannot be changed in place (a run passes its overrides instead)."""
    assert set(codec_mod.RECIPES) == set(DESCRIPTIONS) and DEFAULT_RECIPE == "kbsc"
    extractor = {"name": "synthetic", "dim": 16}
    for recipe, cls in codec_mod.RECIPES.items():
        config = codec_mod.recipe_config(recipe, extractor, "1/96", n_classes=3)
        codec = SemanticCodec(config)
        assert type(codec) is cls and issubclass(cls, SemanticCodec)
        assert config.epochs == cls.defaults.get("epochs", 100)
        loaded = SemanticCodec.load(codec.save(tmp_path / f"{recipe}.pt"))
        assert type(loaded) is cls
        x = np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)
        np.testing.assert_array_equal(loaded.encode(x), codec.encode(x))
    assert codec_mod.recipe_config("kbsc-kb", extractor, "1/96", epochs=3).epochs == 3
    with pytest.raises(TypeError):
        codec_mod.KBCodec.defaults["epochs"] = 3
    with pytest.raises(TypeError):
        codec_mod.RECIPES["kbsc"] = codec_mod.KBCodec
    assert codec_mod.KBCodec.defaults["epochs"] == 100
    with pytest.raises(CodecError, match="unknown codec recipe"):
        codec_mod.recipe_config("kbsc-xyz", extractor, "1/96")


def test_files_of_another_version_say_to_retrain(tmp_path):
    """A codec file whose recipe or weights this version does not know fails with one line
    that says to retrain it."""
    config = codec_mod.recipe_config("kbsc", {"name": "synthetic", "dim": 16}, "1/96")
    blob = {"format": codec_mod.FORMAT, "config": config.to_dict(), "history": [],
            "state_dict": SemanticCodec(config).state_dict()}
    blob["state_dict"].pop("decoder.3.running_mean")
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(CodecError, match="another version.*retrain"):
        SemanticCodec.load(tmp_path / "old.pt")
    blob["config"]["recipe"] = "kbsc-v0"
    torch.save(blob, tmp_path / "older.pt")
    with pytest.raises(CodecError, match="unknown codec recipe.*retrain"):
        SemanticCodec.load(tmp_path / "older.pt")


def test_training_threads_are_set_and_restored(monkeypatch):
    """A codec trains on $KBSEMCOM_TRAIN_THREADS threads (default 1) and gives the process its
    thread counts back; a bad value is a clear error."""
    import faiss
    before = (torch.get_num_threads(), faiss.omp_get_max_threads())
    monkeypatch.delenv("KBSEMCOM_TRAIN_THREADS", raising=False)
    with codec_mod.training_threads() as n:
        assert n == 1 and torch.get_num_threads() == 1 and faiss.omp_get_max_threads() == 1
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == before
    monkeypatch.setenv("KBSEMCOM_TRAIN_THREADS", "2")
    assert codec_mod.training_thread_count() == 2
    monkeypatch.setenv("KBSEMCOM_TRAIN_THREADS", "none")
    with pytest.raises(CodecError, match="KBSEMCOM_TRAIN_THREADS"):
        codec_mod.train_codec(codec_mod.recipe_config("kbsc", {"name": "t", "dim": 8}, "1/48"),
                              np.zeros((4, 8), np.float32), {})
    assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == before


def test_kbsc_kb_weights_do_not_depend_on_earlier_trainings(world):
    """kbsc-kb keeps the last split's decomposition in the process and centres the training
    features once per fit; a codec trained after others (at another CBR, so the kept axes
    are cut anew) is bit for bit the one trained first."""
    from gnuradio.kbsemcom.core.pipeline import validation_pair
    split, ext = world["split"], world["extractor"]
    feats, kept = {}, {}
    for role in ("train", "val_sent", "val_kb"):
        feats[role], kept[role] = extract_features(ext, split.role(role))

    def train(cbr):
        config = codec_mod.recipe_config("kbsc-kb", ext.identity, cbr, epochs=5)
        return codec_mod.train_codec(config, feats["train"], validation_pair(feats, kept),
                                     progress=False, train_labels=labels(kept["train"]))[0]
    codec_mod._last_axes.clear()
    first = train("1/48")
    train("1/24")
    again = train("1/48")
    assert first.history == again.history
    for name, t in first.state_dict().items():
        assert torch.equal(t, again.state_dict()[name]), name


@pytest.mark.parametrize("recipe", sorted(codec_mod.RECIPES))
def test_one_vector_path_equals_the_torch_forward(recipe):
    """encode/decode of one vector (the blocks' call) take the numpy path of core.fastpath
    where the recipe has one: equal to torch's forward of the same module to float
    tolerance, also after its weights change in place (one definition of the weights)."""
    dim = 1280
    config = codec_mod.recipe_config(recipe, {"name": "synthetic", "dim": dim}, "1/48",
                                     n_classes=3)
    codec = SemanticCodec(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # BatchNorm statistics and affine terms that are not the identity
        for name, t in codec.state_dict().items():
            if t.is_floating_point() and ("running" in name or "bn" in name or t.dim() == 1):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
    codec.eval()
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(5, dim)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    has_numpy = codec.encode_numpy(feats[0]) is not None
    assert has_numpy == (recipe in ("kbsc", "kbsc-ret"))  # the recipes with a numpy path
    for _ in range(2):
        symbols = codec.encode(feats)               # torch, a batch
        one = np.stack([codec.encode(f) for f in feats])
        assert one.dtype == np.complex64
        np.testing.assert_allclose(one, symbols, rtol=1e-4, atol=2e-5)
        received = symbols + 0.1 * rng.normal(size=symbols.shape).astype(np.float32)
        decoded = codec.decode(received)
        one = np.stack([codec.decode(r) for r in received])
        assert one.dtype == np.float32 and one.shape == decoded.shape
        np.testing.assert_allclose(one, decoded, rtol=1e-4, atol=2e-5)
        with torch.no_grad():  # an optimizer step changes the parameters in place
            for p in codec.parameters():
                p.mul_(1.5)
            for name, t in codec.named_buffers():
                if "running_var" in name:
                    t.mul_(2.0)
    codec.train()  # training mode: torch (the blocks call in eval mode)
    assert codec._numpy(codec.encode_numpy, feats[0]) is None
