"""Feature extractors: the real open_clip loading code (tiny config), EfficientNet-Lite0."""
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gnuradio.kbsemcom.core import extractors


def images(n=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)) for _ in range(n)]


def test_open_clip_tiny_model_embeds_unit_vectors(tiny_clip):
    feats = tiny_clip.embed(images())
    assert feats.shape == (3, 32) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    assert tiny_clip.identity["kind"] == "open_clip" and tiny_clip.identity["weights"] == "random"


def test_open_clip_loads_a_local_checkpoint(tiny_clip, tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save(tiny_clip.model.state_dict(), ckpt)
    loaded = extractors.load_extractor(f"open_clip:tiny-clip:{ckpt}")
    np.testing.assert_allclose(loaded.embed(images()), tiny_clip.embed(images()), atol=1e-5)
    assert loaded.identity["weights"] == str(ckpt)
    assert loaded.name != tiny_clip.name  # other weights, other feature space


def test_pretrained_weights_neither_cached_nor_downloadable_fail_fast_and_clearly():
    # conftest points HF_ENDPOINT at a closed port and HF_HOME at an empty folder
    start = time.monotonic()
    with pytest.raises(extractors.ExtractorError, match="cannot be reached.*models fetch"):
        extractors.load_extractor("open_clip:ViT-B-32:openai")
    assert time.monotonic() - start < 60


def test_unknown_pretrained_tag_is_a_clear_error(tiny_clip):
    with pytest.raises(extractors.ExtractorError, match="not a known tag or valid file path"):
        extractors.load_extractor("open_clip:tiny-clip:no-such-tag")


def test_unknown_extractor_is_a_clear_error():
    with pytest.raises(extractors.ExtractorError, match="unknown extractor"):
        extractors.load_extractor("resnet-9000")


def test_auto_says_which_extractor_ran_and_why():
    ext = extractors.load_extractor("auto")
    assert ext.reason, "auto must record why it chose its extractor"
    assert ext.name in ("efficientnet-lite0", "open_clip:ViT-B-32:openai")


def test_efficientnet_lite0_is_pretrained_and_handles_any_image_mode(effnet, fmnist):
    rgb = fmnist.items("test")[0].load()
    modes = [rgb.convert(mode) for mode in ("L", "LA", "RGBA", "RGB")]
    assert [im.mode for im in modes] == ["L", "LA", "RGBA", "RGB"]  # handed over as they are
    feats = effnet.embed(modes)
    assert feats.shape == (4, 1280)
    for f in feats[:3]:  # the same picture in every mode is the same feature
        np.testing.assert_allclose(f, feats[3], atol=1e-5)
    # pretrained: two images of one class are closer than images of different classes
    test = fmnist.items("test")
    trousers = [it for it in test[:300] if it.label == 1][:2]
    bags = [it for it in test[:300] if it.label == 8][:1]
    f = effnet.embed([it.load() for it in trousers + bags])
    assert f[0] @ f[1] > f[0] @ f[2]


def test_openvino_backend_gives_torch_features_and_the_same_identity(effnet, fmnist):
    """The openvino backend runs the very network torch runs: on real images its features
    equal torch's within FEATURE_TOLERANCE, and the identity (what KBs and codecs record) is
    the one torch's extractor has, so a KB built on one backend serves the other."""
    ov = extractors.load_extractor("efficientnet-lite0", backend="openvino")
    pt = extractors.load_extractor("efficientnet-lite0", backend="torch")
    assert (ov.backend, pt.backend) == ("openvino", "torch")
    assert ov.identity == pt.identity and extractors.same_extractor(ov.identity, pt.identity)
    items = fmnist.items("test")[:24]
    ims = [it.load() for it in items]
    f_ov, f_pt = ov.embed(ims), pt.embed(ims)
    assert f_ov.shape == f_pt.shape == (24, 1280)
    np.testing.assert_allclose(np.linalg.norm(f_ov, axis=1), 1.0, rtol=1e-5)
    assert np.abs(f_ov - f_pt).max() <= extractors.FEATURE_TOLERANCE
    # batch 1 (the network compiled for one image: static shape), 2 (the dynamic batch
    # dimension) and 24 (the throughput streams) agree too
    for im, f in zip(ims[:3], f_pt):
        assert np.abs(ov.embed([im])[0] - f).max() <= extractors.FEATURE_TOLERANCE
    one = ov._openvino._single()
    assert one is not ov._openvino._request and list(one.get_input_tensor(0).shape) == \
        [1, 224, 224, 3]
    assert np.abs(ov.embed(ims[:2]) - f_pt[:2]).max() <= extractors.FEATURE_TOLERANCE
    # the preprocessing's arithmetic runs in the network: openvino takes the cropped uint8
    # pixels, and the features equal those of torch's float tensor
    x = ov.prepare(ims[:2])
    assert x.dtype == np.uint8 and x.shape == (2, 224, 224, 3)
    assert pt.prepare(ims[:2]).shape == (2, 3, 224, 224)
    assert np.abs(ov.infer(x) - f_pt[:2]).max() <= extractors.FEATURE_TOLERANCE
    # KB interchangeability: nearest neighbours of one backend's queries among the other's
    # features are the same images
    assert ((f_ov[:12] @ f_pt[12:].T).argmax(1) == (f_pt[:12] @ f_pt[12:].T).argmax(1)).all()


def test_openvino_backend_converts_open_clip_too(tiny_clip):
    """The CLIP path (open_clip image tower, attention and all) converts as well."""
    import open_clip  # noqa: F401 - tiny_clip registered its config
    ov = extractors.load_extractor("open_clip:tiny-clip", backend="torch")
    ov.model.load_state_dict(tiny_clip.model.state_dict())  # random weights: share them
    reference = ov.embed(images(3))
    ov.use_backend("openvino")
    assert ov.backend == "openvino" and "openvino" in ov.describe()
    assert ov.prepare(images(1)).dtype == np.uint8  # CLIP's Normalize moved into the network
    assert np.abs(ov.embed(images(3)) - reference).max() <= extractors.FEATURE_TOLERANCE


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(extractors.ExtractorError, match="unknown inference backend 'tensorrt'"):
        extractors.load_extractor("efficientnet-lite0", backend="tensorrt")


def test_the_light_extractor_gives_the_full_extractors_input_and_features_without_torch(
        effnet, fmnist):
    """Ray workers load EfficientNet-Lite0 from its cached converted network without torch
    (core/ov_extractor.py): its PIL resize and crop must give the full extractor's uint8
    pixels bit for bit on any size and mode, and its features must be the full extractor's,
    for a few images (latency request) and a feature-cache chunk (throughput streams)."""
    import subprocess
    import sys
    from gnuradio.kbsemcom.core import ov_extractor
    full = extractors.load_extractor("efficientnet-lite0", backend="openvino")  # caches the IR
    light = ov_extractor.load_light("efficientnet-lite0")
    assert light is not None and light.identity == full.identity
    assert ov_extractor.load_light("efficientnet-lite0", backend="torch") is None
    assert ov_extractor.load_light("open_clip:ViT-B-32") is None
    rng = np.random.default_rng(0)
    odd = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
           for h, w in [(300, 401), (401, 257), (32, 32), (256, 256), (224, 500), (999, 301)]]
    odd += [odd[0].convert("L"), odd[1].convert("RGBA")]
    assert light.prepare(odd).dtype == np.uint8 and full.prepare(odd).dtype == np.uint8
    assert np.array_equal(light.prepare(odd), full.prepare(odd))
    # both take their pixels from ov_extractor.effnet_pixels: it must equal torchvision's
    # resize and crop (the torch backend's preprocessing) bit for bit
    stage = extractors.load_extractor("efficientnet-lite0", backend="torch")._pixel_stage
    assert np.array_equal(light.prepare(odd), np.stack(
        [np.asarray(stage(im.convert("RGB")), dtype=np.uint8) for im in odd]))
    ims = [it.load() for it in fmnist.items("test")[:24]]
    assert np.array_equal(light.embed(ims[:3]), full.embed(ims[:3]))
    assert np.array_equal(light.embed(ims), full.embed(ims))
    code = ("import sys; from gnuradio.kbsemcom.core import ov_extractor; "
            "ex = ov_extractor.load_light('efficientnet-lite0'); "
            "print(ex is not None, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["True", "False"]


def test_efficientnet_on_openvino_runs_without_torchvision(effnet):
    """The demo's rerun path: EfficientNet-Lite0 on openvino with its converted network cached
    neither imports torchvision (its models and torch._dynamo: seconds of start-up) nor
    builds the torch module."""
    import subprocess
    import sys
    extractors.load_extractor("efficientnet-lite0", backend="openvino")  # caches the IR
    code = ("import sys; from gnuradio.kbsemcom.core import extractors; from PIL import Image; "
            "ex = extractors.load_extractor('efficientnet-lite0', backend='openvino'); "
            "f = ex.embed([Image.new('L', (28, 28), 90)]); "
            "print(f.shape, 'torchvision' in sys.modules, ex._model is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split("\n")[-2]
    assert out == "(1, 1280) False True"


def test_auto_looks_at_the_disk_without_open_clip(tmp_path):
    """`auto` checks the cache for the paper's CLIP by the repository open_clip's registry names
    (extractors.HUB_REPOS), so without the weights it never imports open_clip (seconds of
    start-up in every `kbsemcom` command)."""
    import subprocess
    import sys
    from gnuradio.kbsemcom.core import hub
    for spec, repo in extractors.HUB_REPOS.items():
        ref = hub.resolve(*hub.parse(spec))
        assert (ref.repo_id, ref.weight_files) == (repo, (hub.SAFE_WEIGHTS, hub.WEIGHTS))
    code = ("import sys; from gnuradio.kbsemcom.core import extractors; "
            "ex = extractors._auto(); print(ex.name, 'open_clip' in sys.modules)")
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path), HF_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True, env=env).stdout.split()
    assert out == ["efficientnet-lite0", "False"]


def test_extractors_in_several_threads_share_one_openvino_lock(fmnist):
    """Extractor blocks of one flowgraph run in their own threads: their first inferences at
    once once deadlocked inside OpenVINO's Python bindings (a GRC flowgraph hung), so every
    network takes the same lock; four threads on two extractors all finish."""
    import threading
    nets = [extractors.load_extractor("efficientnet-lite0", backend="openvino")
            for _ in range(2)]
    assert nets[0]._openvino._lock is nets[1]._openvino._lock
    ims = [it.load() for it in fmnist.items("test")[:6]]
    want = nets[0].embed(ims[:1])
    out = {}

    def work(k):
        ext = nets[k % 2]
        out[k] = ext.embed(ims[:1]) if k < 2 else ext.embed(ims)
    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an inference thread hung"
    np.testing.assert_allclose(out[1], want, atol=extractors.FEATURE_TOLERANCE)
    assert out[2].shape == out[3].shape == (6, 1280)
