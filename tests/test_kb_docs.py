"""docs/kb.md's live-KB commands, run as written (build, add, remove, info) from an empty
working directory. (The Ray block's `ray start` lines start machine-wide daemons that only
`ray stop` ends; tests/test_kb_ray.py runs the same build on a local two-node Ray instead.)"""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import doc_commands, kbsemcom_command

from gnuradio.kbsemcom.core.kb import KnowledgeBase

pytestmark = pytest.mark.slow  # subprocess apps, a real extractor

DOC = Path(__file__).resolve().parent.parent / "docs" / "kb.md"


def test_live_kb_commands_as_written(tmp_path):
    steps = doc_commands(DOC, "## Live KB")
    assert [argv[1:3] for argv, _ in steps] == [["build-kb", "--dataset"], ["kb", "add"],
                                                 ["kb", "remove"], ["kb", "info"]]
    env = dict(os.environ, TQDM_DISABLE="1")
    for argv, _ in steps:
        proc = subprocess.run(kbsemcom_command() + argv[1:] + ["--json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (argv, proc.stderr)
    info = json.loads(proc.stdout)
    assert info["size"] == 200 + 20 - 1 and info["generation"] == 2 and info["index"] == "Flat"
    kb = KnowledgeBase.load(tmp_path / "runs" / "kb")
    assert "test/00019" not in {e["image_id"] for e in kb.entries}


@pytest.mark.timeout(1800)  # three subprocess apps that extract ~600 images on a loaded machine
def test_kb_calibrate_commands_as_written(tmp_path):
    """docs/kb.md's open-set block as written (build, train a kbsc-kb codec, calibrate): the
    manifest gains a calibration for the codec, and a kb_lookup made from the folder uses it
    (match_score and no_match in its output)."""
    from conftest import push_pdus

    from gnuradio import kbsemcom
    from gnuradio.kbsemcom.core.codec import SemanticCodec
    steps = doc_commands(DOC, "## Open set: calibrate your own KB")
    assert [argv[1:3] for argv, _ in steps] == [["build-kb", "--dataset"],
                                                 ["train-codec", "--dataset"],
                                                 ["kb", "calibrate"]]
    env = dict(os.environ, TQDM_DISABLE="1")
    for argv, _ in steps:
        proc = subprocess.run(kbsemcom_command() + argv[1:] + ["--json"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (argv, proc.stderr)
    info = json.loads(proc.stdout)
    assert info["key"] == "kbsc-kb|1/48|efficientnet-lite0|awgn" and info["n_queries"] == 200
    assert 0.5 < info["choice_auroc"] <= 1.0 and len(info["pseudo_out_classes"]) == 2
    kb = KnowledgeBase.load(tmp_path / "runs" / "kb")
    assert list(kb.open_set) == [info["key"]]
    codec = SemanticCodec.load(tmp_path / "runs" / "codec-kb.pt")
    lookup = kbsemcom.kb_lookup(str(tmp_path / "runs" / "kb"), codec)
    assert lookup.calibration is not None and lookup.calibration.statistic == info["statistic"]
    symbols = codec.kb_keys(kb.features()[:1])[0]
    (meta, _), = push_pdus(lookup, [({"image_id": "x", "snr_db": 10.0}, symbols)])
    assert meta["open_set"] == "calibrated" and 0.0 <= meta["match_score"] <= 1.0
    assert isinstance(meta["no_match"], bool)
