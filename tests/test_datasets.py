"""Data sets and image folders, including the awkward files of real folders."""
import logging
from pathlib import Path

import numpy as np
import pytest

from gnuradio.kbsemcom.core import datasets
from gnuradio.kbsemcom.core.features import extract_features


def test_image_folder_skips_non_images_with_a_warning(image_folder, caplog):
    with caplog.at_level(logging.WARNING):
        ds = datasets.scan_image_folder(image_folder)
    assert ds.class_names == ["Sneaker", "Trouser"]
    assert not any(it.path.endswith("/tmp") for it in ds.items())
    assert "not an image file" in caplog.text and "tmp" in caplog.text


def test_corrupt_image_gives_a_clear_error(image_folder):
    ds = datasets.scan_image_folder(image_folder)
    broken = [it for it in ds.items() if it.path.endswith("broken.jpg")][0]
    with pytest.raises(datasets.ImageLoadError, match="corrupt or not an image"):
        broken.load()


def test_grayscale_and_rgba_load_as_rgb(image_folder):
    ds = datasets.scan_image_folder(image_folder)
    good = [it for it in ds.items() if not it.path.endswith("broken.jpg")]
    modes = {it.load().mode for it in good}
    assert modes == {"RGB"}


def test_feature_extraction_skips_corrupt_images_and_caches(image_folder, tiny_clip, caplog):
    items = datasets.scan_image_folder(image_folder).items()
    with caplog.at_level(logging.WARNING):
        feats, kept = extract_features(tiny_clip, items)
    assert len(kept) == len(items) - 1 and feats.shape == (len(kept), 32)
    assert "broken.jpg" in caplog.text
    again, kept_again = extract_features(tiny_clip, items)
    np.testing.assert_array_equal(again, feats)
    assert [it.image_id for it in kept_again] == [it.image_id for it in kept]


def test_feature_cache_is_invalidated_when_an_image_changes(image_folder, tiny_clip):
    from PIL import Image
    items = [it for it in datasets.scan_image_folder(image_folder).items()
             if not it.path.endswith("broken.jpg")]
    before, _ = extract_features(tiny_clip, items)
    target = items[0].path
    Image.new("RGB", (28, 28), (255, 0, 0)).save(target)
    import os
    os.utime(target, (1, 1))  # a different mtime even within the same second
    after, _ = extract_features(tiny_clip, items)
    assert not np.allclose(after[0], before[0])
    np.testing.assert_allclose(after[1:], before[1:], atol=1e-6)


def test_fashion_mnist_is_real_and_labelled(fmnist):
    assert len(fmnist.items("train")) == 60000 and len(fmnist.items("test")) == 10000
    assert fmnist.class_names[0] == "T-shirt/top"
    counts = np.bincount([it.label for it in fmnist.items("test")])
    assert counts.tolist() == [1000] * 10


def test_take_per_class_is_balanced_and_offsets_keep_sets_apart(fmnist):
    test = fmnist.items("test")
    kb = datasets.take_per_class(test, 5)
    sent = datasets.take_per_class(test, 3, 5)
    assert np.bincount([it.label for it in kb]).tolist() == [5] * 10
    assert not {it.image_id for it in kb} & {it.image_id for it in sent}


def test_unknown_dataset_says_what_to_give():
    with pytest.raises(datasets.DatasetError, match="sub-folder"):
        datasets.open_dataset("/no/such/folder")


def test_shared_cifar10_archive(shared_data, monkeypatch):
    monkeypatch.setenv("KBSEMCOM_DATA_DIR", str(shared_data))
    ds = datasets.cifar10()
    assert len(ds.class_names) == 10 and len(ds.items("test")) == 10000
    assert ds.items("test")[0].load().size == (32, 32)


def _tiny_png(path, value):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 0, 0)).save(path)


def test_an_empty_class_folder_is_skipped_with_a_warning(tmp_path, caplog):
    """Three real classes and an empty folder are three classes (chance 1/3, not 1/4)."""
    for i, cls in enumerate(("ant", "bee", "cat")):
        _tiny_png(tmp_path / cls / "a.png", 40 * i)
    (tmp_path / "aardvark").mkdir()           # sorts first: it must not take label 0
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no image here")
    with caplog.at_level(logging.WARNING):
        ds = datasets.scan_image_folder(tmp_path)
    assert ds.class_names == ["ant", "bee", "cat"]
    assert sorted((it.class_name, it.label) for it in ds.items()) == [
        ("ant", 0), ("bee", 1), ("cat", 2)]
    assert "aardvark" in caplog.text and "dog" in caplog.text and "no image files" in caplog.text


def test_a_folder_of_empty_classes_names_itself(tmp_path):
    (tmp_path / "cat").mkdir()
    with pytest.raises(datasets.DatasetError, match=f"{tmp_path} has no class sub-folders with "
                                                    r"images \(1 sub-folders"):
        datasets.scan_image_folder(tmp_path)


def test_splits_with_different_classes_are_refused(tmp_path):
    _tiny_png(tmp_path / "train" / "ant" / "a.png", 1)
    _tiny_png(tmp_path / "train" / "bee" / "a.png", 2)
    _tiny_png(tmp_path / "test" / "bee" / "a.png", 3)
    (tmp_path / "test" / "ant").mkdir()     # empty in test: labels would shift
    with pytest.raises(datasets.DatasetError, match="different classes"):
        datasets.scan_image_folder(tmp_path)


@pytest.mark.parametrize("fmt,cut", [("PNG", 2), ("PNG", 12), ("JPEG", 2), ("JPEG", 400)])
def test_a_truncated_image_is_refused_not_decoded_partly(tmp_path, fmt, cut):
    """Decision: a truncated file is an unusable image (skipped by feature extraction, a lost
    record in a flowgraph), with 'truncated' in the reason; never a partial load. A PNG that
    lost only its end chunk is one PIL itself would decode without a word."""
    from PIL import Image
    rng = np.random.default_rng(0)
    path = tmp_path / "cat" / f"cut.{fmt.lower()}"
    path.parent.mkdir()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, fmt)
    whole = path.read_bytes()
    datasets.decode_image(whole)              # the whole file is fine
    datasets.decode_image(whole + b"trailing bytes after the end marker")
    path.write_bytes(whole[:-cut])
    item = datasets.scan_image_folder(tmp_path).items()[0]
    with pytest.raises(datasets.ImageLoadError, match="truncated"):
        item.load()


def test_feature_extraction_skips_a_truncated_image_by_name(tmp_path, tiny_clip, caplog):
    _tiny_png(tmp_path / "cat" / "good.png", 9)
    _tiny_png(tmp_path / "cat" / "cut.png", 10)
    cut = tmp_path / "cat" / "cut.png"
    cut.write_bytes(cut.read_bytes()[:-2])
    with caplog.at_level(logging.WARNING):
        feats, kept = extract_features(tiny_clip, datasets.scan_image_folder(tmp_path).items())
    assert [it.image_id for it in kept] == ["cat/good.png"] and feats.shape == (1, 32)
    assert "cut.png" in caplog.text and "truncated" in caplog.text


def test_cache_folder_follows_kbsemcom_cache_then_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KBSEMCOM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == tmp_path / "xdg" / "kbsemcom"
    monkeypatch.setenv("KBSEMCOM_CACHE", str(tmp_path / "own"))
    assert datasets.cache_dir() == tmp_path / "own"
    assert (tmp_path / "own").is_dir()


def test_system_data_is_looked_up_in_the_prefixes(tmp_path, monkeypatch):
    from gnuradio.kbsemcom.core import prefixes
    assert datasets.FASHION_MNIST_DIR in prefixes.share_candidates("datasets", "fashion-mnist")
    (tmp_path / "share/datasets/fashion-mnist").mkdir(parents=True)
    (tmp_path / "share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").touch()
    monkeypatch.setattr(prefixes.sys, "prefix", str(tmp_path))     # a conda environment
    assert prefixes.find_share("datasets", "fashion-mnist", marker="t10k-images-idx3-ubyte.gz") \
        == tmp_path / "share/datasets/fashion-mnist"
    monkeypatch.setattr(prefixes.sys, "prefix", str(tmp_path / "empty"))
    assert prefixes.find_share("datasets", "no-such-set") == \
        Path(prefixes.sys.base_prefix) / "share/datasets/no-such-set"
