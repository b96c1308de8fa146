"""KB bundles (GRC's KB Bundle block): named by their settings, built once as the demo builds,
rebuilt when their images change, refusing a data set that is too small with one clear line."""
import shutil

import pytest


def tiny_bundle(folder):
    from gnuradio.kbsemcom.core.bundles import Bundle
    return Bundle(str(folder), "open_clip:tiny-clip", "1/48", "kbsc", "awgn", seed=0,
                  kb_per_class=2, sent_per_class=2, train_per_class=3, val_per_class=1)


def test_a_folder_is_named_by_its_full_path(tmp_path):
    from gnuradio import kbsemcom
    for name in ("a", "b"):
        (tmp_path / name / "images" / "cat").mkdir(parents=True)
    one = kbsemcom.kb_bundle(str(tmp_path / "a" / "images"))
    other = kbsemcom.kb_bundle(str(tmp_path / "b" / "images"))
    assert one.name != other.name and one.name.startswith("images-auto-cbr1-48-auto-awgn")
    assert kbsemcom.kb_bundle().name == kbsemcom.kb_bundle("fashion-mnist").name
    assert kbsemcom.kb_bundle().n_symbols == 64


def test_build_reuse_and_rebuild_on_change(image_folder, tiny_clip, tmp_path):
    from gnuradio.kbsemcom.core.codec import SemanticCodec
    from gnuradio.kbsemcom.core.kb import KnowledgeBase
    folder = tmp_path / "photos"
    shutil.copytree(image_folder, folder)
    bundle = tiny_bundle(folder)
    assert not bundle.ready()
    bundle.ensure(progress=False)
    assert bundle.ready() and bundle.extractor == "open_clip:tiny-clip"
    kb, codec = KnowledgeBase.load(bundle.kb), SemanticCodec.load(bundle.codec)
    assert len(kb) == 4 and codec.n_symbols == 64
    assert kb.extractor["name"] == codec.config.extractor["name"] == "open_clip:tiny-clip:random"
    sent_ids = {it.image_id for it in bundle.sent}
    assert len(sent_ids) == 4 and not sent_ids & {e["image_id"] for e in kb.entries}
    assert [it.label for it in bundle.sent] == [0, 1, 0, 1]  # classes take turns
    built = (bundle.folder / "bundle.json").stat().st_mtime_ns
    bundle.ensure(progress=False)  # complete: nothing rebuilt
    assert (bundle.folder / "bundle.json").stat().st_mtime_ns == built
    from gnuradio.kbsemcom.core import bundles
    (folder / "Trouser" / "img_new.png").write_bytes(
        next((folder / "Sneaker").glob("*.png")).read_bytes())  # one more image in the folder
    bundles._split.cache_clear()  # a new process scans the folder again
    assert not bundle.ready()


def test_too_few_images_is_one_clear_error(tmp_path):
    from gnuradio.kbsemcom.core.datasets import DatasetError
    from PIL import Image
    (tmp_path / "few" / "cat").mkdir(parents=True)  # one class, one image: not enough
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / "few" / "cat" / "only.png")
    with pytest.raises(DatasetError, match="too few images for a bundle.*lower 'KB images"):
        tiny_bundle(tmp_path / "few").ensure(progress=False)


@pytest.mark.slow  # extracts the pool's images (Fashion-MNIST's at least) with the tiny model
def test_a_plain_folder_gets_the_general_codec(image_folder, tiny_clip, tmp_path, monkeypatch):
    """The default recipe (auto) on a plain image folder, which has no training images of its
    own: the general codec, trained on the pool, not on the folder; the folder's images are
    all KB and sent images, so a folder too small to train a codec still makes a bundle. On
    a machine without the CIFAR-10 / Caltech archives (a user's) the pool is Fashion-MNIST,
    and the codec's manifest says so."""
    from gnuradio.kbsemcom.core.bundles import Bundle
    from gnuradio.kbsemcom.core.codec import SemanticCodec
    (tmp_path / "no-archives").mkdir()
    monkeypatch.setenv("KBSEMCOM_DATA_DIR", str(tmp_path / "no-archives"))
    folder = tmp_path / "photos"
    shutil.copytree(image_folder, folder)
    bundle = Bundle(str(folder), "open_clip:tiny-clip", "1/48", "auto", "awgn", seed=0,
                    kb_per_class=4, sent_per_class=2, train_per_class=0, val_per_class=0)
    bundle.ensure(progress=False)
    codec = SemanticCodec.load(bundle.codec)
    assert codec.config.recipe == "general" and codec.against_kb
    data = codec.config.training_data
    assert data["dataset"] == "pool" and data["pool"] == ["fashion-mnist"]
    assert data["pool_missing"] == ["caltech100", "cifar10"]
    assert data["n_train"] >= 2000  # the pool's images, not the folder's 16
