"""The semantic codec: training works (no collapse), save/load round trip, clear errors."""
from fractions import Fraction

import numpy as np
import pytest
import torch

from gnuradio.kbsemcom.core.codec import CodecError, SemanticCodec, retrieval_accuracy
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
