"""Knowledge base: build, save, load, search, and refusal of a mismatched extractor."""
import json

import numpy as np
import pytest

from gnuradio.kbsemcom.core import pipeline
from gnuradio.kbsemcom.core.kb import KBMismatchError, KnowledgeBase


def test_kb_round_trip_and_self_retrieval(world, tmp_path):
    kb = world["kb"]
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb")
    assert len(loaded) == len(kb) == 200 and loaded.dim == 1280
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["extractor"]["name"] == "efficientnet-lite0"
    assert {"image_id", "path", "label", "class_name"} <= set(manifest["entries"][0])
    assert manifest["built_at"] and manifest["dim"] == 1280
    feats = loaded.features()
    for i in (0, 57, 199):
        hit = loaded.retrieve(feats[i])
        assert hit["kb_index"] == i and hit["distance"] == pytest.approx(0, abs=1e-5)


def test_kb_of_another_extractor_is_refused(world, tiny_clip, fmnist):
    other = pipeline.build_kb(tiny_clip, world["split"].kb[:20], fmnist.class_names)
    with pytest.raises(KBMismatchError, match="rebuild the KB"):
        other.check_extractor(world["codec"].config.extractor)
    with pytest.raises(KBMismatchError, match="32-d"):
        other.search(np.zeros(1280, np.float32))


def test_loading_something_that_is_not_a_kb(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-kb"):
        KnowledgeBase.load(tmp_path)


def test_kb_whose_manifest_does_not_match_its_index(world, tmp_path):
    world["kb"].save(tmp_path / "kb")
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    manifest["entries"] = manifest["entries"][:-1]
    (tmp_path / "kb" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(KBMismatchError, match="does not match"):
        KnowledgeBase.load(tmp_path / "kb")
