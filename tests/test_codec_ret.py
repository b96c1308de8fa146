"""Our retrieval-trained codec (kbsc-ret): trains on real features, keeps the SemanticCodec
API the GNU Radio blocks use, and runs unchanged in a real loopback flowgraph."""
import numpy as np
import pytest

from gnuradio.kbsemcom.core.codec import (CodecError, SemanticCodec, recipe_config,
                                          retrieval_accuracy, train_codec)
from gnuradio.kbsemcom.core.features import extract_features
from conftest import labels, run_flowgraph


@pytest.fixture(scope="module")
def ret_world(world, tmp_path_factory):
    ext, split = world["extractor"], world["split"]
    train_f, train_kept = extract_features(ext, split.train)
    vs_f, vs = extract_features(ext, split.val_sent)
    vk_f, vk = extract_features(ext, split.val_kb)
    config = recipe_config("kbsc-ret", ext.identity, "1/48", "rayleigh", epochs=25)
    codec, history = train_codec(config, train_f, {"sent_features": vs_f,
                                                   "sent_labels": labels(vs),
                                                   "kb_features": vk_f, "kb_labels": labels(vk)},
                                 progress=False, train_labels=labels(train_kept))
    path = codec.save(tmp_path_factory.mktemp("ret") / "ret.pt", history)
    return dict(world, ret=codec, ret_path=str(path), history=history)


def test_ret_codec_api_and_file_round_trip(ret_world):
    codec = SemanticCodec.load(ret_world["ret_path"])
    assert codec.config.recipe == "kbsc-ret" and codec.config.to_dict()["cbr"] == "1/48"
    sent_f, _ = extract_features(ret_world["extractor"], ret_world["split"].sent)
    s = codec.encode(sent_f)
    assert s.dtype == np.complex64 and s.shape == (len(sent_f), 64) and codec.n_symbols == 64
    np.testing.assert_allclose(np.mean(np.abs(s) ** 2, axis=1), 1.0, rtol=1e-4)
    decoded = codec.decode(s)
    np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(decoded, ret_world["ret"].decode(s))
    assert codec.decode(s[0]).shape == (codec.config.dim,)
    with pytest.raises(CodecError, match="complex symbols"):
        codec.decode(s[:, :10])
    with pytest.raises(CodecError, match="unknown codec recipe"):
        recipe_config("no-such-recipe", ret_world["extractor"].identity, "1/48")


def test_ret_codec_keeps_up_with_the_papers_recipe_at_low_snr(ret_world):
    """The paper's recipe (kbsc: its own epochs and learning rate), trained on the same
    features, against kbsc-ret on the same sent images, KB and Rayleigh channel at -4 dB.

    On this small world (60 training images per class, 25 epochs) the two are level (measured,
    10 channel seeds: kbsc-ret 0.68 vs kbsc 0.67 at -4 dB, 0.56 vs 0.60 at -8 dB), so the test
    asks for no more than a tie within 5 points; a ranking needs the evaluation's sizes
    (docs/results.md). kbsc-ret trained with the paper's loss instead falls to 0.28."""
    ext, split = ret_world["extractor"], ret_world["split"]
    train_f, _ = extract_features(ext, split.train)
    vs_f, vs = extract_features(ext, split.val_sent)
    vk_f, vk = extract_features(ext, split.val_kb)
    paper, _ = train_codec(recipe_config("kbsc", ext.identity, "1/48", "rayleigh"), train_f,
                           {"sent_features": vs_f, "sent_labels": labels(vs),
                            "kb_features": vk_f, "kb_labels": labels(vk)}, progress=False)
    sent_f, sent = extract_features(ext, split.sent)
    kb = ret_world["kb"]
    kb_f, kb_l = kb.features(), np.array([e["label"] for e in kb.entries])
    ceiling = retrieval_accuracy(sent_f, labels(sent), kb_f, kb_l)

    def accuracy(codec):
        return np.mean([retrieval_accuracy(codec.transmit(sent_f, "rayleigh", -4.0, seed=s),
                                           labels(sent), kb_f, kb_l) for s in range(10)])
    ret, kbsc = accuracy(ret_world["ret"]), accuracy(paper)
    assert ret > kbsc - 0.05, f"kbsc-ret {ret:.3f} vs the paper's kbsc {kbsc:.3f} at -4 dB"
    assert ret > ceiling - 0.2, f"kbsc-ret {ret:.2f} vs ceiling {ceiling:.2f} at -4 dB"
    assert max(h["val_accuracy"] for h in ret_world["history"]) > 0.3


def test_ret_codec_in_a_gnuradio_flowgraph(ret_world):
    from gnuradio.kbsemcom.flowgraphs import semantic_loopback
    items = ret_world["split"].sent[:20]
    tb = semantic_loopback(items, ret_world["extractor"], ret_world["ret_path"],
                           ret_world["kb"], "rayleigh", 0.0, seed=3)
    records = run_flowgraph(tb, tb.sink, timeout=120)
    assert len(records) == 20 and not any(r["lost"] for r in records)
    assert all(r["n_symbols"] == 64 for r in records)
    assert sum(r["correct"] for r in records) >= 8
