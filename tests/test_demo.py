"""The command line: the main job end to end on a small setting, and the part commands."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocess apps / GRC flowgraphs

KBSEMCOM = [sys.executable, "-m", "gnuradio.kbsemcom.apps.cli"]
SMALL = ["--kb-per-class", "10", "--train-per-class", "30", "--val-per-class", "5",
         "--epochs", "10", "--lr", "1e-3"]


def cache_files(cache):
    """{file: (size, mtime)} of the feature and codec caches (locks left out)."""
    return {str(p.relative_to(cache)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in cache.rglob("*") if p.is_file() and "locks" not in p.parts}


def run(args, timeout=600):
    return subprocess.run(KBSEMCOM + args, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["demo", "build-kb", "train-codec", "check"])
def test_help(command):
    proc = run([command, "--help"])
    assert proc.returncode == 0 and "usage: kbsemcom" in proc.stdout


def test_demo_end_to_end(tmp_path):
    proc = run(["demo", "--images", "20", "--snr", "10", "--out", str(tmp_path), "--json"]
               + SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["n_sent"] == 20 and summary["n_lost"] == 0
    assert summary["accuracy"] > 0.3  # chance is 0.1
    assert summary["extractor"] and summary["extractor_reason"]
    assert summary["extractor_backend"] in ("torch", "openvino")
    assert set(summary["phases"]) == {"extractor_load_s", "prepare_s", "flowgraph_s"}
    assert summary["accuracy"] <= summary["raw_1nn_reference"] + 0.1  # the flowgraph's own features
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(records) == 20
    assert {"image_id", "label", "retrieved_id", "retrieved_label", "distance", "snr_db",
            "cbr", "lost"} <= set(records[0])
    assert (tmp_path / "montage.png").stat().st_size > 10_000
    assert (tmp_path / "codec.pt").exists() and (tmp_path / "kb" / "manifest.json").exists()
    # a rerun reuses the cached features and codec: it writes nothing new into the cache
    cache = Path(os.environ["KBSEMCOM_CACHE"])
    before = cache_files(cache)
    assert any(p.endswith(".npz") for p in before) and any("codecs" in p for p in before)
    again = run(["demo", "--images", "20", "--out", str(tmp_path)] + SMALL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert cache_files(cache) == before, "the rerun extracted or trained again"
    assert "(cached)" in again.stdout and f"{summary['accuracy']:.1%}" in again.stdout


def test_build_kb_train_codec_and_check(tmp_path):
    kb = run(["build-kb", "--split", "test", "--per-class", "3", "--out", str(tmp_path / "kb"),
              "--json"])
    assert kb.returncode == 0, kb.stderr[-2000:]
    assert json.loads(kb.stdout)["size"] == 30
    codec = run(["train-codec", "--cbr", "1/24", "--out", str(tmp_path / "c.pt"), "--json"]
                + SMALL)
    assert codec.returncode == 0, codec.stderr[-2000:]
    assert json.loads(codec.stdout)["n_symbols"] == 128
    ok = run(["check", "--kb", str(tmp_path / "kb"), "--codec", str(tmp_path / "c.pt")])
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_bad_options_are_clear_errors(tmp_path):
    proc = run(["demo", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert proc.returncode == 1 and "sub-folder" in proc.stderr  # a runtime error
    proc = run(["demo", "--cbr", "1/5000", "--out", str(tmp_path)] + SMALL)
    assert proc.returncode == 1 and "CBR" in proc.stderr
